// Restoring a partition from the local cache and the changelog written after it: an
// instance gets back a partition another instance has moved on since. Its cache holds
// the windows as they stood at its own last checkpoint; the changelog after that offset
// holds newer values of some of them, tombstones of purged ones and new ones. The
// windows it rebuilds must be exactly those of the instance that wrote the changelog.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Checkpointer, type CheckpointSource } from '../../src/checkpoint/coordinator';
import { Changelog } from '../../src/changelog/thread';
import { validateConfig, type Config } from '../../src/config';
import { createLogger } from '../../src/log';
import { Instrumentation } from '../../src/metrics/events';
import { PartitionedOperator } from '../../src/pipeline/partitioned';
import type { RecordBatch } from '../../src/pipeline/types';
import { openStateBackend } from '../../src/state';
import { Kafka, logLevel } from 'kafkajs';
import { BROKERS, createTopic, unique } from './helpers/kafka';

const T0 = 1_767_225_600_000;

/** Events of keys [from, to) at T0 + tsBase + key (ms), as the batch of offsets from `offset`. */
function batchOf(from: number, to: number, tsBase: number, offset: number): RecordBatch {
  const parts: Buffer[] = [];
  for (let k = from; k < to; k++) parts.push(Buffer.from(`{"timestamp":${T0 + tsBase + k},"k":"key-${k}","v":${(k * 7919) % 1000}}`));
  const starts = new Uint32Array(parts.length), ends = new Uint32Array(parts.length);
  let pos = 0;
  parts.forEach((p, i) => {
    starts[i] = pos;
    ends[i] = pos += p.length;
  });
  return { buf: Buffer.concat(parts), starts, ends, n: parts.length, partition: 0, firstOffset: offset };
}

const source: CheckpointSource = {
  startInfo: () => ({ committed: undefined, low: '0', position: '0' }),
  seek: () => true,
  commit: async () => {},
  assignment: [0],
  pastNonRecords: (_p, offset) => offset,
};

/**
 * Instances over one topic and group, each with directories of its own (`configFor`),
 * opened as `weir run` does with a changelog and assigned partition 0 (`open`).
 */
function instances(topic: string, group: string, aggregations: readonly object[]) {
  const dirs: string[] = [];
  const configFor = (instance: string): Config => {
    const dir = mkdtempSync(join(tmpdir(), 'weir-restore-'));
    dirs.push(dir);
    return validateConfig({
      source: { type: 'kafka', brokers: BROKERS, topic, groupId: group },
      eventTime: { field: 'timestamp', maxOutOfOrdernessMs: 0, allowedLatenessMs: 0 },
      aggregations,
      state: { backend: 'rocksdb', dir: join(dir, 'state') },
      checkpoint: { dir: join(dir, 'checkpoints') },
      processing: { instanceId: instance },
    });
  };
  const open = async (cfg: Config) => {
    const src = cfg.source as Extract<Config['source'], { type: 'kafka' }>;
    const changelog = await Changelog.start({ brokers: src.brokers, clientId: 'weir-test', ssl: false, groupId: src.groupId, topic, changelog: cfg.changelog.topic!, create: true, transactionTimeoutMs: 60_000 });
    const op = new PartitionedOperator(cfg);
    const bus = new Instrumentation();
    const restored: number[] = [];
    bus.on('state.restored', (e) => restored.push(e.records));
    const state = await openStateBackend(cfg.state, cfg.processing.instanceId, { thread: true });
    const ck = new Checkpointer(cfg, op, state, createLogger({ ...cfg, log: { ...cfg.log, level: 'error' } }), bus, Date.now, changelog);
    await ck.init();
    await ck.assign([0], source);
    const run = (b: RecordBatch): void => {
      op.process(b);
      ck.processed(b);
    };
    const windows = (): string[] =>
      op
        .operator(0)
        .snapshot()
        .map(([k, v]) => `${k} ${v.toString('hex')}`)
        .sort();
    return { ck, run, windows, restored, close: async () => (await ck.close(), await changelog.shutdown()) };
  };
  return { configFor, open, removeDirs: () => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })) };
}

