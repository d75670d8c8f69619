// Benchmark: restoring a partition's state, as an instance that is assigned it does,
// with the real Checkpointer, changelog thread, broker (scripts/kafka-up.sh) and RocksDB.
//   - checkpoint: the first checkpoint of 100,000 open windows (one tumbling window per
//     key), which writes every window to the changelog in one transaction;
//   - from the changelog: an instance with empty directories is assigned the partition:
//     it opens the partition's producer (fencing), reads the changelog to its end,
//     decodes it and rebuilds the operator;
//   - from the local cache: the instance that wrote the checkpoint is assigned it again:
//     RocksDB holds it, and only the changelog after the cache's offset is read (none).
// And what a transactional producer per partition costs: time to open one (it fences
// the previous owner) and the memory of 64 of them.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Kafka, logLevel } from 'kafkajs';
import { Checkpointer, type CheckpointSource } from '../src/checkpoint/coordinator';
import { Changelog } from '../src/changelog/thread';
import { ChangelogKafka } from '../src/changelog/kafka';
import { ensureChangelogTopic } from '../src/changelog/topic';
import { validateConfig, type Config } from '../src/config';
import { createLogger } from '../src/log';
import { Instrumentation } from '../src/metrics/events';
import { PartitionedOperator } from '../src/pipeline/partitioned';
import type { RecordBatch } from '../src/pipeline/types';
import { openStateBackend } from '../src/state';
import { BROKERS, ensureBroker } from './kafka';
import { collectGarbage, median } from './stats';

const T0 = 1_767_225_600_000;
const PRODUCERS = 64;
const HOUR = 3_600_000;

export interface RestoreFigures {
  windows: number;
  stateBytes: number;
  /** The full checkpoint, changelog transaction included. */
  checkpointMs: number;
  fromChangelogMs: number;
  fromLocalCacheMs: number;
  changelogRecords: number;
  /** Opening a partition's producer (which fences its previous owner): median and max of PRODUCERS. */
  producerOpenMs: number;
  producerOpenMaxMs: number;
  /** JS heap and external memory per producer held, with PRODUCERS of them open. */
  producerMb: number;
}

const source: CheckpointSource = {
  startInfo: () => ({ committed: undefined, low: '0', position: '0' }),
  seek: () => true,
  commit: async () => {},
  assignment: [0],
  pastNonRecords: (_p, offset) => offset,
};

function batchOf(keys: number, from: number, to: number, offset: number): RecordBatch {
  const parts: Buffer[] = [];
  for (let k = from; k < to; k++) parts.push(Buffer.from(`{"timestamp":${T0 + (k % 600_000)},"k":"key-${k % keys}","v":${(k * 7919) % 1000}}`));
  const starts = new Uint32Array(parts.length), ends = new Uint32Array(parts.length);
  let pos = 0;
  parts.forEach((p, i) => {
    starts[i] = pos;
    ends[i] = pos += p.length;
  });
  return { buf: Buffer.concat(parts), starts, ends, n: parts.length, partition: 0, firstOffset: offset };
}

async function admin<T>(f: (a: ReturnType<Kafka['admin']>) => Promise<T>): Promise<T> {
  const a = new Kafka({ clientId: 'weir-bench', brokers: BROKERS, logLevel: logLevel.NOTHING }).admin();
  await a.connect();
  try {
    return await f(a);
  } finally {
    await a.disconnect();
  }
}

