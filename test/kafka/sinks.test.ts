// The Kafka result and dead-letter sinks against the real broker (npm run kafka:up, 127.0.0.1:9092).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { Kafka, logLevel, type Admin } from 'kafkajs';
import { KafkaDeadLetterSink, KafkaResultSink } from '../../src/sinks/kafka';
import { WeirError } from '../../src/errors/errors';
import { stateKey, type DeadLetter, type WindowResult } from '../../src/pipeline/types';
import { batches } from '../helpers/results';

process.env['KAFKAJS_NO_PARTITIONER_WARNING'] = '1';
const BROKERS = [process.env['WEIR_TEST_KAFKA'] ?? '127.0.0.1:9092'];
const kafka = new Kafka({ clientId: 'weir-sink-test', brokers: BROKERS, logLevel: logLevel.NOTHING });
const suffix = `${Date.now()}-${randomBytes(4).toString('hex')}`;
let admin: Admin;
const topics: string[] = [];

before(async () => {
  admin = kafka.admin();
  await admin.connect();
});

after(async () => {
  await admin.deleteTopics({ topics }).catch(() => undefined);
  await admin.disconnect();
});

async function createTopic(base: string, numPartitions: number): Promise<string> {
  const topic = `weir-test-${base}-${suffix}`;
  topics.push(topic);
  await admin.createTopics({ topics: [{ topic, numPartitions, replicationFactor: 1 }], waitForLeaders: true });
  return topic;
}

interface Consumed {
  key: string | null;
  value: string;
  partition: number;
  offset: bigint;
}

/** Every message of the topic from the beginning, once `n` have arrived. */
async function consume(topic: string, n: number, timeoutMs = 30_000): Promise<Consumed[]> {
  const consumer = kafka.consumer({ groupId: `weir-test-${topic}`, retry: { retries: 3 } });
  const got: Consumed[] = [];
  try {
    await consumer.connect();
    await consumer.subscribe({ topic, fromBeginning: true });
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`only ${got.length} of ${n} messages from ${topic} within ${timeoutMs} ms`)), timeoutMs);
      consumer
        .run({
          eachMessage: async ({ partition, message }) => {
            got.push({
              key: message.key === null ? null : message.key.toString('utf8'),
              value: message.value === null ? '' : message.value.toString('utf8'),
              partition,
              offset: BigInt(message.offset),
            });
            if (got.length >= n) {
              clearTimeout(timer);
              resolve();
            }
          },
        })
        .catch(reject);
    });
    // Anything beyond n would be a duplicate: give it a moment to show up.
    await new Promise((r) => setTimeout(r, 500));
  } finally {
    await consumer.disconnect();
  }
  return got;
}

/** Messages in the order they were written: by partition, then offset (the order within a partition is the contract). */
function inLogOrder(ms: Consumed[]): Consumed[] {
  return [...ms].sort((a, b) => a.partition - b.partition || (a.offset < b.offset ? -1 : a.offset > b.offset ? 1 : 0));
}

function result(name: string, model: string, start: number, sizeMs: number, count: number, late = false): WindowResult {
  return {
    name,
    key: `model=${model}:region=us`,
    group: { model, region: 'us' },
    window: { start, end: start + sizeMs },
    results: { count, sum: count * 2.5, avg: 2.5, min: -1, max: 1e12, p50: 2.5, p95: 3.75, p99: 0.1 + 0.2, stddev: 1 / 3 },
    late,
    emittedAt: start + sizeMs + count,
  };
}

test('results: one message per result, keyed by the state key, value the JSON-lines JSON', async () => {
  const topic = await createTopic('results', 3);
  const sink = await KafkaResultSink.open({ brokers: BROKERS, topic, clientId: 'weir-test' });
  const T = 1_704_110_400_000, S = 300_000;
  const first: WindowResult[] = [];
  for (let i = 0; i < 12; i++) first.push(result(i % 2 === 0 ? 'latency' : 'tokens', `m${i % 4}`, T + Math.floor(i / 4) * S, S, i + 1));
  // One window fires three times: twice more as late re-firings, one in the same write and one in the next.
  const w0 = first[0]!;
  const late1 = { ...result(w0.name, 'm0', w0.window.start, S, 100, true) };
  const late2 = { ...result(w0.name, 'm0', w0.window.start, S, 101, true) };
  await sink.write(batches([...first, late1]));
  await sink.write([]);
  await sink.write(batches([late2, result('latency', 'm9', T, S, 1)]));
  await sink.close();
  const written = [...first, late1, late2, result('latency', 'm9', T, S, 1)];

  const got = await consume(topic, written.length);
  assert.equal(got.length, written.length, 'exactly one message per result');

  // Keys and values exactly, as a multiset.
  const want = written.map((r) => `${stateKey(r.name, r.key, r.window.start, r.window.end)}\t${JSON.stringify(r)}`).sort();
  assert.deepEqual(got.map((m) => `${m.key}\t${m.value}`).sort(), want);
  assert.equal(got[0]!.key!.split(':').length >= 3, true);

  // The three firings of one window share a key, one partition, and arrive in write order.
  const k0 = stateKey(w0.name, w0.key, w0.window.start, w0.window.end);
  const same = inLogOrder(got).filter((m) => m.key === k0);
  assert.equal(same.length, 3);
  assert.equal(new Set(same.map((m) => m.partition)).size, 1);
  assert.deepEqual(same.map((m) => (JSON.parse(m.value) as WindowResult).results.count), [1, 100, 101]);

  // Every key always goes to the same partition; and the keys do spread over partitions.
  const partOf = new Map<string, number>();
  for (const m of got) {
    const p = partOf.get(m.key!);
    if (p !== undefined) assert.equal(m.partition, p, `key ${m.key} in two partitions`);
    partOf.set(m.key!, m.partition);
  }
  assert.ok(new Set(got.map((m) => m.partition)).size > 1, 'keys are spread over the partitions');

  // Within each partition the order is the order of the writes.
  const writeIndex = new Map(written.map((r, i) => [JSON.stringify(r), i]));
  for (const p of new Set(got.map((m) => m.partition))) {
    const idx = inLogOrder(got).filter((m) => m.partition === p).map((m) => writeIndex.get(m.value)!);
    assert.deepEqual(idx, [...idx].sort((a, b) => a - b), `partition ${p} out of order`);
  }
});

