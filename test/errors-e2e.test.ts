// Failures of real dependencies, end to end (README, Errors):
// - transient: a PostgreSQL result sink whose server goes away mid-run (a TCP proxy in
//   front of the real server stops listening): every write is retried with the
//   configured backoff, then its results are dead-lettered with retry_count = retries,
//   and the run goes on; results delivered + dead letters = results produced;
// - permanent: a real table that refuses some rows (a CHECK constraint): only those
//   are dead-lettered, without retries; the others are written;
// - critical: the real CLI with a dead-letter queue or result file that cannot be
//   written (/dev/full: every write fails with ENOSPC, whoever we are; root ignores
//   read-only modes): graceful stop, exit 1, one line naming what failed, no stack trace.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { createConnection, createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { Client } from 'pg';
import { validateConfig } from '../src/config';
import { createLogger } from '../src/log';
import { Instrumentation } from '../src/metrics/events';
import type { DeadLetter, WindowResult } from '../src/pipeline/types';
import { runEmbedded } from '../src/runner';

const root = join(__dirname, '..', '..');
const bin = join(root, 'bin', 'weir.js');
const PG_URL = process.env['WEIR_TEST_POSTGRES_URL'] ?? 'postgres://postgres@127.0.0.1:5432/test';
const PG = new URL(PG_URL);
const NO_STACK = /^\s+at \S+ \(|^\s+at \//m;

/** `n` events of model "m", 250 ms apart from t = 0: four per second. */
function events(n: number, at: (i: number) => number = (i) => i * 250): string[] {
  return Array.from({ length: n }, (_, i) => JSON.stringify({ id: `e-${i}`, timestamp: at(i), data: { model: 'm', latency_ms: i + 1 } }));
}

function jsonLines<T>(path: string): T[] {
  if (!existsSync(path)) return [];
  const text = readFileSync(path, 'utf8');
  assert.ok(text === '' || text.endsWith('\n'), `${path}: the last line is complete`);
  return text.split('\n').filter((l) => l !== '').map((l) => JSON.parse(l) as T);
}

/** A TCP proxy to the real PostgreSQL server; down() makes it vanish: connections drop, new ones are refused. */
class PgProxy {
  private readonly sockets = new Set<Socket>();
  private readonly server: Server;

  private constructor() {
    this.server = createServer((client) => {
      const upstream = createConnection({ host: PG.hostname, port: Number(PG.port || 5432) });
      for (const s of [client, upstream]) {
        this.sockets.add(s);
        s.on('close', () => this.sockets.delete(s));
        s.on('error', () => undefined);
      }
      client.pipe(upstream).pipe(client);
    });
  }

  static async start(): Promise<PgProxy> {
    const proxy = new PgProxy();
    await new Promise<void>((r) => proxy.server.listen(0, '127.0.0.1', r));
    return proxy;
  }

  get port(): number {
    return (this.server.address() as AddressInfo).port;
  }

  /** PG_URL through the proxy: fixed at start, since down() forgets the port. */
  url(): string {
    const u = new URL(PG_URL);
    u.hostname = '127.0.0.1';
    u.port = String(this.port);
    return u.toString();
  }

  down(): void {
    if (this.server.listening) this.server.close();
    for (const s of this.sockets) s.destroy();
  }
}

async function pgQuery<R extends object>(sql: string): Promise<R[]> {
  const c = new Client({ connectionString: PG_URL });
  await c.connect();
  try {
    return (await c.query<R>(sql)).rows;
  } finally {
    await c.end();
  }
}

/** A logger writing into an array of parsed JSON lines. */
function capturedLogger(): { logger: ReturnType<typeof createLogger>; lines: Array<Record<string, unknown>> } {
  const lines: Array<Record<string, unknown>> = [];
  const stream = new PassThrough();
  let rest = '';
  stream.setEncoding('utf8').on('data', (d: string) => {
    rest += d;
    const parts = rest.split('\n');
    rest = parts.pop()!;
    for (const p of parts) if (p !== '') lines.push(JSON.parse(p) as Record<string, unknown>);
  });
  return { logger: createLogger({ log: { level: 'debug' } }, { destination: stream }), lines };
}

const windowId = (r: WindowResult): string => `${r.name}|${r.key}|${r.window.start}|${r.window.end}`;

test('transient: PostgreSQL goes away mid-run: retried 30, 90 ms, then every result of each failed write is dead-lettered with retry_count 2; nothing lost', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'weir-pg-down-'));
  const table = `weir_down_${process.pid}_${Date.now()}`;
  // 40 events, 1 s windows, batches of 10: every batch closes two windows; ten windows in all.
  writeFileSync(join(dir, 'events.jsonl'), events(40).join('\n') + '\n');
  const proxy = await PgProxy.start();
  const cfg = validateConfig({
    source: { type: 'file', path: join(dir, 'events.jsonl') },
    eventTime: { maxOutOfOrdernessMs: 0, allowedLatenessMs: 0 },
    aggregations: [{ name: 'lat', groupBy: ['data.model'], value: 'data.latency_ms', window: { type: 'tumbling', sizeMs: 1000 } }],
    sinks: [{ type: 'file', path: join(dir, 'results.jsonl') }, { type: 'postgres', url: proxy.url(), table }],
    deadLetter: { type: 'file', path: join(dir, 'dlq.jsonl') },
    processing: { batchSize: 10, instanceId: 'weir-e2e' },
    retry: { retries: 2, initialDelayMs: 30, factor: 3 },
  });
  const bus = new Instrumentation();
  let level = 0;
  // The first write's results (the first batch's) reach the table; the server is gone before the
  // next write, which the sink's queue starts as soon as the first one is done.
  bus.on('sink.queue', (e) => {
    if (e.sink === 'sinks[1]' && e.records < level) proxy.down();
    if (e.sink === 'sinks[1]') level = e.records;
  });
  const errors: string[] = [];
  bus.on('error', (e) => errors.push(e.kind));
  const { logger, lines: logs } = capturedLogger();
  const started = Date.now();
  try {
    const summary = await runEmbedded(cfg, { progress: false, bus, logger });
    const elapsedMs = Date.now() - started;

    const produced = jsonLines<WindowResult>(join(dir, 'results.jsonl'));
    const dead = jsonLines<DeadLetter>(join(dir, 'dlq.jsonl'));
    const rows = await pgQuery<{ name: string; key: string; window_start: string; window_end: string; count: number }>(
      `SELECT name, key, window_start, window_end, count FROM "${table}" ORDER BY window_start`,
    );
    assert.equal(summary.records, 40);
    assert.equal(summary.results, 10);
    assert.equal(produced.length, 10, 'the file sink got every result');
    // The first write went through; the four after it (batches 2-4 and the end of input) did not.
    assert.deepEqual(rows.map((r) => Number(r.window_start)), [0, 1000]);
    assert.equal(dead.length, 8);
    assert.equal(summary.deadLetters, 8);
    for (const d of dead) {
      assert.equal(d.reason, 'undeliverable');
      assert.equal(d.retry_count, 2, 'retry_count = the configured retries');
      assert.equal(d.sink, 'sinks[1]');
      assert.equal(d.aggregation, 'lat');
      assert.equal(d.processor_instance, 'weir-e2e');
      assert.match(d.error, /^sinks\[1\]: postgres result sink \(table "weir_down_/);
      assert.match(d.error, /cannot reach the server/);
      assert.match(d.error, /gave up after 3 attempts over \d+ ms, 2 retries/);
      assert.ok(!Number.isNaN(Date.parse(d.timestamp)));
    }
    // Where the input stood: the last line of the batch that fired them, or the end of the input.
    // (Batches 2, 3 and 4 fire 2, 3 and 2 windows, the end of the input the last one.)
    assert.deepEqual(dead.map((d) => `${d.partition}:${d.offset}`), ['0:19', '0:19', '0:29', '0:29', '0:29', '0:39', '0:39', '-1:']);
    // Accounting: every result produced is in the table or in the dead-letter queue, once.
    const delivered = new Set(rows.map((r) => `${r.name}|${r.key}|${r.window_start}|${r.window_end}`));
    const deadIds = dead.map((d) => windowId(JSON.parse(d.original_event) as WindowResult));
    assert.equal(new Set(deadIds).size, deadIds.length);
    for (const id of deadIds) assert.ok(!delivered.has(id), `${id} both delivered and dead-lettered`);
    assert.deepEqual([...delivered, ...deadIds].sort(), produced.map(windowId).sort());
    assert.deepEqual(dead.map((d) => JSON.parse(d.original_event) as WindowResult), produced.slice(2), 'original_event is the result, unchanged');
    // Every event is counted in exactly one final result.
    assert.equal(produced.reduce((n, r) => n + r.results.count, 0), 40);

    // The backoff: 30 then 90 ms before giving up, for each failed write. The queue gathers
    // what came while a write was retried into its next write: one to four failed writes.
    const gaveUp = logs.filter((l) => l['level'] === 'error' && /dead-lettered as undeliverable/.test(String(l['msg'])));
    const k = gaveUp.length;
    assert.ok(k >= 1 && k <= 4, `${k} failed writes`);
    const retries = logs.filter((l) => typeof l['msg'] === 'string' && (l['msg']).includes('to sinks[1] failed, retrying in'));
    assert.deepEqual(retries.map((l) => l['delayMs']), new Array<number[]>(k).fill([30, 90]).flat());
    assert.ok(retries.every((l) => l['level'] === 'warn' && l['kind'] === 'transient'));
    assert.ok(elapsedMs >= k * 120, `backed off for real (${elapsedMs} ms)`);
    // errors_total{kind="transient"} counts every failed attempt: 3 per failed write.
    assert.deepEqual(errors, new Array(3 * k).fill('transient'));
    assert.ok(logs.some((l) => l['msg'] === 'run finished'));
  } finally {
    proxy.down();
    await pgQuery(`DROP TABLE IF EXISTS "${table}"`);
  }
});

