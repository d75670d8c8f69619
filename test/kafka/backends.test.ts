// The three state backends give the same results, straight through and across a
// stop and a restart from the checkpoint the stop took.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { validateConfig } from '../../src/config';
import { runEmbedded } from '../../src/runner';
import { Instrumentation } from '../../src/metrics/events';
import { generateLines } from '../../src/sources/eventgen';
import type { DeadLetter, WindowResult } from '../../src/pipeline/types';
import { createTopic, produce, unique } from './helpers/kafka';
import { assertNeverHigher, assertSameFinals, deadLetterSet, finalResults, kafkaRunConfig, readLines } from './helpers/weir';

const BACKENDS = ['memory', 'rocksdb', 'redis'] as const;
const BY_MODEL = [
  { name: 'latency_metrics', groupBy: ['data.model', 'data.region'], value: 'data.latency_ms', window: { type: 'tumbling', sizeMs: 60_000 } },
  { name: 'latency_sliding', groupBy: ['data.model'], value: 'data.latency_ms', window: { type: 'sliding', sizeMs: 120_000, slideMs: 30_000 } },
  { name: 'model_sessions', groupBy: ['data.model'], value: 'data.tokens', window: { type: 'session', gapMs: 500 } },
];

test('memory, RocksDB and Redis backends give identical results, straight through and across a stop and restart', async () => {
  const topic = unique('weir-backends');
  await createTopic(topic, 2);
  // Nothing too late and every key in one partition (keyed by model): the results do
  // not depend on how the two partitions' batches interleave.
  const lines = generateLines(8000, { seed: 3, eventsPerSecond: 30, outOfOrderMs: 5000, invalidFraction: 0.01, malformedFraction: 0.005 });
  await produce(topic, lines.map((value, i) => ({ key: /"model":"([^"]*)"/.exec(value)?.[1] ?? String(i), value })));

  const config = (dir: string, backend: string, group: string) => {
    const base = kafkaRunConfig(dir, topic, group, { aggregations: BY_MODEL });
    delete base['log'];
    return validateConfig({
      ...base,
      source: { ...(base['source'] as object), maxBytesPerPartition: 16_384 },
      state: { backend, dir: join(dir, 'state'), url: process.env['WEIR_TEST_REDIS_URL'] ?? 'redis://127.0.0.1:6379' },
      checkpoint: { dir: join(dir, 'checkpoints'), intervalMs: 1, retain: 2 },
      processing: { batchSize: 128, instanceId: unique('inst') },
    });
  };
  const runs: Record<string, { straight: Map<string, WindowResult>; dlq: string[]; resumed: Map<string, WindowResult> }> = {};
  for (const backend of BACKENDS) {
    // Straight through, with a checkpoint after every batch.
    const dir = mkdtempSync(join(tmpdir(), `weir-${backend}-`));
    await runEmbedded(config(dir, backend, unique('g')), { progress: false });
    const straight = finalResults(readLines<WindowResult>(join(dir, 'results.jsonl')));
    const dlq = deadLetterSet(readLines<DeadLetter>(join(dir, 'dlq.jsonl')));
    assert.ok(readdirSync(join(dir, 'checkpoints')).filter((n) => n.startsWith('checkpoint-')).length <= 2);

    // Stopped after 20 batches (a final checkpoint), then run to the end.
    const dir2 = mkdtempSync(join(tmpdir(), `weir-${backend}-stop-`));
    const cfg = config(dir2, backend, unique('g'));
    const stop = new AbortController();
    const bus = new Instrumentation();
    let batches = 0;
    bus.on('batch.processed', (e) => {
      if (e.records > 0 && ++batches === 20) stop.abort();
    });
    const first = await runEmbedded(cfg, { progress: false, bus, signal: stop.signal });
    assert.equal(first.stopped, true, 'the first run was stopped');
    await runEmbedded(cfg, { progress: false });
    const all = readLines<WindowResult>(join(dir2, 'results.jsonl'));
    assertNeverHigher(all, straight, `${backend} resumed`);
    runs[backend] = { straight, dlq, resumed: finalResults(all) };
  }
  const ref = runs['memory']!;
  assert.ok(ref.straight.size > 200, `${ref.straight.size} windows`);
  for (const backend of BACKENDS) {
    assertSameFinals(runs[backend]!.straight, ref.straight, `${backend} straight`);
    assertSameFinals(runs[backend]!.resumed, ref.straight, `${backend} resumed`);
    assert.deepEqual(runs[backend]!.dlq, ref.dlq, `${backend} dead letters`);
  }
});
