// weir run over a Kafka topic gives exactly what it gives over the same events in a file.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { validateConfig } from '../../src/config';
import { runEmbedded } from '../../src/runner';
import type { DeadLetter, WindowResult } from '../../src/pipeline/types';
import { Kafka, logLevel } from 'kafkajs';
import { KafkaSource } from '../../src/sources/kafka';
import { BROKERS, FAST, Reader, createTopic, produce, sourceConfig, unique } from './helpers/kafka';

const EXAMPLE = join(__dirname, '..', '..', '..', 'examples', 'events.jsonl');

function config(dir: string, source: Record<string, unknown>) {
  return validateConfig({
    source,
    eventTime: { maxOutOfOrdernessMs: 30_000, allowedLatenessMs: 60_000 },
    aggregations: [
      { name: 'latency_metrics', groupBy: ['data.model', 'data.region'], value: 'data.latency_ms', window: { type: 'tumbling', sizeMs: 300_000 } },
      { name: 'latency_sliding', groupBy: ['data.model'], value: 'data.latency_ms', window: { type: 'sliding', sizeMs: 120_000, slideMs: 30_000 } },
      { name: 'user_sessions', groupBy: ['metadata.user_id'], value: 'data.tokens', window: { type: 'session', gapMs: 300_000 } },
    ],
    sinks: [{ type: 'file', path: join(dir, 'results.jsonl') }],
    deadLetter: { type: 'file', path: join(dir, 'dlq.jsonl') },
    state: { backend: 'memory' },
    checkpoint: { dir: join(dir, 'checkpoints') },
  });
}

function read<T>(file: string): T[] {
  const text = readFileSync(file, 'utf8').trim();
  return text === '' ? [] : text.split('\n').map((l) => JSON.parse(l) as T);
}

function finals(results: WindowResult[]): string[] {
  const last = new Map<string, WindowResult>();
  for (const r of results) last.set(`${r.name}|${r.key}|${r.window.start}|${r.window.end}`, r);
  return [...last.entries()].map(([id, r]) => `${id}|${JSON.stringify(r.results)}|${r.late}`).sort();
}

test('a single-partition topic holding the example events gives the file run\'s results and dead letters', async () => {
  const lines = readFileSync(EXAMPLE, 'utf8').split('\n').filter((l) => l !== '');
  const topic = unique('weir-run');
  await createTopic(topic, 1);
  await produce(topic, lines.map((value) => ({ value })));

  const fileDir = mkdtempSync(join(tmpdir(), 'weir-file-'));
  await runEmbedded(config(fileDir, { type: 'file', path: EXAMPLE }), { progress: false });
  const kafkaDir = mkdtempSync(join(tmpdir(), 'weir-kafka-'));
  await runEmbedded(config(kafkaDir, { type: 'kafka', brokers: BROKERS, topic, groupId: unique('g'), bounded: true, fromBeginning: true }), { progress: false });

  const fileResults = finals(read<WindowResult>(join(fileDir, 'results.jsonl')));
  assert.ok(fileResults.length > 100);
  assert.deepEqual(finals(read<WindowResult>(join(kafkaDir, 'results.jsonl'))), fileResults);
  // With no blank lines, a file's line numbers are the partition's offsets.
  const key = (d: DeadLetter) => `${d.offset}|${d.reason}|${d.aggregation ?? ''}|${d.original_event}`;
  const fileDlq = read<DeadLetter>(join(fileDir, 'dlq.jsonl')).map(key);
  assert.ok(fileDlq.length > 10);
  assert.deepEqual(read<DeadLetter>(join(kafkaDir, 'dlq.jsonl')).map(key), fileDlq);
});

