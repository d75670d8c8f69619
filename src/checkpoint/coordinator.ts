// Checkpoints and recovery of a partitioned operator with a Kafka source.
//
// A checkpoint is taken in two parts, as Flink's asynchronous snapshots are:
//   1. the barrier, synchronously, between two batches: every partition's core writes
//      its changed windows to a region of linear memory that stays as it is until the
//      next barrier (a ChangeSet reads it; numbers only, no copy, no string), and its
//      next offset and max event time and W are read. Processing goes on at once.
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
import { FIELD_BYTES } from '../core/pathspec';
import { ChangeBatchWriter, StateCorrupt, type DigestAlgorithm, type PartitionStore, type StateBackend, type StateSummary } from '../state';
import type { ChangeSet } from '../pipeline/changes';
import type { ResultBatch } from '../pipeline/results';
import { readChangeBatch, type ChangeBatch } from '../state/batch';
import type { Changelog } from '../changelog/thread';
import type { RestoreResult } from '../changelog/kafka';
import { FencedError } from '../changelog/errors';
import { CHANGELOG_FORMAT, aggregationFingerprints, checkPartitionRecord, eventTimeFingerprint, type PartitionRecord } from '../changelog/format';
import { faultPoint } from './faults';
import { CheckpointStore, fromJsonTime, toJsonTime, type CheckpointMetadata, type JsonTime, type PartitionCheckpoint } from './store';

/** What the coordinator needs of the source (KafkaSource). */
/**
 * The background part of a checkpoint encodes its windows ENCODE_STEP at a time (~0.3 ms
 * of the main thread), and lets batches in between once it has encoded for
 * ENCODE_TURN_MS: the loop is never held much longer than that by it. (Slices of 8,192
 * windows took 4 ms, and 20 to 70 ms on a machine whose cores were all busy: results
 * waited that long behind them.)
 */
const ENCODE_STEP = 512;
const ENCODE_TURN_MS = 1;

export interface CheckpointSource {
  startInfo(partition: number): { committed: string | undefined; low: string; position: string | undefined };
  seek(partition: number, offset: string): boolean;
  commit(offsets: ReadonlyArray<{ partition: number; offset: string }>): Promise<void>;
  /** The partitions this instance holds now. */
  readonly assignment: readonly number[];
  /** The offset to commit for `offset`: past records that are not records (transaction markers) when nothing lies between. */
  pastNonRecords(partition: number, offset: string): string;
}

/** Topic, aggregations and event-time settings: the state of a checkpoint is only valid for the same. */
export function aggregationsFingerprint(cfg: Config): string {
  const { field, maxOutOfOrdernessMs, allowedLatenessMs } = cfg.eventTime;
  const aggs = cfg.aggregations.map((a) => ({ name: a.name, groupBy: a.groupBy, value: a.value, window: a.window }));
  const topic = cfg.source.type === 'kafka' ? cfg.source.topic : null;
  return createHash('sha256').update(JSON.stringify({ topic, field, maxOutOfOrdernessMs, allowedLatenessMs, aggs })).digest('hex').slice(0, 16);
}

/** The hash of the state digest `meta` recorded (its metadata's version says). */
function digestOf(meta: CheckpointMetadata): DigestAlgorithm {
  return meta.version === 1 ? 'sha256' : 'xxh64';
}

