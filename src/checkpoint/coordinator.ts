// Checkpoints and recovery of a partitioned operator with a Kafka source.
//
// A checkpoint is taken in two parts, as Flink's asynchronous snapshots are:
//   1. the barrier, synchronously, between two batches: every partition's changed
//      windows are copied out of the core (an immutable ChangeSet, one memcpy), and
//      its next offset and max event time and W are read. Processing goes on at once.
//   2. in the background, while batches go on: the changes are encoded as one change
//      batch (bytes) per partition, a slice of windows at a time between batches, and
//      staged in the partition's state store, which writes them durably as version N
//      (on the state thread: src/state/thread.ts); then the sinks are waited for until
//      they hold every result and dead letter of the batches before the barrier;
//   3. `checkpoint-N/metadata.json` is written atomically (store.ts): the commit point;
//   4. offsets are committed to Kafka (only now: never ahead of durable state);
//   5. checkpoints beyond `retain` are deleted and the versions only they needed pruned.
// At most one checkpoint is in flight (src/checkpoint/scheduler.ts): a due one waits.
// A crash before 3 leaves version N in the backend without metadata: recovery
// restores N-1, which deletes version N. A crash after 3 recovers N.
//
// Recovery, per assigned partition: the newest checkpoint that lists it, whose
// metadata verifies and whose state, read back from the backend, has the digest
// and size the metadata recorded; the operator is rebuilt from it and the
// partition is sought to its offset. A checkpoint that does not verify is skipped
// with a warning naming it. With none, the partition starts with empty state,
// and then never from a committed offset (that would count only part of the
// windows open there): from the earliest offset the broker has.
import { createHash } from 'node:crypto';
import type { Config } from '../config';
import { WeirError } from '../errors/errors';
import type { Logger } from '../log';
import type { Instrumentation } from '../metrics/events';
import type { PartitionedOperator } from '../pipeline/partitioned';
import { offsetOf, type RecordBatch } from '../pipeline/types';
import { ChangeBatchWriter, StateCorrupt, type PartitionStore, type StateBackend } from '../state';
import type { ChangeSet } from '../pipeline/changes';
import { faultPoint } from './faults';
import { CheckpointStore, fromJsonTime, toJsonTime, type CheckpointMetadata, type JsonTime, type PartitionCheckpoint } from './store';

/** What the coordinator needs of the source (KafkaSource). */
/**
 * Windows a checkpoint encodes between two batches (about 1 to 3 ms of the main
 * thread): the loop is never held longer than that by the background part.
 */
const ENCODE_SLICE = 8192;

export interface CheckpointSource {
  startInfo(partition: number): { committed: string | undefined; low: string; position: string | undefined };
  seek(partition: number, offset: string): boolean;
  commit(offsets: ReadonlyArray<{ partition: number; offset: string }>): Promise<void>;
}

/** Topic, aggregations and event-time settings: the state of a checkpoint is only valid for the same. */
export function aggregationsFingerprint(cfg: Config): string {
  const { field, maxOutOfOrdernessMs, allowedLatenessMs } = cfg.eventTime;
  const aggs = cfg.aggregations.map((a) => ({ name: a.name, groupBy: a.groupBy, value: a.value, window: a.window }));
  const topic = cfg.source.type === 'kafka' ? cfg.source.topic : null;
  return createHash('sha256').update(JSON.stringify({ topic, field, maxOutOfOrdernessMs, allowedLatenessMs, aggs })).digest('hex').slice(0, 16);
}

/** A checkpoint between its barrier and its completion: an immutable copy of what it holds. */
export interface PendingCheckpoint {
  id: number;
  reason: string;
  /** performance.now() at the barrier. */
  t0: number;
  /** The barrier's duration: the pause in processing. */
  syncSeconds: number;
  createdAt: string;
  watermarkMs: JsonTime;
  parts: Array<{ p: number; ps: PartitionStore; offset: string; max: number; changes: ChangeSet }>;
}

export class Checkpointer {
  readonly store: CheckpointStore;
  private readonly stores = new Map<number, PartitionStore>();
  /** Next offset to read per partition, always in step with the operator's state. */
  private readonly offsets = new Map<number, string>();
  /** Checkpoints that verified at start or were written since, newest first. */
  private known: CheckpointMetadata[] = [];
  private nextId = 1;
  private lastAt: number;
  private firstAssignment = true;
  private readonly fingerprint: string;
  private readonly clock: () => number;

