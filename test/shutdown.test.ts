// `weir run` stops on SIGTERM/SIGINT: flushes what it wrote, exits 0 within the
// bound (STOP_BOUND_MS); a second signal exits 130 at once.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer, type AddressInfo, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { STOP_BOUND_MS } from '../src/cli';

const root = join(__dirname, '..', '..');
const bin = join(root, 'bin', 'weir.js');

interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
  err: string;
  /** ms from the first signal to the exit. */
  afterSignalMs: number;
}

/** Starts `weir run`, waits until it logs its start and then `waitMs`, sends `signals` (`gapMs` apart) and waits for the exit. */
function runAndSignal(config: string, waitMs: number, signals: NodeJS.Signals[], gapMs = 0): Promise<Exit> {
  const child = spawn(process.execPath, [bin, 'run', '--config', config, '--no-progress'], { cwd: root, stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  child.stderr.setEncoding('utf8').on('data', (d: string) => (err += d));
  let signalledAt = 0;
  const killer = setTimeout(() => child.kill('SIGKILL'), waitMs + STOP_BOUND_MS + 10_000);
  // Signals count from the "run starting" log line: the handlers are installed by then
  // (a loaded machine may take long to start node and compile the WebAssembly core).
  const started = new Promise<void>((resolve) => {
    const onData = (): void => {
      if (err.includes('"msg":"run starting"')) {
        child.stderr.off('data', onData);
        resolve();
      }
    };
    child.stderr.on('data', onData);
  });
  return new Promise((resolve) => {
    const send = async (): Promise<void> => {
      signalledAt = Date.now();
      for (const [i, s] of signals.entries()) {
        if (i > 0) await new Promise((r) => setTimeout(r, gapMs));
        child.kill(s);
      }
    };
    void started.then(() => setTimeout(() => void send(), waitMs));
    let exitedAt = 0;
    child.on('exit', () => (exitedAt = Date.now()));
    // 'close' comes after 'exit' and after stderr is read to its end.
    child.on('close', (code, signal) => {
      clearTimeout(killer);
      resolve({ code, signal, err, afterSignalMs: exitedAt - signalledAt });
    });
  });
}

function config(dir: string, resultsPath: string, source: string, deadLetterPath = join(dir, 'dlq.jsonl')): string {
  const p = join(dir, 'weir.yaml');
  writeFileSync(
    p,
    `
source: ${source}
eventTime: { maxOutOfOrdernessMs: 100, allowedLatenessMs: 0 }
aggregations: [ { name: lat, groupBy: [data.model], value: data.latency_ms, window: { type: tumbling, sizeMs: 200 } } ]
sinks: [ { type: file, path: ${resultsPath} } ]
deadLetter: { type: file, path: ${deadLetterPath} }
log: { level: info }
`,
  );
  return p;
}

function jsonLines(path: string): unknown[] {
  const text = readFileSync(path, 'utf8');
  assert.ok(text === '' || text.endsWith('\n'), 'the last line is complete');
  return text.split('\n').filter((l) => l !== '').map((l) => JSON.parse(l) as unknown);
}

test('SIGTERM stops an unbounded run: exit 0 within the bound, complete JSON lines, open windows not fired', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'weir-stop-'));
  const results = join(dir, 'results.jsonl');
  const r = await runAndSignal(config(dir, results, '{ type: generator, eventsPerSecond: 200, realtime: true }'), 1500, ['SIGTERM']);
  assert.equal(r.code, 0, r.err);
  assert.ok(r.afterSignalMs < STOP_BOUND_MS, `stopped in ${r.afterSignalMs} ms`);
  const out = jsonLines(results) as Array<{ window: { end: number } }>;
  assert.ok(out.length > 0, 'windows that closed before the stop were written');
  jsonLines(join(dir, 'dlq.jsonl'));
  const lines = r.err.trim().split('\n');
  // The log lines, then the summary line a person reads.
  assert.match(lines.at(-1)!, /^stopped: \d+ events in /);
  const logs = lines.slice(0, -1).map((l) => JSON.parse(l) as { level: string; msg: string; summary?: { stopped: boolean; records: number } });
  const last = logs.find((l) => l.msg === 'run stopped');
  assert.ok(last?.summary?.stopped === true && last.summary.records > 0, r.err);
  assert.ok(!logs.some((l) => l.msg === 'run finished'));
});

test('a second SIGINT exits 130 at once while the stop waits on a stuck sink', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'weir-stop-'));
  // A "database" that accepts connections and never answers: opening the sink hangs,
  // so the graceful stop cannot finish before the second signal. (A sink blocked in
  // a file write would not do: libuv joins its thread pool at exit, so no exit code
  // can be delivered while a thread is stuck in write(2).)
  const sockets = new Set<Socket>();
  const server = createServer((s) => sockets.add(s));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  try {
    const cfg = config(dir, join(dir, 'unused.jsonl'), '{ type: generator, eventsPerSecond: 200, realtime: true }');
    writeFileSync(cfg, readFileSync(cfg, 'utf8').replace(/sinks: .*/, `sinks: [ { type: postgres, url: "postgres://weir:pw@127.0.0.1:${port}/test" } ]`));
    const r = await runAndSignal(cfg, 500, ['SIGINT', 'SIGINT'], 200);
    assert.equal(r.code, 130, `${r.signal} ${r.err}`);
    assert.match(r.err, /SIGINT again/);
    assert.ok(r.afterSignalMs < 2000, `exited ${r.afterSignalMs} ms after the first signal`);
  } finally {
    for (const s of sockets) s.destroy();
    server.close();
  }
});
