// Records scanned on the Kafka consumer's thread (KafkaSourceOptions.scan) while the
// operator is behind: the batches carry the scanner's output, byte for byte what the same scan gives on the
// operator's thread, and an operator that only decodes those fields gives the same
// results and dead letters as one that scans the records itself, over records that
// take every path of the scanner and the decoder (fixups, escapes, malformed JSON,
// tombstones, invalid UTF-8, repeated keys).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { validateConfig } from '../../src/config';
import { FIELD_BYTES, scanSpec } from '../../src/core/pathspec';
import { BatchScanner } from '../../src/core/wasm';
import { PartitionedOperator } from '../../src/pipeline/partitioned';
import type { RecordBatch } from '../../src/pipeline/types';
import { stepSeen } from '../helpers/results';
import { generateLines } from '../../src/sources/eventgen';
import { KafkaSource } from '../../src/sources/kafka';
import { FAST, BROKERS, createTopic, produce, sleep, sourceConfig, unique } from './helpers/kafka';

const T0 = 1_767_225_600_000;

/** Generated events with, every few, a record that leaves the scanner's common path. */
function values(n: number): Array<Buffer | string | null> {
  const base = generateLines(n, { seed: 7, startMs: T0, eventsPerSecond: 50, users: 40 });
  const odd: Array<(i: number) => Buffer | string | null> = [
    // A number beyond the exact fast path (fixed up with JSON.parse), in the value and in the timestamp.
    (i) => `{"timestamp":${T0 + i * 20},"data":{"model":"m","region":"eu","latency_ms":1.000000000000000000001,"tokens":3},"metadata":{"user_id":"u-1"}}`,
    (i) => `{"timestamp":${T0 + i * 20}.0000000000000000000001,"data":{"model":"m","region":"eu","latency_ms":5,"tokens":3},"metadata":{"user_id":"u-1"}}`,
    // An escaped ISO timestamp string, an escaped key value, a key spelled with an escape.
    (i) => `{"timestamp":"${new Date(T0 + i * 20).toISOString().replace('T', '\\u0054')}","data":{"model":"g\\u0070t","region":"us","latency_ms":7.5,"tokens":1},"metadata":{"user_id":"u-2"}}`,
    (i) => `{"timestamp":${T0 + i * 20},"d\\u0061ta":{"model":"m","region":"us","latency_ms":2,"tokens":9},"metadata":{"user_id":"u-\\"q\\""}}`,
    // A repeated key: the last one counts.
    (i) => `{"timestamp":${T0 + i * 20},"data":{"model":"a","region":"eu","latency_ms":1,"tokens":2},"data":{"model":"b","region":"eu","latency_ms":4,"tokens":8},"metadata":{"user_id":"u-3"}}`,
    // Malformed, not an object, blank, a tombstone, a missing value, a string value.
    () => '{"timestamp":1,"data":{',
    () => '[1,2,3]',
    () => '   ',
    () => null,
    (i) => `{"timestamp":${T0 + i * 20},"data":{"model":"m","region":"eu"},"metadata":{"user_id":"u-4"}}`,
    (i) => `{"timestamp":${T0 + i * 20},"data":{"model":"m","region":"eu","latency_ms":"12","tokens":"x"},"metadata":{"user_id":"u-4"}}`,
    // Invalid UTF-8 inside a group-by value, and non-ASCII text.
    (i) => Buffer.concat([Buffer.from(`{"timestamp":${T0 + i * 20},"data":{"model":"m\xff`, 'latin1'), Buffer.from(`","region":"eu","latency_ms":3,"tokens":4},"metadata":{"user_id":"ü-✓"}}`)]),
    // Late: long before everything else.
    () => `{"timestamp":${T0 - 3_600_000},"data":{"model":"m","region":"eu","latency_ms":1,"tokens":1},"metadata":{"user_id":"u-5"}}`,
  ];
  return base.map((line, i) => (i % 7 === 3 ? odd[(i / 7) % odd.length | 0]!(i) : line));
}