test('permanent: a table that refuses some rows (CHECK): only those are dead-lettered, at once, the rest are written', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'weir-pg-check-'));
  const table = `weir_check_${process.pid}_${Date.now()}`;
  // Windows of 1 s holding 4, 3, 4, 3, ... events: the table takes only counts below 4.
  const ts: number[] = [];
  for (let w = 0; w < 8; w++) for (let k = 0; k < (w % 2 === 0 ? 4 : 3); k++) ts.push(w * 1000 + k * 200);
  writeFileSync(join(dir, 'events.jsonl'), events(ts.length, (i) => ts[i]!).join('\n') + '\n');
  await pgQuery(
    `CREATE TABLE "${table}" (name text NOT NULL, key text NOT NULL, window_start bigint NOT NULL, window_end bigint NOT NULL, grp jsonb, ` +
      'count double precision CHECK (count < 4), sum double precision, avg double precision, min double precision, max double precision, ' +
      'p50 double precision, p95 double precision, p99 double precision, stddev double precision, late boolean, emitted_at timestamptz, ' +
      'PRIMARY KEY (name, key, window_start, window_end))',
  );
  const cfg = validateConfig({
    source: { type: 'file', path: join(dir, 'events.jsonl') },
    eventTime: { maxOutOfOrdernessMs: 0, allowedLatenessMs: 0 },
    aggregations: [{ name: 'lat', groupBy: ['data.model'], value: 'data.latency_ms', window: { type: 'tumbling', sizeMs: 1000 } }],
    sinks: [{ type: 'postgres', url: PG_URL, table }, { type: 'file', path: join(dir, 'results.jsonl') }],
    deadLetter: { type: 'file', path: join(dir, 'dlq.jsonl') },
    processing: { batchSize: 100 },
  });
  const waited: number[] = [];
  const { logger, lines: logs } = capturedLogger();
  try {
    const summary = await runEmbedded(cfg, { progress: false, logger, sleep: async (ms) => void waited.push(ms) });
    const produced = jsonLines<WindowResult>(join(dir, 'results.jsonl'));
    const dead = jsonLines<DeadLetter>(join(dir, 'dlq.jsonl'));
    const rows = await pgQuery<{ window_start: string; count: number }>(`SELECT window_start, count FROM "${table}" ORDER BY window_start`);
    assert.equal(produced.length, 8);
    assert.deepEqual(waited, [], 'a refusal is never retried');
    assert.deepEqual(rows.map((r) => [Number(r.window_start), r.count]), [[1000, 3], [3000, 3], [5000, 3], [7000, 3]]);
    assert.equal(dead.length, 4);
    assert.equal(summary.deadLetters, 4);
    for (const d of dead) {
      assert.equal(d.reason, 'undeliverable');
      assert.equal(d.retry_count, 0);
      assert.equal(d.sink, 'sinks[0]');
      assert.match(d.error, /check constraint/);
      assert.match(d.error, /SQLSTATE 23514/);
      assert.equal((JSON.parse(d.original_event) as WindowResult).results.count, 4);
    }
    assert.equal(rows.length + dead.length, produced.length);
    const warned = logs.filter((l) => l['level'] === 'warn' && /sinks\[0\] refused/.test(String(l['msg'])));
    assert.ok(warned.length > 0 && warned.every((l) => l['kind'] === 'permanent'));
  } finally {
    await pgQuery(`DROP TABLE IF EXISTS "${table}"`);
  }
});