test('offsets with gaps (transaction markers, an aborted transaction), keys and large headers: records, offsets and dead letters are exact', async () => {
  const topic = unique('weir-run-txn');
  await createTopic(topic, 1);
  const event = (i: number) => JSON.stringify({ timestamp: 1_767_225_600_000 + i * 1000, k: i % 3 === 0 ? 'é✓' : 'b', v: i });
  const bad = ['not json {', '  "ünïcödé" \t', '{"timestamp":"x","k":"b","v":1}', '{"timestamp":1767225600000,"k":"b","v":"nan"}'];
  const txns: Array<{ values: string[]; commit: boolean }> = [];
  for (let t = 0; t < 6; t++) {
    const values = Array.from({ length: 5 + t }, (_, i) => event(t * 100 + i));
    values.splice(t % values.length, 0, bad[t % bad.length]!);
    txns.push({ values, commit: t !== 2 });
  }
  const kafka = new Kafka({ clientId: 'weir-test', brokers: BROKERS, logLevel: logLevel.NOTHING });
  const producer = kafka.producer({ transactionalId: unique('tx'), idempotent: true, maxInFlightRequests: 1 });
  await producer.connect();
  try {
    for (const [t, { values, commit }] of txns.entries()) {
      const tx = await producer.transaction();
      // A header larger than the gap packValues carries along on every other message.
      await tx.send({ topic, messages: values.map((value, i) => ({ key: `key-${t}-${i}`, value, headers: i % 2 === 0 ? { trace: 'h'.repeat(900) } : {} })) });
      await (commit ? tx.commit() : tx.abort());
    }
  } finally {
    await producer.disconnect();
  }
  // The broker's offsets of the committed records, as a plain kafkajs consumer sees them.
  const truth: Array<{ offset: number; value: string }> = [];
  const committed = txns.filter((t) => t.commit).flatMap((t) => t.values);
  const plain = kafka.consumer({ groupId: unique('g-plain'), maxWaitTimeInMs: 100 });
  await plain.connect();
  try {
    await plain.subscribe({ topics: [topic], fromBeginning: true });
    let done!: () => void;
    const all = new Promise<void>((res) => (done = res));
    await plain.run({
      eachMessage: async ({ message }) => {
        truth.push({ offset: Number(message.offset), value: message.value!.toString('utf8') });
        if (truth.length === committed.length) done();
      },
    });
    await all;
  } finally {
    await plain.disconnect();
  }
  assert.deepEqual(truth.map((x) => x.value), committed);
  assert.ok(truth.some((x, i) => i > 0 && x.offset > truth[i - 1]!.offset + 1), 'the topic has offset gaps');

  // The source: every record at the broker's offset, byte for byte; batches with gaps carry their offsets.
  const batchSize = 8;
  let withOffsets = 0;
  const source = new KafkaSource(sourceConfig(topic, unique('g')), { batchSize, consumer: FAST, tickIntervalMs: 200 });
  const r = new Reader(source, batchSize, (b) => void (b.offsets !== undefined && withOffsets++));
  try {
    await r.toEnd(20_000);
  } finally {
    await source.close();
  }
  assert.deepEqual(
    r.records.map((x) => [Number(x.offset), x.value.toString('hex')]),
    truth.map((x) => [x.offset, Buffer.from(x.value).toString('hex')]),
  );
  assert.ok(withOffsets > 0);

  // A run: its dead letters name the broker's offset and hold the record's text unchanged.
  const dir = mkdtempSync(join(tmpdir(), 'weir-kafka-txn-'));
  const cfg = validateConfig({
    source: { type: 'kafka', brokers: BROKERS, topic, groupId: unique('g'), bounded: true, fromBeginning: true },
    aggregations: [{ name: 'v', groupBy: ['k'], value: 'v', window: { type: 'tumbling', sizeMs: 60_000 } }],
    sinks: [{ type: 'file', path: join(dir, 'results.jsonl') }],
    deadLetter: { type: 'file', path: join(dir, 'dlq.jsonl') },
    state: { backend: 'memory' },
    checkpoint: { dir: join(dir, 'checkpoints') },
  });
  const s = await runEmbedded(cfg, { progress: false });
  assert.equal(s.records, committed.length);
  const dead = read<DeadLetter>(join(dir, 'dlq.jsonl'));
  const want = truth.filter((x) => bad.includes(x.value));
  assert.ok(want.length >= 4);
  assert.deepEqual(
    dead.map((d) => [d.offset, d.original_event, d.partition]).sort(),
    want.map((x) => [String(x.offset), x.value, 0]).sort(),
  );
});