const HOURLY_AND_PER_SECOND = [
  // Open all along: the changelog's tail puts newer values of windows the cache has.
  { name: 'hourly', groupBy: ['k'], value: 'v', window: { type: 'tumbling', sizeMs: 3_600_000 } },
  // Fired and purged as W moves on: the tail deletes windows the cache has.
  { name: 'per_second', groupBy: ['k'], value: 'v', window: { type: 'tumbling', sizeMs: 1000 } },
];

test('local cache plus the changelog after it: newer values, tombstones and new windows win over the cache, as the instance that wrote them had them', async () => {
  const topic = unique('weir-restore');
  await createTopic(topic, 1);
  const { configFor, open, removeDirs } = instances(topic, unique('restore'), HOURLY_AND_PER_SECOND);
  try {
    const cacheCfg = configFor('a');
    // A: keys 0-999 in the first second; its checkpoint is its local cache.
    const a = await open(cacheCfg);
    a.run(batchOf(0, 1000, 0, 0));
    assert.ok(await a.ck.checkpoint(source, 'test'));
    const cached = a.windows();
    await a.close();

    // B takes the partition over (from the changelog) and moves on: keys 500-1499 two
    // seconds later update 500-999's hourly windows, add 1000-1499's, and W passes the
    // first second, whose windows are purged.
    const b = await open(configFor('b'));
    assert.deepEqual(b.windows(), cached, 'B restored what A had, from the changelog');
    b.run(batchOf(500, 1500, 2000, 1000));
    assert.ok(await b.ck.checkpoint(source, 'test'));
    const want = b.windows();
    await b.close();
    assert.ok(want.some((w) => w.startsWith('per_second:')) && !want.some((w) => w.startsWith(`per_second:k=key-0:${T0}_`)), 'the first second was purged, later ones are open');

    // A again: its cache plus B's changelog records.
    const again = await open(cacheCfg);
    assert.deepEqual(again.windows(), want, 'the cache and the changelog after it give what B had');
    await again.close();
    // Only the changelog after the cache was read: B's records, not A's as well.
    const fromScratch = await open(configFor('c'));
    assert.deepEqual(fromScratch.windows(), want, 'and so does the changelog alone');
    await fromScratch.close();
    assert.ok(again.restored[0]! > 0 && again.restored[0]! < fromScratch.restored[0]!, `records read: cache ${again.restored[0]}, changelog alone ${fromScratch.restored[0]}`);
  } finally {
    removeDirs();
  }
});

test('a local cache that reaches further than the changelog (a changelog topic made again) is not used: the changelog alone is', async () => {
  const topic = unique('weir-restore-gone');
  await createTopic(topic, 1);
  const { configFor, open, removeDirs } = instances(topic, unique('restore-gone'), [
    { name: 'hourly', groupBy: ['k'], value: 'v', window: { type: 'tumbling', sizeMs: 3_600_000 } },
  ]);
  const admin = new Kafka({ clientId: 'weir-test', brokers: BROKERS, logLevel: logLevel.NOTHING }).admin();
  await admin.connect();
  try {
    const cacheCfg = configFor('a');
    const changelogTopic = cacheCfg.changelog.topic!;
    // A: 1,000 windows; its checkpoint is its local cache, at changelog offset ~1,000.
    const a = await open(cacheCfg);
    a.run(batchOf(0, 1000, 0, 0));
    assert.ok(await a.ck.checkpoint(source, 'test'));
    await a.close();

    // The changelog topic is deleted and made again (Weir creates it when missing).
    await admin.deleteTopics({ topics: [changelogTopic] });
    for (let i = 0; (await admin.listTopics()).includes(changelogTopic); i++) {
      assert.ok(i < 100, 'the changelog topic is deleted');
      await new Promise((r) => setTimeout(r, 100));
    }
    // B, with empty directories: 100 other windows, in the new changelog up to offset ~100.
    const b = await open(configFor('b'));
    assert.deepEqual(b.windows(), [], 'B finds nothing in the new changelog');
    b.run(batchOf(2000, 2100, 0, 1000));
    assert.ok(await b.ck.checkpoint(source, 'test'));
    const want = b.windows();
    await b.close();
    assert.equal(want.length, 100);

    // A again: its cache reaches past the changelog's end, so it is not the changelog's:
    // what A restores is the changelog's, B's windows, none of its own cache.
    const again = await open(cacheCfg);
    assert.deepEqual(again.windows(), want, "the changelog's windows, not the cache's");
    assert.ok(again.restored[0]! > 100, `records read: ${again.restored[0]}, the whole changelog`);
    await again.close();
  } finally {
    await admin.disconnect();
    removeDirs();
  }
});