/** A checkpoint between its barrier and its completion: what it holds, as of its barrier. */
export interface PendingCheckpoint {
  id: number;
  reason: string;
  /** performance.now() at the barrier. */
  t0: number;
  /** The clock at the barrier (ms). */
  at: number;
  /** The barrier's duration: the pause in processing. */
  syncSeconds: number;
  createdAt: string;
  watermarkMs: JsonTime;
  /** Per partition; `w`: W as its operator sees it (see WindowOperator.restore()). */
  parts: Array<{ p: number; ps: PartitionStore; offset: string; max: number; w: number; changes: ChangeSet; results: ChangeBatch | undefined }>;
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
  /** With a changelog: per partition, the changelog offset its local state (as of the last checkpoint) reaches. */
  private readonly changelogOffsets = new Map<number, string>();
  /** With a changelog: per partition, the input offset of its last committed transaction. */
  private readonly committedOffsets = new Map<number, string>();
  /** With a changelog: partitions whose last transaction failed (the changelog thread holds its records for the next). */
  private readonly uncommitted = new Set<number>();
  /** Topics of the exactly-once result sinks: results go out in the checkpoint transactions. */
  private readonly resultTopics: string[];
  /** With exactly-once result sinks: per partition, its results since its last barrier, as Kafka messages (key, value). */
  private readonly results = new Map<number, ChangeBatchWriter>();
  /** Since when checkpoints' transactions have been failing (ms), or undefined. */
  private failingSince: number | undefined;
  /** With a changelog: when a checkpoint last wrote the local cache (its barrier, ms). */
  private cachedAt = -Infinity;
  /** State bytes per partition as of the last local write (what changelog-only checkpoints report). */
  private readonly stateBytes = new Map<number, number>();

  constructor(
    private readonly cfg: Config,
    private readonly op: PartitionedOperator,
    private readonly backend: StateBackend,
    private readonly log: Logger,
    private readonly bus: Instrumentation,
    clock: () => number = Date.now,
    /** Where each partition's state and offsets are committed: a Kafka changelog, or local checkpoints alone. */
    private readonly changelog?: Changelog,
  ) {
    // With a changelog, local checkpoints are a cache of it: not fsynced (store.ts).
    this.store = new CheckpointStore(cfg.checkpoint.dir, { sync: changelog === undefined });
    this.fingerprint = aggregationsFingerprint(cfg);
    this.clock = clock;
    this.lastAt = clock();
    op.onCreate = (o) => o.trackChanges();
    this.resultTopics = cfg.sinks.flatMap((x) => (x.type === 'kafka' && x.exactlyOnce ? [x.topic] : []));
    if (this.resultTopics.length > 0) op.onResults = (p, r) => this.holdResults(p, r);
    backend.onWarning = (message, fields) => log.warn(fields, message);
  }

  /** A partition's results, held for its next checkpoint transaction: key and value as a Kafka sink writes them. */
  private holdResults(p: number, r: ResultBatch): void {
    let w = this.results.get(p);
    if (w === undefined) this.results.set(p, (w = new ChangeBatchWriter(1 << 16)));
    for (let i = 0; i < r.n; i++) w.put(r.stateKeyOf(i), r.lineOf(i));
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
    const s = batch.scanned;
    if (s !== undefined) rest.scanned = { ...s, fields: s.fields.subarray(i * s.paths * FIELD_BYTES), status: s.status.subarray(i) };
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
    if (this.changelog !== undefined) return this.assignFromChangelog(partitions, source, this.changelog);
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
    // No restored partition's floor above the W this instance had reached.
    const reached = wm.current;
    this.op.rebase(partitions);
    if (first && empty.length === 0 && found.length > 0) {
      wm.current = Math.max(wm.current, Math.min(...found.map((f) => fromJsonTime(f.meta.watermarkMs))));
    }
    for (const { p, meta, pc, entries, summary } of found) {
      this.op.operator(p).restore(entries, Math.min(fromJsonTime(meta.watermarkMs), Math.max(reached, wm.current)));
      wm.register(p, this.clock(), fromJsonTime(pc.maxEventTimeMs));
      source.seek(p, pc.offset);
      this.offsets.set(p, pc.offset);
      this.log.info({ checkpoint: meta.id, partition: p, offset: pc.offset, windows: summary.entries }, `partition ${p} restored from checkpoint ${meta.id}`);
    }
    await Promise.all(empty.map((p) => this.stores.get(p)!.clear()));
    this.startEmpty(empty, source);
  }