test('dead letters: value the record JSON, key the aggregation name or null for malformed', async () => {
  const topic = await createTopic('dlq', 2);
  const sink = await KafkaDeadLetterSink.open({ brokers: BROKERS, topic });
  const base = { retry_count: 0, timestamp: '2025-01-01T12:34:56.000Z', processor_instance: 'processor-1', partition: 0 };
  const dls: DeadLetter[] = [
    { original_event: 'not json {', reason: 'malformed', error: 'not a JSON object', ...base, offset: '0' },
    { original_event: '{"timestamp":"x"}', reason: 'invalid', error: 'timestamp: not a time', aggregation: 'latency', ...base, offset: '1' },
    { original_event: '{"timestamp":1}', reason: 'late', error: 'event time is past allowed lateness', aggregation: 'tokens', ...base, offset: '2' },
    { original_event: '  "ünïcödé" \t', reason: 'malformed', error: 'not a JSON object', ...base, offset: '3' },
    { original_event: '{"timestamp":2}', reason: 'late', error: 'event time is past allowed lateness', aggregation: 'latency', ...base, offset: '4' },
  ];
  await sink.write(dls.slice(0, 3));
  await sink.write(dls.slice(3));
  await sink.close();

  const got = await consume(topic, dls.length);
  assert.equal(got.length, dls.length);
  const want = dls.map((d) => `${d.aggregation ?? '<null>'}\t${JSON.stringify(d)}`).sort();
  assert.deepEqual(got.map((m) => `${m.key ?? '<null>'}\t${m.value}`).sort(), want);
  for (const m of got) {
    const d = JSON.parse(m.value) as DeadLetter;
    if (d.reason === 'malformed') {
      assert.equal(m.key, null);
      assert.equal('aggregation' in d, false);
    } else assert.equal(m.key, d.aggregation);
  }
  // One aggregation's dead letters keep their order.
  const latency = inLogOrder(got).filter((m) => m.key === 'latency');
  assert.equal(new Set(latency.map((m) => m.partition)).size, 1);
  assert.deepEqual(latency.map((m) => (JSON.parse(m.value) as DeadLetter).offset), ['1', '4']);
});

test('an unreachable broker fails open() with an external WeirError naming the topic and broker', async () => {
  const started = Date.now();
  await assert.rejects(
    KafkaResultSink.open({ brokers: ['127.0.0.1:1'], topic: 'weir-never', retry: { retries: 1, initialRetryTime: 50 }, connectionTimeout: 500 }),
    (e: unknown) => {
      assert.ok(e instanceof WeirError, String(e));
      assert.equal(e.domain, 'external');
      assert.equal(typeof e.retriable, 'boolean');
      assert.match(e.message, /weir-never/);
      assert.match(e.message, /127\.0\.0\.1:1/);
      assert.ok(e.cause !== undefined);
      return true;
    },
  );
  assert.ok(Date.now() - started < 15_000);
});

test('errors keep kafkajs\'s retriable flag', async () => {
  const topic = await createTopic('closed', 1);
  const sink = await KafkaResultSink.open({ brokers: BROKERS, topic });
  await sink.close();
  await sink.close(); // idempotent
  await assert.rejects(sink.write(batches([result('a', 'b', 0, 1, 1)])), (e: unknown) => e instanceof WeirError);

  // A send the broker refuses (MESSAGE_TOO_LARGE) keeps kafkajs's verdict. The bulk is in the
  // value, not the key: kafkajs's murmur2 on the key is superlinear in the key's length.
  const big = await KafkaResultSink.open({ brokers: BROKERS, topic, retry: { retries: 1, initialRetryTime: 50 } });
  try {
    const huge = { ...result('a', 'b', 0, 1, 1), group: { model: 'x'.repeat(2 * 1024 * 1024) } };
    await assert.rejects(big.write(batches([huge])), (e: unknown) => {
      assert.ok(e instanceof WeirError, String(e));
      assert.equal(e.domain, 'external');
      const cause = e.cause as { retriable?: unknown };
      assert.equal(typeof cause.retriable, 'boolean');
      assert.equal(e.retriable, cause.retriable);
      assert.match(e.message, /too large|larger than/i);
      assert.match(e.message, new RegExp(topic));
      return true;
    });
  } finally {
    await big.close();
  }
});
