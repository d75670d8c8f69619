// weir run over a Kafka topic gives exactly what it gives over the same events in a file.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { validateConfig } from '../../src/config';
import { runEmbedded } from '../../src/runner';
import type { DeadLetter, WindowResult } from '../../src/pipeline/types';
import { BROKERS, createTopic, produce, unique } from './helpers/kafka';

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
