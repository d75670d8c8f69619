// A Kafka message whose value is null (a tombstone) or empty is not an event: it is
// dead-lettered `malformed`, with a message saying which, and counted among the
// records, never dropped silently. (A blank line of a file is skipped; a message is
// not a line.)
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { validateConfig } from '../../src/config';
import { runEmbedded } from '../../src/runner';
import type { DeadLetter, WindowResult } from '../../src/pipeline/types';
import { BROKERS, createTopic, produce, unique } from './helpers/kafka';

function read<T>(file: string): T[] {
  const text = readFileSync(file, 'utf8').trim();
  return text === '' ? [] : text.split('\n').map((l) => JSON.parse(l) as T);
}

test('null and empty message values are malformed dead letters, counted in records', async () => {
  const topic = unique('weir-tombstones');
  await createTopic(topic, 2);
  const ev = (ts: number, v: number) => JSON.stringify({ timestamp: ts, data: { model: 'm', latency_ms: v } });
  // Partition 0: event, tombstone, event, empty, whitespace, event. Partition 1: a tombstone only, with a key.
  await produce(topic, [
    { partition: 0, value: ev(1000, 1) },
    { partition: 0, key: 'k', value: null },
    { partition: 0, value: ev(2000, 2) },
    { partition: 0, value: '' },
    { partition: 0, value: ' \n' },
    { partition: 0, value: ev(3000, 3) },
    { partition: 1, key: 'k', value: null },
  ]);
  const dir = mkdtempSync(join(tmpdir(), 'weir-tombstones-'));
  const cfg = validateConfig({
    source: { type: 'kafka', brokers: BROKERS, topic, groupId: unique('g'), bounded: true, fromBeginning: true },
    eventTime: { maxOutOfOrdernessMs: 0, allowedLatenessMs: 0 },
    aggregations: [{ name: 'lat', groupBy: ['data.model'], value: 'data.latency_ms', window: { type: 'tumbling', sizeMs: 10_000 } }],
    sinks: [{ type: 'file', path: join(dir, 'results.jsonl') }],
    deadLetter: { type: 'file', path: join(dir, 'dlq.jsonl') },
    state: { backend: 'memory' },
    checkpoint: { dir: join(dir, 'checkpoints') },
  });
  const summary = await runEmbedded(cfg, { progress: false });
  assert.equal(summary.records, 7, 'every message is a record');
  const dlq = read<DeadLetter>(join(dir, 'dlq.jsonl'))
    .map((d) => [d.partition, d.offset, d.reason, d.error, d.original_event, d.aggregation])
    .sort((a, b) => Number(a[0]) - Number(b[0]) || Number(a[1]) - Number(b[1]));
  assert.deepEqual(dlq, [
    [0, '1', 'malformed', 'null Kafka message value (a tombstone)', '', undefined],
    [0, '3', 'malformed', 'empty Kafka message value', '', undefined],
    [0, '4', 'malformed', 'not valid JSON: Unexpected end of JSON input', ' \n', undefined],
    [1, '0', 'malformed', 'null Kafka message value (a tombstone)', '', undefined],
  ]);
  assert.equal(summary.deadLetters, 4);
  const results = read<WindowResult>(join(dir, 'results.jsonl'));
  assert.deepEqual(results.map((r) => [r.key, r.results.count, r.results.sum]), [['model=m', 3, 6]]);
  // 7 records: 3 counted, 4 dead-lettered.
  assert.equal(results[0]!.results.count + dlq.length, summary.records);
});