  constructor(
    private readonly cfg: Config,
    private readonly op: PartitionedOperator,
    private readonly backend: StateBackend,
    private readonly log: Logger,
    private readonly bus: Instrumentation,
    clock: () => number = Date.now,
  ) {
    this.store = new CheckpointStore(cfg.checkpoint.dir);
    this.fingerprint = aggregationsFingerprint(cfg);
    this.clock = clock;
    this.lastAt = clock();
    op.onCreate = (o) => o.trackChanges();
    backend.onWarning = (message, fields) => log.warn(fields, message);
  }

  /** Removes a crash's temporary directories and reads which checkpoints verify. */
  async init(): Promise<void> {
    for (const name of await this.store.init()) this.log.warn({ dir: name }, `removed ${name}, left by a checkpoint that did not complete`);
    const ids = await this.store.ids();
    this.nextId = (ids[0] ?? 0) + 1;
    for (const id of ids) {
      try {
        this.known.push(await this.store.read(id));
      } catch (e) {
        this.log.warn({ checkpoint: id }, `skipping checkpoint ${id}: ${(e as Error).message}`);
      }
    }
  }

  /** Whether the interval since the last checkpoint has passed. */
  due(nowMs = this.clock()): boolean {
    return nowMs - this.lastAt >= this.cfg.checkpoint.intervalMs;
  }

  /**
   * The part of `batch` not yet counted: records below the partition's next offset
   * (a batch fetched before a seek, delivered after it) would count twice.
   */
  unseen(batch: RecordBatch): RecordBatch {
    const next = this.offsets.get(batch.partition);
    if (next === undefined || batch.n === 0) return batch;
    // Offsets are below 2^53 (RecordBatch.firstOffset): exact as numbers.
    const from = Number(next);
    let i = 0;
    while (i < batch.n && offsetOf(batch, i) < from) i++;
    if (i === 0) return batch;
    this.log.debug({ partition: batch.partition, skipped: i, next }, 'skipping records already counted');
    const rest: RecordBatch = {
      ...batch,
      n: batch.n - i,
      starts: batch.starts.subarray(i),
      ends: batch.ends.subarray(i),
      firstOffset: i < batch.n ? offsetOf(batch, i) : batch.firstOffset + i,
    };
    if (batch.offsets !== undefined) rest.offsets = batch.offsets.subarray(i);
    return rest;
  }

  /** The batch was processed (its results written): the partition resumes after it. */
  processed(batch: RecordBatch): void {
    if (batch.n === 0) return;
    this.offsets.set(batch.partition, String(offsetOf(batch, batch.n - 1) + 1));
  }

