// The three state backends give the same results, straight through, across a stop and
// a restart from the checkpoint the stop took, and when another instance (other
// directories, another instance id) of the group takes over after the stop: its state
// then comes from the changelog, and Redis keys name the group, not the instance.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync } from 'node:fs';
import Redis from 'ioredis';
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

  const config = (dir: string, backend: string, group: string, instanceId = unique('inst')) => {
    const base = kafkaRunConfig(dir, topic, group, { aggregations: BY_MODEL });
    delete base['log'];
    return validateConfig({
      ...base,
      source: { ...(base['source'] as object), maxBytesPerPartition: 16_384 },
      state: { backend, dir: join(dir, 'state'), url: process.env['WEIR_TEST_REDIS_URL'] ?? 'redis://127.0.0.1:6379' },
      checkpoint: { dir: join(dir, 'checkpoints'), intervalMs: 1, retain: 2 },
      processing: { batchSize: 128, instanceId },
    });
  };
  const runs: Record<string, { straight: Map<string, WindowResult>; dlq: string[]; resumed: Map<string, WindowResult>; takenOver: Map<string, WindowResult> }> = {};
  const stoppedAfter = async (cfg: ReturnType<typeof config>, n: number) => {
    const stop = new AbortController();
    const bus = new Instrumentation();
    let batches = 0;
    bus.on('batch.processed', (e) => {
      if (e.records > 0 && ++batches === n) stop.abort();
    });
    const first = await runEmbedded(cfg, { progress: false, bus, signal: stop.signal });
    assert.equal(first.stopped, true, 'the first run was stopped');
    return first;
  };
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
    await stoppedAfter(cfg, 20);
    await runEmbedded(cfg, { progress: false });
    const all = readLines<WindowResult>(join(dir2, 'results.jsonl'));
    assertNeverHigher(all, straight, `${backend} resumed`);

    // Stopped after 20 batches, then another instance of the group, with directories of its own, runs to the end.
    const group = unique('g');
    const dirA = mkdtempSync(join(tmpdir(), `weir-${backend}-a-`)), dirB = mkdtempSync(join(tmpdir(), `weir-${backend}-b-`));
    const a = await stoppedAfter(config(dirA, backend, group, 'instance-a'), 20);
    const restored: number[] = [];
    const busB = new Instrumentation();
    busB.on('state.restored', (e) => restored.push(e.records));
    const b = await runEmbedded(config(dirB, backend, group, 'instance-b'), { progress: false, bus: busB });
    // Its state came from the changelog, and it read none of the input before the stop's checkpoint.
    assert.ok(restored.some((n) => n > 0), `${backend}: restored ${restored.join(', ')} changelog records`);
    assert.equal(a.records + b.records, lines.length, `${backend}: the first instance read ${a.records} records, the one that took over ${b.records}`);
    const both = [...readLines<WindowResult>(join(dirA, 'results.jsonl')), ...readLines<WindowResult>(join(dirB, 'results.jsonl'))];
    assertNeverHigher(both, straight, `${backend} taken over`);
    if (backend === 'redis') {
      const redis = new Redis(process.env['WEIR_TEST_REDIS_URL'] ?? 'redis://127.0.0.1:6379');
      try {
        // Keys name the group and the partition. A partition has them once a checkpoint wrote
        // some of its state: one whose windows all opened and closed between two checkpoints
        // (how the input's batches fell to the two instances decides) has none.
        const keys = (await redis.keys(`weir:${group}:*`)).sort();
        const parts = [...new Set(keys.map((k) => k.replace(/:[jv]$/, '')))];
        assert.ok(parts.length > 0, `${backend}: no state in Redis`);
        assert.deepEqual(keys, parts.flatMap((p) => [`${p}:j`, `${p}:v`]));
        for (const p of parts) assert.match(p, new RegExp(`^weir:${group}:partition-[01]$`));
        assert.deepEqual(await redis.keys('weir:instance-[ab]:*'), [], 'no key names an instance');
        await redis.del(...(await redis.keys(`weir:${group}:*`)));
      } finally {
        redis.disconnect();
      }
    }
    runs[backend] = { straight, dlq, resumed: finalResults(all), takenOver: finalResults(both) };
  }
  const ref = runs['memory']!;
  assert.ok(ref.straight.size > 200, `${ref.straight.size} windows`);
  for (const backend of BACKENDS) {
    assertSameFinals(runs[backend]!.straight, ref.straight, `${backend} straight`);
    assertSameFinals(runs[backend]!.resumed, ref.straight, `${backend} resumed`);
    assertSameFinals(runs[backend]!.takenOver, ref.straight, `${backend} taken over`);
    assert.deepEqual(runs[backend]!.dlq, ref.dlq, `${backend} dead letters`);
  }
});
