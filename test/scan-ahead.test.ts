// A file's records scanned on the scan thread (scanAhead, with more than one core): every
// batch comes scanned, in order, with the file's records; an operator that only decodes
// them gives, step by step, the results and dead letters of one that reads the file
// itself and scans; and the iteration ends the thread (the process is not kept alive).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { validateConfig } from '../src/config';
import { scanSpec } from '../src/core/pathspec';
import { PartitionedOperator } from '../src/pipeline/partitioned';
import type { RecordBatch } from '../src/pipeline/types';
import { stepSeen } from './helpers/results';
import { generateLines } from '../src/sources/eventgen';
import { fileBatches } from '../src/sources/lines';
import { scanAhead } from '../src/sources/scan-ahead';

const T0 = 1_767_225_600_000;

/** Generated events, with every few a line that leaves the scanner's common path. */
function lines(n: number): string[] {
  const odd = [
    (i: number) => `{"timestamp":${T0 + i * 20},"data":{"model":"m","region":"eu","latency_ms":1.000000000000000000001,"tokens":3},"metadata":{"user_id":"u-1"}}`,
    (i: number) => `{"timestamp":"${new Date(T0 + i * 20).toISOString().replace('T', '\\u0054')}","data":{"model":"g\\u0070t","region":"us","latency_ms":7.5,"tokens":1},"metadata":{"user_id":"u-2"}}`,
    (i: number) => `{"timestamp":${T0 + i * 20},"data":{"model":"a","region":"eu","latency_ms":1,"tokens":2},"data":{"model":"b","region":"eu","latency_ms":4,"tokens":8},"metadata":{"user_id":"u-3"}}`,
    () => '{"timestamp":1,"data":{',
    () => '[1,2,3]',
    () => '',
    () => '   ',
    (i: number) => `{"timestamp":${T0 + i * 20},"data":{"model":"m","region":"eu"},"metadata":{"user_id":"ü-✓"}}`,
    () => `{"timestamp":${T0 - 3_600_000},"data":{"model":"m","region":"eu","latency_ms":1,"tokens":1},"metadata":{"user_id":"u-5"}}`,
  ];
  return generateLines(n, { seed: 11, startMs: T0, eventsPerSecond: 50, users: 300 }).map((l, i) => (i % 9 === 4 ? odd[(i / 9) % odd.length | 0]!(i) : l));
}

const AGGREGATIONS = [
  { name: 'latency', groupBy: ['data.model', 'data.region'], value: 'data.latency_ms', window: { type: 'tumbling', sizeMs: 2_000 } },
  { name: 'sessions', groupBy: ['metadata.user_id'], value: 'data.tokens', window: { type: 'session', gapMs: 1_500 } },
];

test('a file scanned on the scan thread: every batch scanned, in order, and the same results and dead letters', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'weir-scan-ahead-'));
  const file = join(dir, 'events.jsonl');
  // Small reads and batches: batches cross read buffers, and the scan thread holds several at once.
  writeFileSync(file, lines(20_000).join('\n') + '\n{"timestamp":1767225600000,"data":{"latency_ms":2},"metadata":{"user_id":"last"}}');
  const cfg = validateConfig({
    source: { type: 'file', path: file },
    eventTime: { field: 'timestamp', maxOutOfOrdernessMs: 500, allowedLatenessMs: 2_000 },
    aggregations: AGGREGATIONS,
    processing: { batchSize: 100 },
  });
  const spec = scanSpec(cfg.eventTime.field, cfg.aggregations);
  const scanned = scanAhead(fileBatches(file, 100, 0, 64 * 1024), spec)[Symbol.asyncIterator]();
  const plain = fileBatches(file, 100, 0, 64 * 1024)[Symbol.asyncIterator]();
  const pre = new PartitionedOperator(cfg, { clock: () => 0 });
  const own = new PartitionedOperator(cfg, { clock: () => 0 });
  let batches = 0, records = 0;
  for (;;) {
    const [a, b] = await Promise.all([scanned.next(), plain.next()]);
    assert.equal(a.done, b.done);
    if (a.done === true || b.done === true) break;
    const x: RecordBatch = a.value, y: RecordBatch = b.value;
    batches++;
    records += x.n;
    assert.ok(x.scanned !== undefined, `batch ${batches} is scanned`);
    assert.equal(x.n, y.n);
    assert.equal(x.firstOffset, y.firstOffset);
    for (let k = 0; k < x.n; k++) assert.ok(x.buf.subarray(x.starts[k], x.ends[k]).equals(y.buf.subarray(y.starts[k], y.ends[k])), `batch ${batches} record ${k}`);
    assert.deepEqual(stepSeen(pre.process(x)), stepSeen(own.process(y)), `batch ${batches}`);
  }
  assert.equal(records, 20_001);
  assert.ok(batches > 100);
  for (let done = false; !done; ) {
    const a = pre.finishStep(500), b = own.finishStep(500);
    assert.deepEqual(stepSeen(a.out), stepSeen(b.out));
    done = a.done;
  }
});

test('a stop in the middle ends the scan thread: the process exits by itself', () => {
  const dir = mkdtempSync(join(tmpdir(), 'weir-scan-ahead-stop-'));
  const file = join(dir, 'events.jsonl');
  writeFileSync(file, lines(5_000).join('\n') + '\n');
  const src = join(__dirname, '..', 'src');
  const script = `
    const { scanAhead } = require(${JSON.stringify(join(src, 'sources', 'scan-ahead.js'))});
    const { fileBatches } = require(${JSON.stringify(join(src, 'sources', 'lines.js'))});
    const { scanSpec } = require(${JSON.stringify(join(src, 'core', 'pathspec.js'))});
    (async () => {
      let n = 0;
      for await (const b of scanAhead(fileBatches(${JSON.stringify(file)}, 100), scanSpec('timestamp', [{ value: 'data.tokens', groupBy: ['metadata.user_id'] }]))) if (++n === 3) break;
      process.stdout.write(String(n));
    })();`;
  const r = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', timeout: 20_000 });
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stdout, '3');
});