  /**
   * Newly assigned partitions: each restores its state from the newest checkpoint
   * that verifies and seeks there, or starts empty (from the earliest offset if the
   * group has committed one, since that offset belongs to state this instance does
   * not have).
   *
   * W: the first assignment of a run, when every partition restored, resumes the W
   * the checkpoints had (the lowest, if they differ). Otherwise W stays what it is
   * (minus infinity at start: partitions that start empty replay from their
   * beginning and must not find their events late). Restored windows count as fired
   * only up to the W the run goes on with; a window that fired before the crash may
   * then fire again, with the same or a later result (the final result is the last).
   */
  async assign(partitions: readonly number[], source: CheckpointSource): Promise<void> {
    const found: Array<{ p: number; meta: CheckpointMetadata; pc: PartitionCheckpoint; entries: Map<string, Buffer>; summary: { entries: number } }> = [];
    const empty: number[] = [];
    // Opening a store waits on the disk (RocksDB): all at once, not one after the other.
    const opened = await Promise.allSettled(partitions.map((p) => this.openStore(p)));
    const failed = opened.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed !== undefined) throw failed.reason;
    for (const p of partitions) {
      const ps = this.stores.get(p)!;
      this.op.drop(p);
      const got = await this.verified(p, ps);
      if (got === undefined) empty.push(p);
      else found.push({ p, ...got });
    }
    const first = this.firstAssignment;
    this.firstAssignment = false;
    const wm = this.op.watermarks;
    if (first && empty.length === 0 && found.length > 0) {
      wm.current = Math.max(wm.current, Math.min(...found.map((f) => fromJsonTime(f.meta.watermarkMs))));
    }
    for (const { p, meta, pc, entries, summary } of found) {
      this.op.operator(p).restore(entries, Math.min(fromJsonTime(meta.watermarkMs), wm.current));
      wm.register(p, this.clock(), fromJsonTime(pc.maxEventTimeMs));
      source.seek(p, pc.offset);
      this.offsets.set(p, pc.offset);
      this.log.info({ checkpoint: meta.id, partition: p, offset: pc.offset, windows: summary.entries }, `partition ${p} restored from checkpoint ${meta.id}`);
    }
    await Promise.all(empty.map((p) => this.stores.get(p)!.clear()));
    for (const p of empty) {
      this.op.operator(p);
      // It holds W back until it sends (or idles), like any assigned partition.
      wm.register(p, this.clock());
      const start = source.startInfo(p);
      if (start.committed !== undefined) {
        this.log.warn({ partition: p, committed: start.committed, from: start.low }, `partition ${p} has a committed offset but no checkpoint here: reading it from its earliest offset ${start.low}`);
        source.seek(p, start.low);
        this.offsets.set(p, start.low);
      } else if (start.position !== undefined) this.offsets.set(p, start.position);
    }
  }

  /** The newest checkpoint of `p` whose metadata and state verify, with the state read back. */
  private async verified(p: number, ps: PartitionStore) {
    for (const meta of this.known) {
      const pc = meta.partitions.find((x) => x.partition === p);
      if (pc === undefined) continue;
      if (meta.aggregations !== this.fingerprint)
        throw new WeirError(
          `checkpoint ${meta.id} in ${this.cfg.checkpoint.dir} was taken with another source topic, other aggregations or other event-time settings than this config; to reprocess from scratch, point checkpoint.dir and state.dir at empty directories`,
          { domain: 'user' },
        );
      let restored;
      try {
        restored = await ps.restore(meta.id);
      } catch (e) {
        if (!(e instanceof StateCorrupt)) throw e;
        this.log.warn({ checkpoint: meta.id, partition: p, err: e }, `skipping checkpoint ${meta.id} for partition ${p}: ${e.message}`);
        continue;
      }
      const { entries, summary } = restored;
      if (summary.digest !== pc.state.digest || summary.entries !== pc.state.entries) {
        this.log.warn(
          { checkpoint: meta.id, partition: p, expected: pc.state, found: summary },
          `skipping checkpoint ${meta.id} for partition ${p}: its state in the ${this.backend.kind} backend does not verify (${summary.entries} entries, digest ${summary.digest}; the checkpoint recorded ${pc.state.entries}, ${pc.state.digest})`,
        );
        continue;
      }
      return { meta, pc, entries, summary };
    }
    return undefined;
  }

  /** A revoked partition: its state is dropped (the last checkpoint that holds it stays). */
  async revoke(p: number): Promise<void> {
    this.op.drop(p);
    this.offsets.delete(p);
    const ps = this.stores.get(p);
    this.stores.delete(p);
    await ps?.close();
  }

  /** Takes a checkpoint of every partition held, barrier and all (see the top of this file). */
  async checkpoint(source: CheckpointSource, reason: string, sinksDone: () => Promise<void> = async () => {}): Promise<CheckpointMetadata | undefined> {
    const b = this.barrier(reason);
    return b === undefined ? undefined : this.complete(b, source, sinksDone);
  }

  /**
   * Step 1, the barrier: synchronous, so no batch can land between state and offsets.
   * Takes an immutable copy of every held partition's changed windows, its next offset
   * and max event time, and W; processing goes on as soon as it returns. Undefined when
   * no partition is held.
   */
  barrier(reason: string): PendingCheckpoint | undefined {
    const t0 = performance.now();
    this.lastAt = this.clock();
    const partitions = this.op.partitions;
    if (partitions.length === 0) return undefined;
    const id = this.nextId++;
    const parts: PendingCheckpoint['parts'] = [];
    for (const p of partitions) {
      const ps = this.stores.get(p);
      const offset = this.offsets.get(p);
      if (ps === undefined || offset === undefined) continue; // assigned, position not known yet: nothing to keep
      const op = this.op.operator(p);
      parts.push({ p, ps, offset, max: this.op.watermarks.maxOf(p), changes: op.takeChanges() });
    }
    const syncSeconds = (performance.now() - t0) / 1000;
    faultPoint('barrier-taken');
    return { id, reason, t0, syncSeconds, createdAt: new Date(this.clock()).toISOString(), watermarkMs: toJsonTime(this.op.watermarks.current), parts };
  }

  /**
   * Steps 2 to 5, while processing goes on: the state as version `id`, then
   * `sinksDone()` (every result and dead letter before the barrier is with its sink),
   * then the commit point, the offsets and retention. Call it for one barrier at a time,
   * in barrier order: each version holds the changes since the previous one.
   */
  async complete(b: PendingCheckpoint, source: CheckpointSource, sinksDone: () => Promise<void>): Promise<CheckpointMetadata> {
    const { id, parts } = b;
    let changes = 0;
    for (const x of parts) {
      // Keys and values are encoded here, out of the barrier, a slice at a time, letting
      // batches in between; the store takes the bytes as they are (to its thread).
      const w = new ChangeBatchWriter(x.changes.bytesHint);
      const size = x.changes.size;
      for (let from = 0; from < size; from += ENCODE_SLICE) {
        x.changes.encode(w, from, Math.min(size, from + ENCODE_SLICE));
        await new Promise<void>((resolve) => setImmediate(resolve));
      }
      changes += w.count;
      x.ps.stage(w.finish());
    }
    // 2. State, durably, as version `id`.
    const summaries = await Promise.all(parts.map((x) => x.ps.checkpoint(id)));
    faultPoint('state-written');
    // The sinks hold everything before the barrier before the commit point says so.
    await sinksDone();
    faultPoint('sinks-flushed');
    const pcs: PartitionCheckpoint[] = parts.map((x, i) => ({ partition: x.p, offset: x.offset, maxEventTimeMs: toJsonTime(x.max), state: summaries[i]! }));
    // 3. The commit point.
    const meta = await this.store.write({
      id,
      createdAt: b.createdAt,
      instanceId: this.cfg.processing.instanceId,
      backend: this.backend.kind,
      watermarkMs: b.watermarkMs,
      aggregations: this.fingerprint,
      partitions: pcs,
    });
    faultPoint('metadata-written');
    this.known.unshift(meta);
    // 4. Offsets, never ahead of durable state. A failed commit loses nothing: recovery seeks to the checkpoint's offsets.
    try {
      await source.commit(pcs.map((x) => ({ partition: x.partition, offset: x.offset })));
    } catch (e) {
      this.bus.emit('error', { kind: 'transient' });
      this.log.warn({ err: e, checkpoint: id }, `checkpoint ${id} is durable but committing its offsets failed: ${(e as Error).message}`);
    }
    // 5. Retention.
    const oldest = await this.store.retain(this.cfg.checkpoint.retain);
    this.known = this.known.filter((m) => oldest === undefined || m.id >= oldest);
    if (oldest !== undefined) await Promise.all(parts.map((x) => x.ps.prune(oldest)));
    const durationSeconds = (performance.now() - b.t0) / 1000;
    const bytes = summaries.reduce((s, x) => s + x.bytes, 0);
    this.bus.emit('checkpoint.completed', { id, durationSeconds, syncSeconds: b.syncSeconds, bytes });
    this.log.info(
      { checkpoint: id, reason: b.reason, partitions: pcs.length, changes, stateBytes: bytes, durationMs: Math.round(durationSeconds * 1000), barrierMs: Math.round(b.syncSeconds * 1e4) / 10 },
      `checkpoint ${id} done (${b.reason})`,
    );
    return meta;
  }

  async close(): Promise<void> {
    await Promise.allSettled([...this.stores.values()].map((s) => s.close()));
    this.stores.clear();
    await this.backend.close();
  }

  private async openStore(p: number): Promise<PartitionStore> {
    let ps = this.stores.get(p);
    if (ps === undefined) {
      ps = await this.backend.open(p);
      this.stores.set(p, ps);
    }
    return ps;
  }
}
