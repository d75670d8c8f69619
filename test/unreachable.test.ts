// A service that cannot be reached at start, with the metrics server on: `weir run`
// exits non-zero by itself, with one line naming what failed, whatever it had opened
// already (the metrics server, sinks, the state backend). Where nothing listens: a free port.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from './helpers/ports';
import { BROKERS } from './kafka/helpers/kafka';

const BIN = join(__dirname, '..', '..', 'bin', 'weir.js');
const NO_STACK = /^\s+at \S+ \(|^\s+at \//m;
/** What a run may take to give up on a service that is down: kafkajs and the pools retry for a while. */
const BOUND_MS = 120_000;

interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
  err: string;
  ms: number;
}

function run(config: string): Promise<Exit> {
  const t0 = Date.now();
  const child = spawn(process.execPath, [BIN, 'run', '--config', config, '--no-progress'], { stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  child.stderr.setEncoding('utf8').on('data', (d: string) => (err += d));
  const killer = setTimeout(() => child.kill('SIGKILL'), BOUND_MS);
  return new Promise((resolve) =>
    child.on('close', (code, signal) => {
      clearTimeout(killer);
      resolve({ code, signal, err, ms: Date.now() - t0 });
    }),
  );
}

function write(dir: string, body: string): string {
  writeFileSync(join(dir, 'events.jsonl'), '{"timestamp": 1, "data": {"model": "m", "latency_ms": 1}}\n');
  const file = join(dir, 'weir.yaml');
  writeFileSync(
    file,
    `
aggregations: [ { name: a, groupBy: [data.model], value: data.latency_ms, window: { type: tumbling, sizeMs: 1000 } } ]
deadLetter: { type: file, path: ${join(dir, 'dlq.jsonl')} }
metrics: { port: 0 }
${body}
`,
  );
  return file;
}

test('each service unreachable at start, metrics on: exit 1 by itself, one line naming it, no stack trace', async () => {
  const [redis, postgres, kafka] = await Promise.all([freePort(), freePort(), freePort()]);
  const cases: Array<{ name: string; body: (dir: string) => string; says: RegExp }> = [
    {
      name: 'Redis state backend',
      body: (dir) => `
source: { type: kafka, brokers: ['127.0.0.1:${kafka}'], topic: t }
sinks: [ { type: file, path: ${join(dir, 'r.jsonl')} } ]
state: { backend: redis, url: 'redis://127.0.0.1:${redis}' }
checkpoint: { dir: ${join(dir, 'ck')} }`,
      says: new RegExp(`redis|${redis}`, 'i'),
    },
    {
      name: 'PostgreSQL sink',
      body: (dir) => `
source: { type: file, path: ${join(dir, 'events.jsonl')} }
sinks: [ { type: postgres, url: 'postgres://postgres@127.0.0.1:${postgres}/test' } ]`,
      says: new RegExp(`postgres.*${postgres}|${postgres}.*postgres`, 'i'),
    },
    {
      name: 'Kafka source',
      body: (dir) => `
source: { type: kafka, brokers: ['127.0.0.1:${kafka}'], topic: t }
sinks: [ { type: file, path: ${join(dir, 'r.jsonl')} } ]
state: { backend: memory }
checkpoint: { dir: ${join(dir, 'ck')} }`,
      says: /kafka/i,
    },
    {
      name: 'Kafka result sink',
      body: (dir) => `
source: { type: file, path: ${join(dir, 'events.jsonl')} }
sinks: [ { type: kafka, topic: out, brokers: ['127.0.0.1:${kafka}'] } ]`,
      says: /kafka/i,
    },
  ];
  const exits = await Promise.all(
    cases.map((c) => {
      const dir = mkdtempSync(join(tmpdir(), 'weir-unreachable-'));
      return run(write(dir, c.body(dir)));
    }),
  );
  cases.forEach((c, i) => {
    const e = exits[i]!;
    assert.equal(e.signal, null, `${c.name}: did not exit by itself within ${BOUND_MS / 1000} s (something kept the process alive)`);
    assert.equal(e.code, 1, `${c.name}: ${e.err}`);
    const lines = e.err.trim().split('\n');
    assert.match(lines.at(-1)!, /^weir: /, `${c.name}: ${e.err}`);
    assert.match(lines.at(-1)!, c.says, `${c.name}: names what failed: ${e.err}`);
    assert.doesNotMatch(e.err, NO_STACK, `${c.name}: ${e.err}`);
  });
});

test('the state backend down and the changelog failing too, in either order: the backend is named, at once, with no stack trace', async () => {
  // The changelog starts while the backend opens. With the broker up and the input
  // topic missing, the changelog fails first; with the broker down too, the backend
  // fails first and the changelog's start (kafkajs retrying) is stopped.
  const [redis, kafka] = await Promise.all([freePort(), freePort()]);
  for (const brokers of [BROKERS[0]!, `127.0.0.1:${kafka}`]) {
    const dir = mkdtempSync(join(tmpdir(), 'weir-unreachable-'));
    const e = await run(
      write(
        dir,
        `
source: { type: kafka, brokers: ['${brokers}'], topic: weir-no-such-topic-${Date.now()} }
sinks: [ { type: file, path: ${join(dir, 'r.jsonl')} } ]
state: { backend: redis, url: 'redis://127.0.0.1:${redis}' }
checkpoint: { dir: ${join(dir, 'ck')} }`,
      ),
    );
    assert.equal(e.code, 1, `${brokers}: ${e.err}`);
    assert.match(e.err.trim(), new RegExp(`^weir: cannot connect to the Redis state backend at redis://127.0.0.1:${redis}`), `${brokers}: ${e.err}`);
    assert.doesNotMatch(e.err, NO_STACK, `${brokers}: ${e.err}`);
    assert.ok(e.ms < 5000, `${brokers}: exited after ${e.ms} ms`);
  }
});