const AGGREGATIONS = [
  { name: 'latency', groupBy: ['data.model', 'data.region'], value: 'data.latency_ms', window: { type: 'tumbling', sizeMs: 2_000 } },
  { name: 'tokens_sliding', groupBy: ['data.region'], value: 'data.tokens', window: { type: 'sliding', sizeMs: 4_000, slideMs: 1_000 } },
  { name: 'sessions', groupBy: ['metadata.user_id'], value: 'data.tokens', window: { type: 'session', gapMs: 1_500 } },
];

test('records scanned on the consumer thread: the same bytes as a scan on the operator thread, the same results and dead letters', async () => {
  const topic = unique('weir-prescan');
  await createTopic(topic, 2);
  const vs = values(3000);
  await produce(topic, vs.map((value, i) => ({ key: `k-${i % 11}`, value })));

  const cfg = validateConfig({
    source: { type: 'kafka', brokers: BROKERS, topic },
    eventTime: { field: 'timestamp', maxOutOfOrdernessMs: 500, allowedLatenessMs: 2_000 },
    aggregations: AGGREGATIONS,
    processing: { batchSize: 128 },
  });
  const spec = scanSpec(cfg.eventTime.field, cfg.aggregations);
  const here = await BatchScanner.create(spec);
  // Results of a scanned batch, and of the same batch without its scan (scanned by the operator).
  const pre = new PartitionedOperator(cfg, { clock: () => 0 });
  const plain = new PartitionedOperator(cfg, { clock: () => 0 });
  const source = new KafkaSource(sourceConfig(topic, unique('g'), { consumerThread: 'own' }), { batchSize: 128, consumer: FAST, scan: spec });
  let batches = 0, scanned = 0, records = 0;
  const deadline = Date.now() + 60_000;
  try {
    for await (const m of source.messages()) {
      assert.ok(Date.now() < deadline, 'the bounded read ends');
      if (m.kind === 'end') break;
      if (m.kind !== 'batch') continue;
      const b: RecordBatch = m.batch;
      batches++;
      records += b.n;
      if (b.scanned !== undefined) {
        scanned++;
        assert.equal(b.scanned.paths, spec.paths);
        const want = new Uint8Array(here.bytesFor(b.n));
        here.scan(b.buf, b.starts, b.ends, b.n, want);
        const got = Buffer.concat([b.scanned.fields.subarray(0, b.n * spec.paths * FIELD_BYTES), b.scanned.status.subarray(0, b.n)]);
        assert.ok(got.equals(want), `partition ${b.partition} from offset ${b.firstOffset}: the consumer thread's scan differs`);
      }
      const { scanned: _s, ...unscanned } = b;
      assert.deepEqual(stepSeen(pre.process(b)), stepSeen(plain.process(unscanned)), `partition ${b.partition} from offset ${b.firstOffset}`);
      // A slow operator: batches wait for it, and the consumer's thread scans them.
      await sleep(5);
    }
  } finally {
    await source.close();
  }
  assert.equal(records, vs.length);
  // Not the first ones: the scanner compiles in the background, and the operator is behind only once batches wait for it.
  assert.ok(scanned >= batches / 2, `${scanned} of ${batches} batches scanned on the consumer thread`);
  for (let done = false; !done; ) {
    const a = pre.finishStep(1000), b = plain.finishStep(1000);
    assert.deepEqual(stepSeen(a.out), stepSeen(b.out));
    assert.equal(a.done, b.done);
    done = a.done;
  }
});

test('a consumer on the main thread does not scan: the operator does, without a copy more', async () => {
  const topic = unique('weir-prescan-main');
  await createTopic(topic, 1);
  await produce(topic, generateLines(500, { seed: 3, startMs: T0 }).map((value) => ({ value })));
  const cfg = validateConfig({ source: { type: 'kafka', brokers: BROKERS, topic }, aggregations: AGGREGATIONS });
  const source = new KafkaSource(sourceConfig(topic, unique('g'), { consumerThread: 'main' }), { batchSize: 128, consumer: FAST, scan: scanSpec(cfg.eventTime.field, cfg.aggregations) });
  let records = 0;
  try {
    for await (const m of source.messages()) {
      if (m.kind === 'end') break;
      if (m.kind !== 'batch') continue;
      assert.equal(m.batch.scanned, undefined);
      records += m.batch.n;
    }
  } finally {
    await source.close();
  }
  assert.equal(records, 500);
});
