// Structured logs: JSON lines with level and msg; secrets never appear, neither in
// the logger's output nor anywhere on a real run's stdout and stderr.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { Client } from 'pg';
import { validateConfig } from '../src/config';
import { createLogger, maskUrlCredentials } from '../src/log';

const root = join(__dirname, '..', '..');
const bin = join(root, 'bin', 'weir.js');
const SASL_PASSWORD = 'hunter2';
const PG_PASSWORD = 's3cretpw';
const PG_URL = process.env['WEIR_TEST_POSTGRES_URL'] ?? 'postgres://postgres@127.0.0.1:5432/test';
/** The test database's URL with a password added (trust auth ignores it). */
const PG_URL_WITH_PASSWORD = PG_URL.replace(/\/\/([^:@/]+)@/, `//$1:${PG_PASSWORD}@`);

function capture(): { stream: PassThrough; lines: () => Array<Record<string, unknown>>; text: () => string } {
  const stream = new PassThrough();
  let text = '';
  stream.setEncoding('utf8').on('data', (d: string) => (text += d));
  return { stream, text: () => text, lines: () => text.trim().split('\n').filter((l) => l !== '').map((l) => JSON.parse(l) as Record<string, unknown>) };
}

const AGG = [{ name: 'lat', groupBy: ['data.model'], value: 'data.latency_ms', window: { type: 'tumbling', sizeMs: 1000 } }];

test('the logger writes JSON lines with level and msg, from the configured level up', () => {
  const out = capture();
  const log = createLogger({ log: { level: 'info' } }, { destination: out.stream });
  log.debug('not written');
  log.info({ records: 3 }, 'run finished');
  log.error('boom');
  const lines = out.lines();
  assert.equal(lines.length, 2);
  assert.equal(lines[0]!['level'], 'info');
  assert.equal(lines[0]!['msg'], 'run finished');
  assert.equal(lines[0]!['records'], 3);
  assert.equal(lines[1]!['level'], 'error');
  // No log section: warnings only, as plain lines (errors reach a person as the CLI's one line).
  const quiet = capture();
  const plain = createLogger({}, { destination: quiet.stream });
  plain.info('not written');
  plain.error('not written either');
  plain.warn({ field: 'ts' }, 'eventTime.field "ts" is in no event');
  assert.equal(quiet.text(), 'weir: warning: eventTime.field "ts" is in no event\n');
});

test('secrets never appear: sasl.password and URL passwords, even when the raw config is logged', () => {
  const cfg = validateConfig({
    source: { type: 'kafka', brokers: ['127.0.0.1:9092'], topic: 't', sasl: { mechanism: 'plain', username: 'u', password: SASL_PASSWORD } },
    aggregations: AGG,
    sinks: [{ type: 'postgres', url: `postgres://weir:${PG_PASSWORD}@db.example:5432/metrics` }],
    state: { backend: 'redis', url: `redis://:${PG_PASSWORD}@127.0.0.1:6379` },
    log: { level: 'debug' },
  });
  const out = capture();
  const log = createLogger(cfg, { destination: out.stream });
  log.info({ config: cfg }, 'run starting');
  log.info(cfg.source, 'source');
  log.debug(`connecting to ${cfg.state.url}`);
  log.error({ err: new Error(`cannot reach postgres://weir:${PG_PASSWORD}@db.example:5432/metrics`) }, 'failed');
  const text = out.text();
  assert.equal(out.lines().length, 4);
  assert.ok(!text.includes(SASL_PASSWORD), text);
  assert.ok(!text.includes(PG_PASSWORD), text);
  // What is not secret stays readable.
  assert.match(text, /postgres:\/\/weir:\*\*\*@db\.example:5432\/metrics/);
  assert.match(text, /"username":"u"/);
  assert.equal(maskUrlCredentials('https://a:b@h/x and redis://:p@h'), 'https://a:***@h/x and redis://:***@h');
});

function weir(args: string[]) {
  const r = spawnSync(process.execPath, [bin, ...args], { cwd: root, encoding: 'utf8' });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

function assertNoSecrets(r: { out: string; err: string }): void {
  for (const secret of [SASL_PASSWORD, PG_PASSWORD]) {
    assert.ok(!r.out.includes(secret), `${secret} on stdout: ${r.out}`);
    assert.ok(!r.err.includes(secret), `${secret} on stderr: ${r.err}`);
  }
}

test('weir run --print-config masks the SASL password and the postgres URL password', () => {
  const dir = mkdtempSync(join(tmpdir(), 'weir-log-'));
  const cfg = join(dir, 'weir.yaml');
  writeFileSync(cfg, `
source: { type: kafka, brokers: [127.0.0.1:9092], topic: t, sasl: { mechanism: plain, username: u, password: ${SASL_PASSWORD} } }
aggregations: [ { name: n, value: v, window: { type: tumbling, sizeMs: 1m } } ]
sinks: [ { type: postgres, url: "postgres://weir:${PG_PASSWORD}@db.example:5432/metrics" } ]
log: { level: debug }
`);
  const r = weir(['run', '--config', cfg, '--print-config']);
  assert.equal(r.code, 0, r.err);
  assertNoSecrets(r);
  assert.match(r.out, /weir:\*\*\*@db\.example/);
});

test('a real run into PostgreSQL with a password in the URL logs start and finish without it', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'weir-log-'));
  const table = `weir_log_${process.pid}_${Date.now()}`;
  const cfg = join(dir, 'weir.yaml');
  writeFileSync(cfg, `
source: { type: generator, count: 2000, seed: 5, startMs: 1767225600000 }
aggregations: [ { name: lat, groupBy: [data.model], value: data.latency_ms, window: { type: tumbling, sizeMs: 10s } } ]
sinks: [ { type: postgres, url: "${PG_URL_WITH_PASSWORD}", table: ${table} }, { type: stdout } ]
deadLetter: { type: stderr }
log: { level: debug }
`);
  try {
    const r = weir(['run', '--config', cfg]);
    assert.equal(r.code, 0, r.err);
    assertNoSecrets(r);
    const logs = r.err.split('\n').filter((l) => l.startsWith('{"level"')).map((l) => JSON.parse(l) as { msg: string; config?: { sinks: Array<{ url?: string }> } });
    const start = logs.find((l) => l.msg === 'run starting');
    assert.match(start?.config?.sinks[0]?.url ?? '', /:\*\*\*@127\.0\.0\.1/);
    assert.ok(logs.some((l) => l.msg === 'run finished'));
  } finally {
    const c = new Client({ connectionString: PG_URL });
    await c.connect();
    await c.query(`DROP TABLE IF EXISTS "${table}"`);
    await c.end();
  }
});

test('a failing run (database not answering) names the sink without its password', async () => {
  // A port that refuses connections: the sink cannot open, the run exits 1.
  const server = createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  await new Promise<void>((r) => server.close(() => r()));
  const dir = mkdtempSync(join(tmpdir(), 'weir-log-'));
  const cfg = join(dir, 'weir.yaml');
  writeFileSync(cfg, `
source: { type: generator, count: 10 }
aggregations: [ { name: lat, value: data.latency_ms, window: { type: tumbling, sizeMs: 10s } } ]
sinks: [ { type: postgres, url: "postgres://weir:${PG_PASSWORD}@127.0.0.1:${port}/test" } ]
deadLetter: { type: file, path: ${join(dir, 'd.jsonl')} }
log: { level: debug }
`);
  const r = weir(['run', '--config', cfg]);
  assert.equal(r.code, 1, r.err);
  assertNoSecrets(r);
  assert.match(r.err, /"level":"error"/);
});