test('checkpoints between updates of the local cache commit to the changelog alone; after a crash the cache and that tail give what the instance had', async () => {
  const topic = unique('weir-restore-tail');
  await createTopic(topic, 1);
  const { configFor, open, removeDirs } = instances(topic, unique('restore-tail'), HOURLY_AND_PER_SECOND);
  try {
    const base = configFor('a');
    const cfg = { ...base, changelog: { ...base.changelog, cacheIntervalMs: 3_600_000 } };
    const a = await open(cfg);
    // The first checkpoint writes the cache; the next ones, within the hour, only the changelog.
    a.run(batchOf(0, 1000, 0, 0));
    assert.ok(await a.ck.checkpoint(source, 'interval'), 'the first checkpoint writes the local cache');
    const ids = await a.ck.store.ids();
    assert.equal(ids.length, 1);
    a.run(batchOf(500, 1500, 2000, 1000));
    assert.equal(await a.ck.checkpoint(source, 'interval'), undefined, 'changelog only');
    a.run(batchOf(1200, 1700, 4000, 2000));
    assert.equal(await a.ck.checkpoint(source, 'interval'), undefined, 'changelog only');
    assert.deepEqual(await a.ck.store.ids(), ids, 'no local checkpoint since the first');
    const want = a.windows();
    assert.ok(!want.some((w) => w.startsWith(`per_second:k=key-0:${T0}_`)), 'the first second was purged after the cache');
    // A crash: the stores' staged changes are lost with the process.
    await a.close();

    const again = await open(cfg);
    assert.deepEqual(again.windows(), want, 'the cache and the changelog after it give what A had');
    // A checkpoint not taken for the interval (a stop, a rebalance) writes the cache,
    // with every change since its last update: those of the changelog-only one before it too.
    again.run(batchOf(1700, 1800, 4500, 3000));
    assert.ok(await again.ck.checkpoint(source, 'interval'), "the instance's first checkpoint writes the cache");
    again.run(batchOf(1000, 1900, 6000, 3100));
    assert.equal(await again.ck.checkpoint(source, 'interval'), undefined, 'changelog only');
    again.run(batchOf(1850, 1950, 6500, 4000));
    assert.ok(await again.ck.checkpoint(source, 'stop'));
    assert.equal((await again.ck.store.ids()).length, 3);
    const last = again.windows();
    await again.close();
    const back = await open(cfg);
    assert.deepEqual(back.windows(), last, 'the cache alone gives what the instance had at its stop');
    assert.equal(back.restored[0], 0, 'no changelog record after the cache');
    await back.close();
    const fromScratch = await open(configFor('b'));
    assert.deepEqual(fromScratch.windows(), last, 'the changelog alone gives the same');
    await fromScratch.close();
    assert.ok(again.restored[0]! > 0 && again.restored[0]! < fromScratch.restored[0]!, `records read: cache ${again.restored[0]}, changelog alone ${fromScratch.restored[0]}`);
  } finally {
    removeDirs();
  }
});