  /**
   * With a changelog: each newly assigned partition's producer is opened first (which
   * fences a previous owner, a zombie included, and aborts its open transaction); then
   * its state is the local cache (the newest local checkpoint that verifies and is
   * recent enough) plus the changelog from the offset that cache reaches, or the
   * whole changelog; its input is sought to where the last committed checkpoint
   * left it.
   */
  private async assignFromChangelog(partitions: readonly number[], source: CheckpointSource, changelog: Changelog): Promise<void> {
    // The store (on disk) and the producer (fencing, over the network) open side by side.
    const opened = await Promise.allSettled(partitions.map(async (p) => (await Promise.all([this.openStore(p), changelog.open(p)]))[0]));
    const failed = opened.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed !== undefined) throw failed.reason;
    type Restored = { p: number; rec: PartitionRecord };
    const restored: Restored[] = [];
    const empty: number[] = [];
    // The partitions restore side by side: one's reads (the changelog thread's fetches,
    // the state thread's) go on while another's windows are rebuilt here.
    const restoreOne = async (p: number): Promise<PartitionRecord | undefined> => {
      const t0 = performance.now();
      const ps = this.stores.get(p)!;
      this.op.drop(p);
      this.results.delete(p);
      const where = `changelog "${changelog.topic}" partition ${p}`;
      const cached = await this.restoreCached(p, ps, changelog, where);
      let r: RestoreResult, rec: PartitionRecord | undefined;
      if (cached !== undefined) ({ r, rec } = cached);
      else {
        await ps.clear();
        r = await changelog.restore(p, '0');
        rec = r.partitionRecord === undefined ? undefined : checkPartitionRecord(r.partitionRecord, this.cfg, where);
        if (rec === undefined) {
          if (r.batch.count > 0) throw new WeirError(`${where} holds windows but no ${'@weir/partition'} record: it was not written by Weir`, { domain: 'user' });
        } else {
          const operator = this.op.operator(p);
          operator.reserve(r.batch.count);
          operator.restoreBatch(r.batch, fromJsonTime(rec.watermarkMs));
        }
      }
      // The local store catches up with the changelog at the next checkpoint.
      if (r.batch.count > 0) ps.stage(r.batch);
      const seconds = (performance.now() - t0) / 1000;
      this.bus.emit('state.restored', { partition: p, seconds, records: r.records });
      this.changelogOffsets.set(p, r.end);
      if (rec === undefined) {
        this.log.info({ partition: p, state: 'empty', changelogEnd: r.end, ms: Math.round(seconds * 1000) }, `partition ${p}: no state in ${where}, starting empty`);
        return undefined;
      }
      this.committedOffsets.set(p, rec.offset);
      const windows = this.op.windowsOf(p);
      const local = cached?.meta;
      const from = local === undefined ? 'changelog' : r.records > 0 ? 'local cache and changelog' : 'local cache';
      const what =
        local === undefined
          ? `partition ${p} restored from the changelog (${r.records} records of "${changelog.topic}" from offset 0, ${windows} windows)`
          : `partition ${p} restored from checkpoint ${local.id} (local cache) and ${r.records} changelog records from offset ${cached!.from} (${windows} windows)`;
      this.log.info(
        { partition: p, state: from, checkpoint: local?.id, changelogFrom: cached?.from ?? '0', changelogEnd: r.end, records: r.records, windows, offset: rec.offset, ms: Math.round(seconds * 1000) },
        `${what} in ${Math.round(seconds * 1000)} ms; reading from offset ${rec.offset}`,
      );
      return rec;
    };
    const outcomes = await Promise.allSettled(partitions.map(restoreOne));
    const failure = outcomes.find((x): x is PromiseRejectedResult => x.status === 'rejected');
    if (failure !== undefined) throw failure.reason;
    outcomes.forEach((x, i) => {
      const rec = (x as PromiseFulfilledResult<PartitionRecord | undefined>).value;
      if (rec === undefined) empty.push(partitions[i]!);
      else restored.push({ p: partitions[i]!, rec });
    });
    const first = this.firstAssignment;
    this.firstAssignment = false;
    const wm = this.op.watermarks;
    this.op.rebase(partitions);
    if (first && empty.length === 0 && restored.length > 0) wm.current = Math.max(wm.current, Math.min(...restored.map((x) => fromJsonTime(x.rec.watermarkMs))));
    for (const { p, rec } of restored) {
      wm.register(p, this.clock(), fromJsonTime(rec.maxEventTimeMs));
      source.seek(p, rec.offset);
      this.offsets.set(p, rec.offset);
    }
    this.startEmpty(empty, source);
  }

  /**
   * Partition `p`'s operator rebuilt from the newest local checkpoint that verifies
   * and is recent enough, plus the changelog after the offset that checkpoint reached;
   * undefined (and the operator empty) when there is none. The store's batches and
   * the changelog's tail are read side by side; the tail's keys are newer than the
   * cache's, so the batches wait for it (the cache's entries of its keys are skipped),
   * then the operator is rebuilt from each as the state thread reads it. A checkpoint
   * whose state does not verify is dropped, operator and all, and the next older one tried.
   */
  private async restoreCached(p: number, ps: PartitionStore, changelog: Changelog, where: string): Promise<{ meta: CheckpointMetadata; from: string; r: RestoreResult; rec: PartitionRecord } | undefined> {
    for (const meta of this.known) {
      const pc = meta.partitions.find((x) => x.partition === p);
      // A cache older than the topic's delete.retention.ms may miss a tombstone compaction has removed since.
      if (pc?.changelogOffset === undefined || this.clock() - Date.parse(meta.createdAt) >= changelog.deleteRetentionMs / 2) continue;
      this.checkFingerprint(meta);
      const from = pc.changelogOffset;
      const operator = this.op.operator(p);
      // Until the tail is in: the batches read so far (undefined: rebuild each as it
      // comes), what went wrong with it, and whether the batches are to be dropped.
      let waiting: ChangeBatch[] | undefined = [];
      let failure: Error | undefined;
      let discard = false;
      // The tail's keys (filled when it is in) and W.
      const newer = new Map<string, Buffer | null>();
      let w = 0;
      const rebuild = (batch: ChangeBatch): void => {
        if (failure !== undefined) return;
        try {
          operator.restoreBatch(batch, w, newer);
        } catch (e) {
          failure = e instanceof Error ? e : new Error(String(e));
        }
      };
      const reading = ps.restoreBatches(meta.id, (batch) => (discard ? undefined : waiting !== undefined ? waiting.push(batch) : rebuild(batch)), digestOf(meta));
      // Its outcome is taken below, whichever way the tail goes.
      reading.catch(() => undefined);
      /** The cache is not used: the rest of its batches are dropped as read, and so is the operator. */
      const abandon = async (): Promise<void> => {
        discard = true;
        await reading.catch(() => undefined);
        this.op.drop(p);
      };
      let r: RestoreResult, rec: PartitionRecord;
      try {
        r = await changelog.restore(p, from);
        rec = r.partitionRecord !== undefined ? checkPartitionRecord(r.partitionRecord, this.cfg, where) : this.recordOf(meta, pc);
      } catch (e) {
        await abandon();
        throw e;
      }
      if (BigInt(r.end) < BigInt(from)) {
        // The changelog ends before the cache: it is not the changelog the cache came from.
        await abandon();
        this.log.warn({ partition: p, cache: from, end: r.end }, `partition ${p}: the local state reaches changelog offset ${from}, but ${where} ends at ${r.end}; restoring from the changelog alone`);
        return undefined;
      }
      readChangeBatch(r.batch, (key, value) => newer.set(key, value));
      w = fromJsonTime(rec.watermarkMs);
      // The checkpoint says how many windows it holds: the core makes room for them once.
      operator.reserve(pc.state.entries + r.batch.count);
      const early = waiting;
      waiting = undefined;
      for (const batch of early) rebuild(batch);
      let summary: StateSummary;
      try {
        summary = await reading;
      } catch (e) {
        if (!(e instanceof StateCorrupt)) throw e;
        this.op.drop(p);
        this.log.warn({ checkpoint: meta.id, partition: p, err: e }, `skipping checkpoint ${meta.id} for partition ${p}: ${e.message}`);
        continue;
      }
      if (failure !== undefined) throw failure;
      if (!this.verifies(meta, pc, summary)) {
        this.op.drop(p);
        continue;
      }
      operator.restoreBatch(r.batch, w);
      return { meta, from, r, rec };
    }
    return undefined;
  }

  /** What a local checkpoint says of partition `pc`, as a changelog's partition record would. */
  private recordOf(meta: CheckpointMetadata, pc: PartitionCheckpoint): PartitionRecord {
    return {
      format: CHANGELOG_FORMAT,
      offset: pc.offset,
      maxEventTimeMs: pc.maxEventTimeMs,
      // The partition's own W, as its changelog record has it (the instance's, in checkpoints written before it was kept).
      watermarkMs: pc.watermarkMs ?? meta.watermarkMs,
      topic: this.cfg.source.type === 'kafka' ? this.cfg.source.topic : '',
      aggregations: aggregationFingerprints(this.cfg),
      eventTime: eventTimeFingerprint(this.cfg),
    };
  }

  /** Partitions with no state: they start from their beginning (see assign()). */
  private startEmpty(empty: readonly number[], source: CheckpointSource): void {
    const wm = this.op.watermarks;
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
      this.checkFingerprint(meta);
      let restored;
      try {
        restored = await ps.restore(meta.id, digestOf(meta));
      } catch (e) {
        if (!(e instanceof StateCorrupt)) throw e;
        this.log.warn({ checkpoint: meta.id, partition: p, err: e }, `skipping checkpoint ${meta.id} for partition ${p}: ${e.message}`);
        continue;
      }
      const { entries, summary } = restored;
      if (!this.verifies(meta, pc, summary)) continue;
      return { meta, pc, entries, summary };
    }
    return undefined;
  }

  private checkFingerprint(meta: CheckpointMetadata): void {
    if (meta.aggregations !== this.fingerprint)
      throw new WeirError(
        `checkpoint ${meta.id} in ${this.cfg.checkpoint.dir} was taken with another source topic, other aggregations or other event-time settings than this config; to reprocess from scratch, point checkpoint.dir and state.dir at empty directories`,
        { domain: 'user' },
      );
  }

  /** Whether the state read back for checkpoint `meta` is what it recorded (a warning if not). */
  private verifies(meta: CheckpointMetadata, pc: PartitionCheckpoint, summary: StateSummary): boolean {
    if (summary.digest === pc.state.digest && summary.entries === pc.state.entries) return true;
    this.log.warn(
      { checkpoint: meta.id, partition: pc.partition, expected: pc.state, found: summary },
      `skipping checkpoint ${meta.id} for partition ${pc.partition}: its state in the ${this.backend.kind} backend does not verify (${summary.entries} entries, digest ${summary.digest}; the checkpoint recorded ${pc.state.entries}, ${pc.state.digest})`,
    );
    return false;
  }

  /** A revoked partition: its state is dropped (the last checkpoint that holds it stays). */
  async revoke(p: number): Promise<void> {
    this.op.drop(p);
    this.offsets.delete(p);
    this.changelogOffsets.delete(p);
    this.committedOffsets.delete(p);
    this.stateBytes.delete(p);
    this.uncommitted.delete(p);
    // Its results since the last commit are the next owner's to produce again, from there.
    this.results.delete(p);
    await this.changelog?.close(p).catch(() => undefined);
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
   * Takes every held partition's changed windows (a ChangeSet: what nothing after the
   * barrier changes), its next offset and max event time, and W; processing goes on as
   * soon as it returns. Undefined when no partition is held.
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
      const held = this.results.get(p);
      parts.push({ p, ps, offset, max: this.op.watermarks.maxOf(p), w: op.floored(this.op.watermarks.current), changes: op.takeChanges(), results: held !== undefined && held.count > 0 ? held.finish() : undefined });
    }
    const syncSeconds = (performance.now() - t0) / 1000;
    faultPoint('barrier-taken');
    return { id, reason, t0, at: this.lastAt, syncSeconds, createdAt: new Date(this.lastAt).toISOString(), watermarkMs: toJsonTime(this.op.watermarks.current), parts };
  }

  /**
   * Steps 2 to 5, while processing goes on: the state as version `id`, then
   * `sinksDone()` (every result and dead letter before the barrier is with its sink),
   * then the commit point, the offsets and retention. Call it for one barrier at a time,
   * in barrier order: each version holds the changes since the previous one.
   */
  async complete(b: PendingCheckpoint, source: CheckpointSource, sinksDone: () => Promise<void>): Promise<CheckpointMetadata | undefined> {
    const { id, parts } = b;
    // With a changelog, the local cache is written every changelog.cacheIntervalMs (and
    // at every checkpoint not taken for the interval: a stop, a rebalance, the end of
    // the input); in between, the stores only stage the changes, coalescing them.
    const local = this.changelog === undefined || b.reason !== 'interval' || b.at - this.cachedAt >= this.cfg.changelog.cacheIntervalMs;
    if (local) this.cachedAt = b.at;
    let changes = 0;
    const forChangelog: ChangeBatch[] = [];
    for (const x of parts) {
      // Keys and values are encoded here, out of the barrier, a slice at a time, letting
      // batches in between (before the first too: complete() runs on from the barrier
      // without a break otherwise); the store takes the bytes as they are (to its thread).
      // With a changelog two threads read the batch: it is written shared, not copied.
      const w = new ChangeBatchWriter(x.changes.bytesHint, this.changelog !== undefined);
      const size = x.changes.size;
      for (let from = 0; from < size; ) {
        await new Promise<void>((resolve) => setImmediate(resolve));
        const turn = performance.now();
        do {
          const to = Math.min(size, from + ENCODE_STEP);
          x.changes.encode(w, from, to);
          from = to;
        } while (from < size && performance.now() - turn < ENCODE_TURN_MS);
      }
      changes += w.count;
      const batch = w.finish();
      if (this.changelog !== undefined) forChangelog.push(batch);
      x.ps.stage(batch);
    }
    // 2. State, durably, as version `id`.
    const summaries = local ? await Promise.all(parts.map((x) => x.ps.checkpoint(id))) : undefined;
    if (summaries !== undefined) {
      parts.forEach((x, i) => this.stateBytes.set(x.p, summaries[i]!.bytes));
      faultPoint('state-written');
    }
    // The sinks hold everything before the barrier before the commit point says so.
    await sinksDone();
    faultPoint('sinks-flushed');
    // With a changelog, each partition's transaction is its commit point.
    if (this.changelog !== undefined && !(await this.commitChangelog(b, forChangelog, source, this.changelog))) return undefined;
    if (summaries === undefined) {
      this.completed(b, changes, parts.reduce((s, x) => s + (this.stateBytes.get(x.p) ?? 0), 0), false);
      return undefined;
    }
    const pcs: PartitionCheckpoint[] = parts.map((x, i) => {
      const pc: PartitionCheckpoint = { partition: x.p, offset: x.offset, maxEventTimeMs: toJsonTime(x.max), state: summaries[i]! };
      const co = this.changelogOffsets.get(x.p);
      if (co !== undefined) {
        pc.changelogOffset = co;
        pc.watermarkMs = toJsonTime(x.w);
      }
      return pc;
    });
    // 3. The commit point (with a changelog: of the local cache).
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
    if (this.changelog === undefined) {
      try {
        await source.commit(pcs.map((x) => ({ partition: x.partition, offset: x.offset })));
      } catch (e) {
        this.bus.emit('error', { kind: 'transient' });
        this.log.warn({ err: e, checkpoint: id }, `checkpoint ${id} is durable but committing its offsets failed: ${(e as Error).message}`);
      }
    }
    // 5. Retention.
    const oldest = await this.store.retain(this.cfg.checkpoint.retain);
    this.known = this.known.filter((m) => oldest === undefined || m.id >= oldest);
    if (oldest !== undefined) await Promise.all(parts.map((x) => x.ps.prune(oldest)));
    this.completed(b, changes, summaries.reduce((s, x) => s + x.bytes, 0), true);
    return meta;
  }

  private completed(b: PendingCheckpoint, changes: number, bytes: number, local: boolean): void {
    const durationSeconds = (performance.now() - b.t0) / 1000;
    this.bus.emit('checkpoint.completed', { id: b.id, durationSeconds, syncSeconds: b.syncSeconds, bytes });
    this.log.info(
      { checkpoint: b.id, reason: b.reason, partitions: b.parts.length, changes, local, stateBytes: bytes, durationMs: Math.round(durationSeconds * 1000), barrierMs: Math.round(b.syncSeconds * 1e4) / 10 },
      `checkpoint ${b.id} done (${b.reason}${local ? '' : ', changelog only'})`,
    );
  }

  /**
   * Each partition's changes, where it stands and its input offset, as one transaction
   * per partition (all partitions at once). True when every one committed. A transaction
   * that failed is retried with the next checkpoint's (the changelog thread keeps its
   * records); the local checkpoint is then not written, so the local cache never gets
   * ahead of the changelog. A fenced producer of a partition this instance no longer
   * holds is a rebalance: the partition is someone else's now. One it still holds is a
   * zombie: the run fails.
   */
  private async commitChangelog(b: PendingCheckpoint, batches: ChangeBatch[], source: CheckpointSource, changelog: Changelog): Promise<boolean> {
    const topic = this.cfg.source.type === 'kafka' ? this.cfg.source.topic : '';
    const aggregations = aggregationFingerprints(this.cfg);
    const eventTime = eventTimeFingerprint(this.cfg);
    const commitOne = async (x: PendingCheckpoint['parts'][number], i: number): Promise<void> => {
      const batch = batches[i]!;
      // Nothing changed and nothing read: the last transaction still says it all.
      if (batch.count === 0 && x.results === undefined && this.committedOffsets.get(x.p) === x.offset && !this.uncommitted.has(x.p)) return;
      this.uncommitted.add(x.p);
      const record: PartitionRecord = { format: CHANGELOG_FORMAT, offset: x.offset, maxEventTimeMs: toJsonTime(x.max), watermarkMs: toJsonTime(x.w), topic, aggregations, eventTime };
      const next = await changelog.commit(x.p, [batch], JSON.stringify(record), source.pastNonRecords(x.p, x.offset), x.results === undefined ? [] : [x.results], this.resultTopics);
      this.changelogOffsets.set(x.p, next);
      this.committedOffsets.set(x.p, x.offset);
      this.uncommitted.delete(x.p);
    };
    // An interval's checkpoint commits its partitions one after another: together, their
    // transactions (each some 800 KB with 8,000 changed windows) came to the broker at
    // once, and results were late behind them (the broker and Weir share the machine's
    // cores in the latency bench; docs/benchmarks.md). The others (the end of the input,
    // a stop, a rebalance) are waited for: their partitions commit at once.
    const results: Array<PromiseSettledResult<void>> = [];
    if (b.reason === 'interval') for (const [i, x] of b.parts.entries()) results.push(...(await Promise.allSettled([commitOne(x, i)])));
    else results.push(...(await Promise.allSettled(b.parts.map(commitOne))));
    faultPoint('changelog-committed');
    let ok = true;
    for (const [i, r] of results.entries()) {
      if (r.status === 'fulfilled') continue;
      const p = b.parts[i]!.p;
      const e = r.reason as unknown;
      if (e instanceof FencedError) {
        if (!source.assignment.includes(p)) {
          this.log.info({ partition: p, checkpoint: b.id }, `partition ${p} moved to another instance before checkpoint ${b.id} committed: it continues there from its previous checkpoint`);
          ok = false;
          continue;
        }
        throw new WeirError(`${e.message}: this instance was stopped or cut off for longer than source.sessionTimeoutMs, and what it did since its last checkpoint is discarded; it stops so that it can restart and rejoin`, { domain: 'external', cause: e });
      }
      ok = false;
      this.failingSince ??= this.clock();
      this.bus.emit('error', { kind: 'transient' });
      this.log.warn({ err: e, partition: p, checkpoint: b.id }, `checkpoint ${b.id} of partition ${p} did not commit (it is retried with the next): ${(e as Error).message}`);
      if (this.clock() - this.failingSince > this.cfg.retry.maxElapsedMs)
        throw new WeirError(`checkpoints have not committed to the changelog for ${Math.round((this.clock() - this.failingSince) / 1000)} s (retry.maxElapsedMs): ${(e as Error).message}`, { domain: 'external', cause: e });
    }
    if (ok) this.failingSince = undefined;
    return ok;
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