test('permanent: malformed and invalid events are dead-lettered and logged (one warning per batch), never stopping the run', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'weir-bad-events-'));
  const lines = events(12);
  lines[3] = '{"timestamp": 750, "data": ';
  lines[7] = JSON.stringify({ timestamp: 'yesterday', data: { model: 'm', latency_ms: 1 } });
  writeFileSync(join(dir, 'events.jsonl'), lines.join('\n') + '\n');
  const cfg = validateConfig({
    source: { type: 'file', path: join(dir, 'events.jsonl') },
    eventTime: { maxOutOfOrdernessMs: 0, allowedLatenessMs: 0 },
    aggregations: [{ name: 'lat', groupBy: ['data.model'], value: 'data.latency_ms', window: { type: 'tumbling', sizeMs: 1000 } }],
    sinks: [{ type: 'file', path: join(dir, 'results.jsonl') }],
    deadLetter: { type: 'file', path: join(dir, 'dlq.jsonl') },
    processing: { batchSize: 6 },
  });
  const { logger, lines: logs } = capturedLogger();
  const summary = await runEmbedded(cfg, { progress: false, logger });
  const dead = jsonLines<DeadLetter>(join(dir, 'dlq.jsonl'));
  assert.deepEqual(dead.map((d) => [d.reason, d.offset, d.retry_count]), [['malformed', '3', 0], ['invalid', '7', 0]]);
  assert.equal(jsonLines<WindowResult>(join(dir, 'results.jsonl')).reduce((n, r) => n + r.results.count, 0) + dead.length, 12);
  assert.equal(summary.deadLetters, 2);
  const warned = logs.filter((l) => l['level'] === 'warn' && l['kind'] === 'permanent');
  assert.deepEqual(warned.map((l) => [l['malformed'], l['invalid'], (l['first'] as { offset: string }).offset]), [[1, 0, '3'], [0, 1, '7']]);
  assert.ok(!JSON.stringify(warned).includes('yesterday'), 'the event itself stays out of the log');
});

