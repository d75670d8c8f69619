// `weir redeliver` as a user runs it, against the real PostgreSQL and a file sink.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PostgresResultSink } from '../src/sinks/postgres';
import { ResultBatch } from '../src/pipeline/results';
import type { DeadLetter, WindowResult } from '../src/pipeline/types';
import { PG_URL, dropTables, freshTable, result, rowSummary } from './helpers/pg';

const tables: string[] = [];
after(() => dropTables(tables));

const root = join(__dirname, '..', '..');
const bin = join(root, 'bin', 'weir.js');

function weir(args: string[]) {
  const r = spawnSync(process.execPath, [bin, ...args], { cwd: root, encoding: 'utf8', timeout: 60_000 });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

function deadLetter(r: WindowResult, sink: string, reason: DeadLetter['reason'] = 'undeliverable'): string {
  const d: DeadLetter = {
    original_event: JSON.stringify(r), reason, error: `${sink}: cannot reach the server`, aggregation: r.name, retry_count: 3,
    timestamp: '2025-01-01T12:00:00.000Z', processor_instance: 'processor-1', partition: 0, offset: '41', sink,
  };
  return JSON.stringify(d);
}

function setup(sinks: string): { dir: string; cfg: string } {
  const dir = mkdtempSync(join(tmpdir(), 'weir-redeliver-'));
  const cfg = join(dir, 'weir.yaml');
  writeFileSync(
    cfg,
    `source: { type: file, path: ${join(dir, 'events.jsonl')} }
aggregations: [ { name: latency, groupBy: [data.model], value: data.latency_ms, window: { type: tumbling, sizeMs: 1s } } ]
sinks: ${sinks}
retry: { retries: 1, initialDelayMs: 10 }
`,
  );
  return { dir, cfg };
}

const T = 1_704_110_400_000;

test('weir redeliver writes undeliverable results to their PostgreSQL sink, keeps newer rows, and leaves the rest in --rest', async () => {
  const table = freshTable(tables);
  // sinks[0] gets nothing: only the dead letters of sinks[1] name a sink.
  const { dir, cfg } = setup(`[ { type: stdout }, { type: postgres, url: "${PG_URL}", table: ${table} } ]`);
  // The table already holds a newer result of one window than the dead letter's.
  const sink = await PostgresResultSink.open({ url: PG_URL, table });
  const newer = result('latency', 'b', T, 1000, 50, true, T + 90_000);
  await sink.write([ResultBatch.fromObjects([newer])]);
  await sink.close();

  const a1 = result('latency', 'a', T, 1000, 5);
  const a2 = result('latency', 'a', T + 1000, 1000, 6);
  const a2late = result('latency', 'a', T + 1000, 1000, 7, true, T + 2000 + 4000);
  const bOlder = result('latency', 'b', T, 1000, 40, false, T + 10_000);
  const others = [
    deadLetter(result('latency', 'c', T, 1000, 1), 'sinks[1]', 'late'),
    deadLetter(result('latency', 'd', T, 1000, 1), 'sinks[7]'),
    'not json at all',
    JSON.stringify({ original_event: '{"timestamp": 1}', reason: 'invalid', error: 'no value', aggregation: 'latency', retry_count: 0, timestamp: '2025-01-01T12:00:00.000Z', processor_instance: 'p', partition: 0, offset: '1' }),
  ];
  const from = join(dir, 'dlq.jsonl');
  const text = [deadLetter(a1, 'sinks[1]'), others[0], deadLetter(a2, 'sinks[1]'), others[1], deadLetter(bOlder, 'sinks[1]'), others[2], deadLetter(a2late, 'sinks[1]'), '', others[3]].join('\n') + '\n';
  writeFileSync(from, text);
  const rest = join(dir, 'rest.jsonl');

  const r = weir(['redeliver', '--config', cfg, '--from', from, '--rest', rest]);
  assert.equal(r.code, 0, r.err);
  assert.equal(r.err, `redelivered 4, left 4 (written to ${rest})\n`);
  assert.deepEqual(await rowSummary(table), [
    ['latency', 'model=a', T, 5, a1.emittedAt],
    ['latency', 'model=a', T + 1000, 7, a2late.emittedAt],
    ['latency', 'model=b', T, 50, newer.emittedAt],
  ]);
  assert.deepEqual(readFileSync(rest, 'utf8'), others.join('\n') + '\n');
  assert.equal(readFileSync(from, 'utf8'), text, 'the --from file is left as it was');
  assert.equal(r.out, '', 'nothing written to sinks[0]');

  // Again into the same --rest: refused, it is not a new file.
  const again = weir(['redeliver', '--config', cfg, '--from', from, '--rest', rest]);
  assert.equal(again.code, 2);
  assert.match(again.err, /^weir: --rest: .* exists; name a new file\n$/);
});

test('weir redeliver appends to a file sink, and reports results it could not deliver with exit code 1', async () => {
  const d = mkdtempSync(join(tmpdir(), 'weir-redeliver-'));
  const results = join(d, 'results.jsonl');
  const existing = JSON.stringify(result('latency', 'z', T, 1000, 1)) + '\n';
  writeFileSync(results, existing);
  const c = join(d, 'weir.yaml');
  writeFileSync(
    c,
    `source: { type: file, path: events.jsonl }
aggregations: [ { name: latency, value: data.latency_ms, window: { type: tumbling, sizeMs: 1s } } ]
sinks: [ { type: file, path: ${results} }, { type: postgres, url: "postgres://postgres@127.0.0.1:1/test", table: never } ]
retry: { retries: 1, initialDelayMs: 10 }
`,
  );
  const toFile = result('latency', 'a', T, 1000, 5);
  const toPg = result('latency', 'b', T, 1000, 6);
  const from = join(d, 'dlq.jsonl');
  writeFileSync(from, [deadLetter(toFile, 'sinks[0]'), deadLetter(toPg, 'sinks[1]')].join('\n') + '\n');
  const r = weir(['redeliver', '-c', c, '--from', from]);
  assert.equal(r.code, 1, r.err);
  const lines = r.err.trimEnd().split('\n');
  assert.equal(lines.length, 2, r.err);
  assert.match(lines[0]!, /^weir: .*sinks\[1\].*table "never" at 127\.0\.0\.1:1\/test.*ECONNREFUSED/);
  assert.equal(lines[1], `redelivered 1, left 1 (still in ${from}), of which 1 undeliverable result(s) a sink still did not take`);
  assert.equal(readFileSync(results, 'utf8'), existing + JSON.stringify(toFile) + '\n');
});

test('weir redeliver: usage errors are one line with exit code 2', () => {
  assert.equal(weir(['redeliver', '--from', 'x']).code, 2);
  const { dir, cfg } = setup('[ { type: stdout } ]');
  const r = weir(['redeliver', '--config', cfg, '--from', join(dir, 'missing.jsonl')]);
  assert.equal(r.code, 1);
  assert.equal(r.err, `weir: --from: dead-letter file not found: ${join(dir, 'missing.jsonl')}\n`);
  const h = weir(['help', 'redeliver']);
  assert.equal(h.code, 0);
  assert.match(h.out, /--rest FILE/);
});