export async function benchRestore(windows = 100_000, rounds = 3): Promise<RestoreFigures> {
  ensureBroker();
  const tag = `${Date.now().toString(36)}-${process.pid}`;
  const topic = `weir-bench-restore-${tag}`;
  await admin((a) => a.createTopics({ waitForLeaders: true, topics: [{ topic, numPartitions: 1 }] }));
  const dirs: string[] = [];
  const configFor = (): Config => {
    const dir = mkdtempSync(join(tmpdir(), 'weir-bench-restore-'));
    dirs.push(dir);
    return validateConfig({
      source: { type: 'kafka', brokers: BROKERS, topic, groupId: `weir-bench-restore-${tag}` },
      eventTime: { field: 'timestamp', maxOutOfOrdernessMs: 30_000, allowedLatenessMs: 60_000 },
      aggregations: [{ name: 'per_key', groupBy: ['k'], value: 'v', window: { type: 'tumbling', sizeMs: HOUR } }],
      state: { backend: 'rocksdb', dir: join(dir, 'state') },
      checkpoint: { dir: join(dir, 'checkpoints') },
      processing: { instanceId: `bench-${tag}` },
    });
  };
  const open = async (cfg: Config) => {
    const src = cfg.source as Extract<Config['source'], { type: 'kafka' }>;
    const changelog = await Changelog.start({
      brokers: src.brokers, clientId: 'weir-bench', ssl: false, groupId: src.groupId, topic, changelog: cfg.changelog.topic!, create: true, transactionTimeoutMs: 60_000,
    }, cfg.processing.backgroundNice);
    const op = new PartitionedOperator(cfg);
    const bus = new Instrumentation();
    // Its threads at the priority `weir run` gives them.
    const state = await openStateBackend(cfg.state, cfg.processing.instanceId, { thread: true, nice: cfg.processing.backgroundNice });
    const ck = new Checkpointer(cfg, op, state, createLogger(cfg), bus, Date.now, changelog);
    await ck.init();
    return { op, ck, bus, changelog, close: async () => (await ck.close(), await changelog.shutdown()) };
  };
  const timedAssign = async (x: Awaited<ReturnType<typeof open>>): Promise<{ ms: number; records: number }> => {
    let records = 0;
    x.bus.on('state.restored', (e) => (records += e.records));
    const t0 = performance.now();
    await x.ck.assign([0], source);
    const ms = performance.now() - t0;
    if (x.op.openWindows(0) !== windows) throw new Error(`restored ${x.op.openWindows(0)} windows, expected ${windows}`);
    return { ms, records };
  };
  try {
    // The writer: every window once, then the full checkpoint.
    const cacheCfg = configFor();
    const w = await open(cacheCfg);
    let stateBytes = 0;
    w.bus.on('checkpoint.completed', (e) => (stateBytes = e.bytes));
    await w.ck.assign([0], source);
    for (let k = 0; k < windows; k += 4096) {
      const b = batchOf(windows, k, Math.min(windows, k + 4096), k);
      w.op.process(b);
      w.ck.processed(b);
    }
    let t0 = performance.now();
    await w.ck.checkpoint(source, 'bench');
    const checkpointMs = performance.now() - t0;
    await w.close();

    const fromChangelog: number[] = [], fromCache: number[] = [];
    let changelogRecords = 0;
    for (let r = 0; r < rounds; r++) {
      const fresh = await open(configFor());
      const c = await timedAssign(fresh);
      fromChangelog.push(c.ms);
      changelogRecords = c.records;
      await fresh.close();
      const again = await open(cacheCfg);
      fromCache.push((await timedAssign(again)).ms);
      await again.close();
    }

    // Producers: one transactional producer per partition of a 64-partition topic,
    // opened here (not on the changelog thread) so that this thread's heap and
    // external memory are theirs.
    const many = `weir-bench-restore-many-${tag}`;
    await admin((a) => a.createTopics({ waitForLeaders: true, topics: [{ topic: many, numPartitions: PRODUCERS }] }));
    const o = { brokers: BROKERS, clientId: 'weir-bench', ssl: false, groupId: `g-${many}`, topic: many, changelog: `${many}-changelog`, create: true, transactionTimeoutMs: 60_000 };
    await ensureChangelogTopic(o);
    const ck = new ChangelogKafka(o);
    const used = (): number => {
      collectGarbage();
      const m = process.memoryUsage();
      return m.heapUsed + m.external + m.arrayBuffers;
    };
    // What the instances above left behind goes first: their closes finish on later ticks.
    await new Promise((r) => setTimeout(r, 500));
    used();
    const before = used();
    const opens: number[] = [];
    for (let p = 0; p < PRODUCERS; p++) {
      t0 = performance.now();
      await ck.open(p);
      opens.push(performance.now() - t0);
    }
    const producerMb = (used() - before) / PRODUCERS / 1e6;
    await ck.shutdown();
    await admin((a) => a.deleteTopics({ topics: [topic, cacheCfg.changelog.topic!, many, `${many}-changelog`] }).catch(() => undefined));
    return { windows, stateBytes, checkpointMs, fromChangelogMs: median(fromChangelog), fromLocalCacheMs: median(fromCache), changelogRecords, producerOpenMs: median(opens), producerOpenMaxMs: Math.max(...opens), producerMb };
  } finally {
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  }
}

export function printRestore(f: RestoreFigures): void {
  const ms = (x: number): string => `${Math.round(x)} ms`;
  console.log(`${f.windows.toLocaleString('en-US')} windows (${(f.stateBytes / 1e6).toFixed(1)} MB of state), RocksDB, one partition:\n`);
  console.log('| step | time |');
  console.log('| --- | --- |');
  console.log(`| full checkpoint, changelog transaction included | ${ms(f.checkpointMs)} |`);
  console.log(`| restore from the changelog (${f.changelogRecords.toLocaleString('en-US')} records), median | ${ms(f.fromChangelogMs)} |`);
  console.log(`| restore from the local cache, median | ${ms(f.fromLocalCacheMs)} |`);
  console.log(
    `\nA transactional producer per partition (${PRODUCERS} opened): ${f.producerOpenMs.toFixed(1)} ms to open (median; max ${f.producerOpenMaxMs.toFixed(1)}), fencing included; ${f.producerMb.toFixed(2)} MB of heap and buffers each\n`,
  );
}