// ------------------------------------------------------------ critical, via the CLI

interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
  err: string;
}

/** Runs `weir run` to its exit; a run that does not exit by itself (something left open) is killed and fails the test. */
function weir(config: string, args: string[] = []): Promise<Exit> {
  const child = spawn(process.execPath, [bin, 'run', '--config', config, '--no-progress', ...args], { cwd: root, stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  child.stderr.setEncoding('utf8').on('data', (d: string) => (err += d));
  const killer = setTimeout(() => child.kill('SIGKILL'), 30_000);
  return new Promise((resolve) =>
    child.on('close', (code, signal) => {
      clearTimeout(killer);
      resolve({ code, signal, err });
    }),
  );
}

/** 24 events, line 12 not JSON: with --batch-size 8, the first batch closes window [0, 1000) and the second has the dead letter. */
function criticalRun(dir: string, sink: string, deadLetter: string, log: boolean): string {
  const lines = events(24);
  lines[12] = 'not json';
  writeFileSync(join(dir, 'events.jsonl'), lines.join('\n') + '\n');
  const cfg = join(dir, 'weir.yaml');
  writeFileSync(
    cfg,
    `
source: { type: file, path: ${join(dir, 'events.jsonl')} }
eventTime: { maxOutOfOrdernessMs: 0, allowedLatenessMs: 0 }
aggregations: [ { name: lat, groupBy: [data.model], value: data.latency_ms, window: { type: tumbling, sizeMs: 1000 } } ]
sinks: [ { type: file, path: ${sink} } ]
deadLetter: { type: file, path: ${deadLetter} }
${log ? 'log: { level: info }' : ''}
`,
  );
  return cfg;
}

test('critical: a dead-letter queue that cannot be written (disk full) stops the run: exit 1, one line naming it, results so far kept', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'weir-dlq-full-'));
  const results = join(dir, 'results.jsonl');
  const r = await weir(criticalRun(dir, results, '/dev/full', false), ['--batch-size', '8']);
  assert.equal(r.signal, null, 'exited by itself: nothing left open');
  assert.equal(r.code, 1, r.err);
  assert.equal(r.err.trim().split('\n').length, 1, `one line: ${r.err}`);
  assert.match(r.err, /^weir: cannot write 1 dead letter\(s\) to the dead-letter queue, stopping: cannot write deadLetter file \/dev\/full: ENOSPC: no space left on device/);
  assert.doesNotMatch(r.err, NO_STACK);
  assert.doesNotMatch(r.err, /internal error/);
  // The sinks' queues write while the loop goes on, so the results file may hold more than the
  // failed step's: whatever it holds is a prefix of the full run's results, each one right. A
  // rerun, or a restart from the last checkpoint, does the steps again (the last per window is the final one).
  const got = jsonLines<WindowResult>(results).map((x) => [x.window.start, x.results.count]);
  const full = [[0, 4], [1000, 4], [2000, 4], [3000, 3], [4000, 4], [5000, 4]];
  assert.ok(got.length >= 1, 'results before the failure were written');
  assert.deepEqual(got, full.slice(0, got.length));

  // With logs: the failure is logged as critical, the run is not reported as finished.
  const logged = await weir(criticalRun(mkdtempSync(join(tmpdir(), 'weir-dlq-full-')), join(dir, 'r2.jsonl'), '/dev/full', true), ['--batch-size', '8']);
  assert.equal(logged.code, 1, logged.err);
  const lines = logged.err.trim().split('\n');
  assert.match(lines.at(-1)!, /^weir: cannot write 1 dead letter\(s\) to the dead-letter queue/);
  const logs = lines.slice(0, -1).map((l) => JSON.parse(l) as { level: string; msg: string; kind?: string });
  const failed = logs.find((l) => l.msg.startsWith('run failed'));
  assert.ok(failed !== undefined && failed.level === 'error' && failed.kind === 'critical', logged.err);
  assert.ok(!logs.some((l) => l.msg === 'run finished' || l.msg === 'run stopped'));
  assert.doesNotMatch(logged.err, NO_STACK);
});

