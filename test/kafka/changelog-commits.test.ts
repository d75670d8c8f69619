// How a checkpoint's changelog transactions go to the broker: an interval's checkpoint
// commits its partitions one after another (together, their transactions came to the
// broker at once and results were late behind them), the last checkpoint of a run
// commits them all at once. Against the real broker: every transaction is timed as
// the changelog thread's client runs it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Changelog } from '../../src/changelog/thread';
import { validateConfig } from '../../src/config';
import { Instrumentation } from '../../src/metrics/events';
import { runEmbedded } from '../../src/runner';
import { createTopic, produce, unique } from './helpers/kafka';
import { kafkaRunConfig, keyedEvents } from './helpers/weir';

test("an interval's checkpoint commits its partitions one at a time; the last one commits them at once", async () => {
  const topic = unique('weir-changelog-commits');
  await createTopic(topic, 4);
  await produce(topic, keyedEvents(100_000));
  const dir = mkdtempSync(join(tmpdir(), 'weir-changelog-commits-'));
  const base = kafkaRunConfig(dir, topic, unique('g'));
  const cfg = validateConfig(
    kafkaRunConfig(dir, topic, unique('g'), {
      // Small fetches and 100,000 events: the run lasts for several checkpoints even when each is slow (a busy machine: 3 of 40,000 were too few).
      source: { ...(base['source'] as object), maxBytesPerPartition: 4096 },
      checkpoint: { dir: join(dir, 'checkpoints'), intervalMs: 50, retain: 3 },
      processing: { batchSize: 128, instanceId: 'weir-test' },
      log: { level: 'error' },
    }),
  );
  const commits: Array<{ p: number; start: number; end: number }> = [];
  const completed: number[] = [];
  const bus = new Instrumentation();
  bus.on('checkpoint.completed', () => completed.push(performance.now()));
  // Each transaction timed: the changelog's commit, wrapped.
  type Commit = (this: Changelog, ...args: Parameters<Changelog['commit']>) => ReturnType<Changelog['commit']>;
  const proto = Changelog.prototype as unknown as { commit: Commit };
  const commit = proto.commit;
  proto.commit = function (...args) {
    const start = performance.now();
    return commit.apply(this, args).finally(() => commits.push({ p: args[0], start, end: performance.now() }));
  };
  try {
    const s = await runEmbedded(cfg, { progress: false, bus });
    assert.equal(s.records, 100_000);
  } finally {
    proto.commit = commit;
  }
  assert.ok(completed.length >= 3, `checkpoints completed: ${completed.length}`);
  // The last checkpoint's transactions began after the one before it completed.
  const lastBegan = completed.at(-2)!;
  const last = commits.filter((c) => c.start > lastBegan);
  const interval = commits.filter((c) => c.start <= lastBegan).sort((a, b) => a.start - b.start);
  // Checkpoints of the interval with more than one partition to commit: what the test is about.
  const bounds = [-Infinity, ...completed];
  const several = bounds.slice(1, -1).filter((t, i) => interval.filter((c) => c.start > bounds[i]! && c.start <= t).length > 1).length;
  assert.ok(several >= 2, `interval checkpoints that committed more than one partition: ${several} (commits ${JSON.stringify(commits)})`);
  for (let i = 1; i < interval.length; i++) {
    const [a, b] = [interval[i - 1]!, interval[i]!];
    assert.ok(b.start >= a.end, `partition ${b.p}'s transaction began ${(a.end - b.start).toFixed(1)} ms before partition ${a.p}'s ended, in an interval's checkpoint`);
  }
  // The last one: every partition's transaction under way at once.
  assert.equal(last.length, 4, `the last checkpoint's transactions: ${JSON.stringify(last)}`);
  assert.ok(Math.max(...last.map((c) => c.start)) < Math.min(...last.map((c) => c.end)), `the last checkpoint's transactions did not overlap: ${JSON.stringify(last)}`);
});
