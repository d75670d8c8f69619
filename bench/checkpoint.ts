// Benchmark 4: checkpoint cost against state size, the pause in processing (the
// barrier) apart from the whole. For 1k, 10k and 100k open windows
// (one tumbling window per key, varying the number of keys), with the real
// Checkpointer over the real state backends, as a run takes checkpoints:
//   - full: the first checkpoint, which writes every window;
//   - all changed: checkpoints after events changed every window again (median of a
//     few in a row, and their max);
//   - incremental: checkpoints after events changed only 1% of the windows, and after
//     events changed a fixed 100 windows (median of a few; their max includes the one
//     prune, at the first checkpoint past `retain`, of the full checkpoint's journal).
// What a checkpoint costs in a run: draining the operator's changed windows from
// WASM, encoding them as one change batch, staging it on the state thread, the backend's durable write (RocksDB: one synced WriteBatch;
// Redis: MULTI/EXEC), the metadata file (temp dir, fsync, rename), the (stubbed)
// offset commit, and retention. The point: incremental cost follows the changes,
// not the size of the state.
//
// `node dist/bench/checkpoint.js` runs this bench alone. Redis (127.0.0.1:6379) is
// measured when it answers; WEIR_BENCH_NO_REDIS=1 skips it.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Socket } from 'node:net';
import { Checkpointer, type CheckpointSource } from '../src/checkpoint/coordinator';
import { validateConfig, type Config } from '../src/config';
import { createLogger } from '../src/log';
import { Instrumentation } from '../src/metrics/events';
import { PartitionedOperator } from '../src/pipeline/partitioned';
import type { RecordBatch } from '../src/pipeline/types';
import { openStateBackend } from '../src/state';
import { ChangeBatchWriter } from '../src/state/batch';
import { median } from './stats';

const REDIS_URL = process.env['WEIR_BENCH_REDIS_URL'] ?? 'redis://127.0.0.1:6379';
const T0 = 1_767_225_600_000;
const HOUR = 3_600_000;

export interface CheckpointFigure {
  backend: 'rocksdb' | 'redis';
  windows: number;
  /** Live state after the full checkpoint: UTF-8 key + value bytes (StateSummary.bytes). */
  stateBytes: number;
  fullMs: number;
  /** The full checkpoint's barrier: the pause in processing (the rest happens while processing goes on). */
  fullPauseMs: number;
  /**
   * The barrier of a checkpoint after every window changed again (warm: the first one
   * grows buffers): median and max of `rounds` in a row, as a run takes them one after
   * another (the max is the first: its loop is not compiled yet for windows it replaces).
   */
  allChangedPauseMs: number;
  allChangedPauseMaxMs: number;
  /** Windows changed before each incremental checkpoint (1% of them). */
  onePercentChanged: number;
  onePercentMs: number;
  onePercentMaxMs: number;
  fixedChanged: number;
  fixedMs: number;
  fixedMaxMs: number;
  /** Median barrier pause of the 1%-changed checkpoints. */
  onePercentPauseMs: number;
}

/** Kafka-like batches of one event per key in `keys`, all in the window [T0, T0 + 1 h). */
class EventBatches {
  private offset = 0;
  private step = 0;
  constructor(
    private readonly batchSize: number,
    /** The value of key k's event, the step'th event of these batches. */
    private readonly value: (k: number, step: number) => number = (k) => (k % 977) + 0.5,
  ) {}

  *batches(keys: Iterable<number>): Generator<RecordBatch> {
    let lines: string[] = [];
    const flush = (): RecordBatch => {
      const parts = lines.map((l) => Buffer.from(l));
      const starts = new Uint32Array(parts.length), ends = new Uint32Array(parts.length);
      let pos = 0;
      parts.forEach((p, i) => {
        starts[i] = pos;
        ends[i] = pos += p.length;
      });
      const first = this.offset;
      this.offset += parts.length;
      lines = [];
      return { buf: Buffer.concat(parts), starts, ends, n: parts.length, partition: 0, firstOffset: first };
    };
    for (const k of keys) {
      // Event time creeps forward by 1 ms per event: never near the window's end.
      const step = this.step++;
      lines.push(`{"timestamp":${T0 + (step % 600_000)},"k":"key-${k}","v":${this.value(k, step)}}`);
      if (lines.length === this.batchSize) yield flush();
    }
    if (lines.length > 0) yield flush();
  }
}

/** The offsets a checkpoint commits go nowhere: the cost of a commit is Kafka's, not the checkpoint's. */
const noSource: CheckpointSource = {
  startInfo: () => ({ committed: undefined, low: '0', position: '0' }),
  seek: () => true,
  commit: async () => {},
  assignment: [],
  pastNonRecords: (_p, offset) => offset,
};