test('critical: a result file that cannot be written stops the run naming the sink; dead letters so far are kept', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'weir-results-full-'));
  const dlq = join(dir, 'dlq.jsonl');
  // Batches of 16: the first (malformed line 12 in it) closes three windows and fails on its results.
  const r = await weir(criticalRun(dir, '/dev/full', dlq, false), ['--batch-size', '16']);
  assert.equal(r.signal, null);
  assert.equal(r.code, 1, r.err);
  assert.equal(r.err.trim().split('\n').length, 1, `one line: ${r.err}`);
  assert.match(r.err, /^weir: cannot write sinks\[0\] results file \/dev\/full: ENOSPC: no space left on device, write; stopping$/m);
  assert.doesNotMatch(r.err, NO_STACK);
  // The dead-letter queue writes on its own: it may hold the step's dead letter or not yet; a
  // rerun (or a restart from the last checkpoint) does the step again, with both.
  assert.ok(jsonLines<DeadLetter>(dlq).every((d) => d.reason === 'malformed' && d.offset === '12'));
});

test('critical at start: a directory where the dead-letter file should be: exit 1, one line, nothing read', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'weir-dlq-dir-'));
  mkdirSync(join(dir, 'dlq.jsonl'));
  const r = await weir(criticalRun(dir, join(dir, 'results.jsonl'), join(dir, 'dlq.jsonl'), false));
  assert.equal(r.code, 1, r.err);
  assert.equal(r.err.trim().split('\n').length, 1, `one line: ${r.err}`);
  assert.match(r.err, /^weir: cannot write deadLetter file .*dlq\.jsonl: it is a directory, not a file \(EISDIR\)$/m);
  assert.doesNotMatch(r.err, NO_STACK);
});
