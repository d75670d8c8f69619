// The consumer thread's decoder of fetched records (src/sources/kafka-decode.ts) gives
// kafkajs's consumer the same messages as kafkajs's own decoder: every field of every
// message, and the batches' offsets, over record batches of every kind a topic may
// hold (keys, null and empty values, headers with repeated keys, multi-byte lengths,
// gzip, committed and aborted transactions with their control records), read from
// the beginning and from inside a compressed batch. Each decoder runs in its own
// worker thread, as the Kafka source's consumer does, with a plain kafkajs consumer.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import { CompressionTypes, Kafka, logLevel } from 'kafkajs';
import { BROKERS, createTopic, produce, unique } from './helpers/kafka';

interface Seen {
  fast: boolean;
  batches: Array<{ firstOffset: string | null; lastOffset: string; highWatermark: string; n: number }>;
  messages: unknown[];
}

/** Runs in a worker: reads `topic` with kafkajs (after installing Weir's decoder when `fast`) until the message `end`. */
const CONSUMER = `
const { parentPort, workerData: w } = require('node:worker_threads');
const fast = w.fast ? require(w.decode).installFastDecoder() : false;
const { Kafka, logLevel } = require('kafkajs');
const hex = (b) => (b === null || b === undefined ? b : b.toString('hex'));
(async () => {
  const kafka = new Kafka({ clientId: 'weir-test', brokers: w.brokers, logLevel: logLevel.NOTHING });
  const consumer = kafka.consumer({ groupId: w.groupId, maxWaitTimeInMs: 100, maxBytesPerPartition: w.maxBytes });
  const batches = [], messages = [];
  let done;
  const end = new Promise((r) => (done = r));
  await consumer.connect();
  await consumer.subscribe({ topics: [w.topic], fromBeginning: true });
  await consumer.run({
    autoCommit: false,
    eachBatch: async ({ batch }) => {
      batches.push({ firstOffset: batch.firstOffset(), lastOffset: batch.lastOffset(), highWatermark: batch.highWatermark, n: batch.messages.length });
      for (const m of batch.messages) {
        const headers = Object.fromEntries(Object.entries(m.headers).map(([k, v]) => [k, Array.isArray(v) ? v.map(hex) : hex(v)]));
        messages.push({ offset: m.offset, key: hex(m.key), value: hex(m.value), headers, timestamp: m.timestamp, attributes: m.attributes, magicByte: m.magicByte, isControlRecord: m.isControlRecord, batchContext: m.batchContext });
        if (m.value !== null && m.value.toString() === 'end') done();
      }
    },
  });
  await end;
  await consumer.disconnect();
  parentPort.postMessage({ fast, batches, messages });
})().catch((e) => parentPort.postMessage({ error: String(e && e.stack) }));
`;

function consume(topic: string, groupId: string, fast: boolean, maxBytes: number): Promise<Seen> {
  const decode = join(__dirname, '..', '..', 'src', 'sources', 'kafka-decode.js');
  const worker = new Worker(CONSUMER, { eval: true, workerData: { topic, groupId, fast, decode, brokers: BROKERS, maxBytes } });
  return new Promise((resolve, reject) => {
    worker.once('message', (m: Seen & { error?: string }) => {
      void worker.terminate();
      if (m.error !== undefined) reject(new Error(m.error));
      else resolve(m);
    });
    worker.once('error', reject);
  });
}

test("Weir's record decoder gives kafkajs's consumer the same messages as kafkajs's decoder", async () => {
  const topic = unique('weir-decode');
  await createTopic(topic, 1);
  const kafka = new Kafka({ clientId: 'weir-test', brokers: BROKERS, logLevel: logLevel.NOTHING });
  // Plain: keys, null and empty values and keys, headers (repeated, unicode, empty), values of 1 to 3 length bytes.
  await produce(topic, [
    { key: 'k1', value: '{"a":1}', headers: { h: 'x', 'ü': 'y' } },
    { key: null, value: null },
    { key: '', value: '' },
    { key: 'k2', value: 'v'.repeat(200), headers: { h: ['1', '2', '3'], e: '' } },
    { key: 'k3', value: 'w'.repeat(20_000) },
    { value: 'x'.repeat(63) },
    { value: 'y'.repeat(64) },
  ]);
  // One gzip batch of 50: fetched whole even when read from its middle.
  const producer = kafka.producer({ transactionalId: unique('tx'), idempotent: true, maxInFlightRequests: 1 });
  await producer.connect();
  try {
    await producer.send({ topic, compression: CompressionTypes.GZIP, messages: Array.from({ length: 50 }, (_, i) => ({ key: `g${i}`, value: `{"gzip":${i}}`, headers: { i: String(i) } })), acks: -1 });
    // A committed and an aborted transaction: control records, and messages the consumer must not see.
    const committed = await producer.transaction();
    await committed.send({ topic, messages: [{ value: 'in a committed transaction' }, { value: null }] });
    await committed.commit();
    const aborted = await producer.transaction();
    await aborted.send({ topic, messages: [{ value: 'aborted 1' }, { value: 'aborted 2' }] });
    await aborted.abort();
    const committedGzip = await producer.transaction();
    await committedGzip.send({ topic, compression: CompressionTypes.GZIP, messages: [{ value: 'gzip in a transaction' }] });
    await committedGzip.commit();
  } finally {
    await producer.disconnect();
  }
  await produce(topic, [{ value: 'end' }]);

  // From the beginning; from inside the first gzip batch (offset 7 + 20); in fetches of one batch or so.
  const admin = kafka.admin();
  await admin.connect();
  const runs: Array<{ from: number | undefined; maxBytes: number }> = [
    { from: undefined, maxBytes: 1_048_576 },
    { from: 27, maxBytes: 1_048_576 },
    { from: undefined, maxBytes: 256 },
  ];
  try {
    for (const { from, maxBytes } of runs) {
      const groups = [unique('g-kafkajs'), unique('g-weir')];
      if (from !== undefined) for (const groupId of groups) await admin.setOffsets({ groupId, topic, partitions: [{ partition: 0, offset: String(from) }] });
      const [theirs, ours] = await Promise.all([consume(topic, groups[0]!, false, maxBytes), consume(topic, groups[1]!, true, maxBytes)]);
      assert.equal(theirs.fast, false);
      assert.equal(ours.fast, true, 'the decoder was installed');
      const what = `read from ${from ?? 'the beginning'}, maxBytes ${maxBytes}`;
      assert.deepEqual(ours.messages, theirs.messages, what);
      assert.deepEqual(ours.batches, theirs.batches, what);
      // The test would prove nothing if these were not there.
      const offsets = (ours.messages as Array<{ offset: string; value: string | null }>).map((m) => Number(m.offset));
      assert.equal(offsets[0], from ?? 0, what);
      const texts = (ours.messages as Array<{ value: string | null }>).map((m) => (m.value === null ? null : Buffer.from(m.value, 'hex').toString()));
      assert.ok(texts.includes('in a committed transaction') && texts.includes('gzip in a transaction') && !texts.includes('aborted 1'), what);
      if (from === undefined) assert.ok(texts.includes(null) && texts.includes('') && texts.includes('{"gzip":0}'), what);
    }
  } finally {
    await admin.disconnect();
  }
});