async function measure(backend: 'rocksdb' | 'redis', windows: number, rounds: number): Promise<CheckpointFigure> {
  const dir = mkdtempSync(join(tmpdir(), 'weir-bench-ckpt-'));
  const instance = `bench-${process.pid}-${windows}`;
  const cfg: Config = validateConfig({
    // A Kafka source: checkpoints exist for it (the broker is not contacted here).
    source: { type: 'kafka', brokers: ['127.0.0.1:9092'], topic: 'weir-bench-checkpoint' },
    eventTime: { field: 'timestamp', maxOutOfOrdernessMs: 30_000, allowedLatenessMs: 60_000 },
    aggregations: [{ name: 'per_key', groupBy: ['k'], value: 'v', window: { type: 'tumbling', sizeMs: HOUR } }],
    state: { backend, dir: join(dir, 'state'), url: REDIS_URL },
    checkpoint: { dir: join(dir, 'checkpoints') },
    processing: { instanceId: instance },
  });
  const op = new PartitionedOperator(cfg);
  const bus = new Instrumentation();
  let bytes = 0, pauseMs = 0;
  bus.on('checkpoint.completed', (e) => {
    bytes = e.bytes;
    pauseMs = e.syncSeconds * 1000;
  });
  // On its thread, at its priority, as `weir run` has it.
  const state = await openStateBackend({ ...cfg.state, prefix: 'weir-bench' }, instance, { thread: true, nice: cfg.processing.backgroundNice });
  const ck = new Checkpointer(cfg, op, state, createLogger(cfg), bus);
  try {
    await ck.init();
    await ck.assign([0], noSource);
    const events = new EventBatches(cfg.processing.batchSize);
    const feed = (keys: Iterable<number>): void => {
      for (const b of events.batches(keys)) {
        op.process(b);
        ck.processed(b);
      }
    };
    const timed = async (): Promise<number> => {
      const t0 = performance.now();
      await ck.checkpoint(noSource, 'bench');
      return performance.now() - t0;
    };
    feed(Array.from({ length: windows }, (_, k) => k));
    const open = op.openWindows(0);
    if (open !== windows) throw new Error(`expected ${windows} open windows, the operator has ${open}`);
    const fullMs = await timed();
    const stateBytes = bytes, fullPauseMs = pauseMs;
    const allChanged: number[] = [];
    for (let r = 0; r < rounds; r++) {
      feed(Array.from({ length: windows }, (_, k) => k));
      await timed();
      allChanged.push(pauseMs);
    }
    // Changed windows spread over the key space, a different set each round.
    const some = (count: number, round: number): number[] => Array.from({ length: count }, (_, i) => (Math.floor((i * windows) / count) + round) % windows);
    const onePercent = Math.max(1, Math.round(windows / 100));
    const fixed = 100;
    const pct: number[] = [], fix: number[] = [], pctPause: number[] = [];
    for (let r = 0; r < rounds; r++) {
      feed(some(onePercent, r));
      pct.push(await timed());
      pctPause.push(pauseMs);
      feed(some(fixed, r + rounds));
      fix.push(await timed());
    }
    return {
      backend,
      windows,
      stateBytes,
      fullMs,
      fullPauseMs,
      allChangedPauseMs: median(allChanged),
      allChangedPauseMaxMs: Math.max(...allChanged),
      onePercentPauseMs: median(pctPause),
      onePercentChanged: onePercent,
      onePercentMs: median(pct),
      onePercentMaxMs: Math.max(...pct),
      fixedChanged: fixed,
      fixedMs: median(fix),
      fixedMaxMs: Math.max(...fix),
    };
  } finally {
    // Leave nothing behind: Redis keys of this instance, the temp dir.
    for (const p of op.partitions) await ck.revoke(p).catch(() => undefined);
    if (backend === 'redis') {
      const s = await state.open(0).catch(() => undefined);
      await s?.clear();
      await s?.close();
    }
    await ck.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Whether something accepts TCP connections at the Redis URL's host and port. */
function redisAnswers(url: string): Promise<boolean> {
  const u = new URL(url);
  return new Promise((resolve) => {
    const s = new Socket();
    const done = (ok: boolean): void => {
      s.destroy();
      resolve(ok);
    };
    s.setTimeout(500, () => done(false));
    s.once('error', () => done(false));
    s.connect(Number(u.port || 6379), u.hostname, () => done(true));
  });
}

export interface WideBarrierFigure {
  windows: number;
  /** Distinct values per window before the measured rounds: its sketch spans about this many buckets. */
  valuesPerWindow: number;
  /** Bytes of state per window (the change set's bytes over its windows). */
  bytesPerWindow: number;
  /** The barrier after every window changed again: median and max of the rounds. */
  pauseMs: number;
  pauseMaxMs: number;
  /** Encoding that change set (the windows' bytes and state keys, after the barrier, while processing goes on): median. */
  encodeMs: number;
}

/**
 * The barrier's hard case: every window changed, each with a wide sketch (values
 * spread over 1 to 5,000, as latencies and token counts are), as sessions of busy
 * users or windows of busy models have. The barrier writes each changed window's
 * numbers only; its accumulators and sketch are copied out of WebAssembly memory
 * when the change set is encoded, after the barrier (or before the window changes
 * again), so that cost is in the encoding, not the pause. Measured on the operator
 * alone (the barrier is the same whatever the backend).
 */
export function benchWideBarrier(windows = 100_000, valuesPerWindow = 40, rounds = 5): WideBarrierFigure {
  const cfg: Config = validateConfig({
    source: { type: 'kafka', brokers: ['127.0.0.1:9092'], topic: 'weir-bench-checkpoint' },
    eventTime: { field: 'timestamp', maxOutOfOrdernessMs: 30_000, allowedLatenessMs: 60_000 },
    aggregations: [{ name: 'per_key', groupBy: ['k'], value: 'v', window: { type: 'tumbling', sizeMs: HOUR } }],
  });
  const op = new PartitionedOperator(cfg);
  op.onCreate = (o) => o.trackChanges();
  // Each round gives every window another value of 1 to 5,000.
  const events = new EventBatches(4096, (k, step) => 1 + ((k * 7919 + Math.floor(step / windows) * 104_729) % 5000));
  const keys = Array.from({ length: windows }, (_, k) => k);
  const feed = (): void => {
    for (const b of events.batches(keys)) op.process(b);
  };
  const drain = (): { ms: number; encodeMs: number; bytes: number } => {
    const t0 = performance.now();
    const changes = op.operator(0).takeChanges();
    const t1 = performance.now();
    const w = new ChangeBatchWriter(changes.bytesHint);
    changes.encode(w, 0, changes.size);
    const bytes = w.finish().length;
    return { ms: t1 - t0, encodeMs: performance.now() - t1, bytes };
  };
  for (let i = 0; i < valuesPerWindow; i++) feed();
  drain();
  const pauses: number[] = [], encodes: number[] = [];
  let bytes = 0;
  for (let r = 0; r < rounds; r++) {
    feed();
    const d = drain();
    pauses.push(d.ms);
    encodes.push(d.encodeMs);
    bytes = d.bytes;
  }
  return {
    windows,
    valuesPerWindow,
    bytesPerWindow: Math.round(bytes / windows),
    pauseMs: median(pauses),
    pauseMaxMs: Math.max(...pauses),
    encodeMs: median(encodes),
  };
}

export function printWideBarrier(f: WideBarrierFigure): void {
  console.log(
    `Barrier, every window changed, wide sketches: ${f.windows.toLocaleString('en-US')} windows of ${f.valuesPerWindow} distinct values each (${f.bytesPerWindow} bytes of state per window): pause ${f.pauseMs.toFixed(1)} ms (max ${f.pauseMaxMs.toFixed(1)}); encoding them after it, while processing goes on, ${f.encodeMs.toFixed(0)} ms\n`,
  );
}

export async function benchCheckpoint(sizes = [1_000, 10_000, 100_000], rounds = 5): Promise<CheckpointFigure[]> {
  const backends: Array<'rocksdb' | 'redis'> = ['rocksdb'];
  if (process.env['WEIR_BENCH_NO_REDIS'] !== '1' && (await redisAnswers(REDIS_URL))) backends.push('redis');
  else console.log(`(redis: skipped, ${process.env['WEIR_BENCH_NO_REDIS'] === '1' ? 'WEIR_BENCH_NO_REDIS=1' : `nothing answers at ${REDIS_URL}`})`);
  const out: CheckpointFigure[] = [];
  for (const b of backends) for (const n of sizes) out.push(await measure(b, n, rounds));
  return out;
}

export function printCheckpoint(figs: CheckpointFigure[]): void {
  const ms = (x: number): string => (x < 10 ? x.toFixed(1) : Math.round(x).toLocaleString('en-US'));
  // The pause is the barrier (processing waits); the rest of a checkpoint runs while processing goes on.
  console.log('| backend | windows | state bytes | full checkpoint: pause ms, total ms | all changed again: pause ms (max) | 1% changed: windows, pause ms, total ms (max) | 100 changed: total ms (max) |');
  console.log('| --- | --- | --- | --- | --- | --- | --- |');
  for (const f of figs)
    console.log(
      `| ${f.backend} | ${f.windows.toLocaleString('en-US')} | ${f.stateBytes.toLocaleString('en-US')} | ${ms(f.fullPauseMs)}, ${ms(f.fullMs)} | ${ms(f.allChangedPauseMs)} (${ms(f.allChangedPauseMaxMs)}) | ${f.onePercentChanged.toLocaleString('en-US')}: ${ms(f.onePercentPauseMs)}, ${ms(f.onePercentMs)} (${ms(f.onePercentMaxMs)}) | ${ms(f.fixedMs)} (${ms(f.fixedMaxMs)}) |`,
    );
  console.log();
}

if (require.main === module) {
  benchCheckpoint()
    .then((f) => {
      printCheckpoint(f);
      printWideBarrier(benchWideBarrier());
      process.exit(0);
    })
    .catch((e: unknown) => {
      console.error(e);
      process.exit(1);
    });
}
