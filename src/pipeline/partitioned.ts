// One window operator per source partition, sharing the source's watermark.
//
// Window state is kept per partition so that a partition's state can be
// checkpointed, dropped (revoked) and restored (assigned) on its own, and so that
// a partition's results do not depend on which other partitions share the
// instance. W is still the source's (docs/semantics.md): the minimum over the
// partitions, shared by every operator through one Watermarks; after a batch of
// one partition moves W, every other partition's windows fire too.
import type { Config } from '../config';
import { watermarksFor, type Watermarks } from '../time/watermarks';
import { WindowOperator, type OperatorOptions, type Output } from './operator';
import { ResultBatch } from './results';
import type { RecordBatch } from './types';

export class PartitionedOperator {
  readonly watermarks: Watermarks;
  private readonly ops = new Map<number, WindowOperator>();
  /** Per partition: the W its windows were last advanced to. */
  private readonly advanced = new Map<number, number>();
  private readonly clock: () => number;
  private readonly aggregations: number;
  /**
   * Called once per aggregation when one of its keys shows up in two partitions:
   * such a key's windows are aggregated per partition, and their results share a
   * state key (docs/semantics.md), so they overwrite each other downstream.
   */
  onSharedKey: ((aggregation: string, key: string, partitions: [number, number]) => void) | undefined;
  /** Sees each partition's results, before they are merged into one batch (exactly-once output keeps them per partition). */
  onResults: ((partition: number, results: ResultBatch) => void) | undefined;
  /**
   * Per `aggregation\0key`: the partition that first fired a window of it; cleared once
   * it holds KEY_HOMES_MAX keys, so that it stays bounded with keys ever seen (a key
   * shared by two partitions fires in both again and again, and is found after a clear).
   */
  /** Per aggregation (index): the partition each key's results were first seen from. */
  private readonly keyHome: Array<Map<string, number>> = [];
  private readonly sharedWarned = new Set<string>();
  /** Called for every operator created (checkpointing turns change tracking on). */
  onCreate: ((op: WindowOperator, partition: number) => void) | undefined;

  constructor(
    private readonly cfg: Config,
    private readonly opts: OperatorOptions = {},
  ) {
    this.clock = opts.clock ?? Date.now;
    this.aggregations = cfg.aggregations.length;
    this.watermarks = watermarksFor(cfg);
  }

  get batchSize(): number {
    return this.cfg.processing.batchSize;
  }

  get partitions(): number[] {
    return [...this.ops.keys()].sort((a, b) => a - b);
  }

  /** The operator of `p`, created empty if there is none. */
  operator(p: number): WindowOperator {
    let op = this.ops.get(p);
    if (op === undefined) {
      op = new WindowOperator(this.cfg, { ...this.opts, watermarks: this.watermarks });
      this.ops.set(p, op);
      this.advanced.set(p, -Infinity);
      this.onCreate?.(op, p);
    }
    return op;
  }

  has(p: number): boolean {
    return this.ops.has(p);
  }

  /**
   * Before partitions `restoring` are restored (a rebalance): the instance's W starts
   * over, from the maxima of the partitions registered with it, and every other
   * partition's operator keeps the W it has seen as its own floor. A partition
   * restored from an older checkpoint (or from nothing) then reads its input again
   * against the W its state had, as the run that first read it did, not against the
   * W the others have reached since: otherwise its events would come back late (the
   * revoke's checkpoint cannot commit while the broker is away, and the last
   * committed one may be far behind).
   */
  rebase(restoring: readonly number[]): void {
    const w = this.watermarks.current;
    for (const [p, op] of this.ops) if (!restoring.includes(p)) op.holdAt(w);
    this.watermarks.restart();
  }

  /** Forgets partition `p`: its operator (state) and its hold on W. */
  drop(p: number): void {
    this.ops.delete(p);
    this.advanced.delete(p);
    this.watermarks.unregister(p);
  }

  process(batch: RecordBatch, nowMs = this.clock()): Output {
    const p = batch.partition;
    const out = this.operator(p).process(batch, nowMs);
    this.handOut(p, out);
    if (this.onSharedKey !== undefined && this.ops.size > 1) this.checkKeys(out, p);
    this.advanced.set(p, this.watermarks.current);
    this.advanceOthers(out, p, nowMs);
    return out;
  }

  /** Moves W without new events (idle partitions, ticks). */
  tick(nowMs = this.clock()): Output {
    this.watermarks.refresh(nowMs);
    const out = emptyOutput(this.aggregations, 0);
    this.advanceOthers(out, undefined, nowMs);
    return out;
  }

  /** End of a bounded input: W = +inf in every partition. */
  finish(nowMs = this.clock()): Output {
    const out = emptyOutput(this.aggregations, 0);
    const parts: ResultBatch[] = [];
    for (const [p, op] of this.ops) {
      const o = op.finish(nowMs);
      this.handOut(p, o);
      merge(out, o, parts);
      this.advanced.set(p, Infinity);
    }
    setParts(out, parts);
    this.watermarks.finish();
    return out;
  }

  /**
   * finish() in steps of about `maxResults` results (WindowOperator.finishStep), one
   * partition after the other: call until `done`.
   */
  finishStep(maxResults: number, nowMs = this.clock()): { out: Output; done: boolean } {
    for (const [p, op] of this.ops) {
      if (this.advanced.get(p) === Infinity) continue;
      const { out, done } = op.finishStep(maxResults, nowMs);
      this.handOut(p, out);
      if (done) this.advanced.set(p, Infinity);
      return { out, done: false };
    }
    this.watermarks.finish();
    return { out: emptyOutput(this.aggregations, 0), done: true };
  }

  openWindows(a: number): number {
    let n = 0;
    for (const op of this.ops.values()) n += op.openWindows(a);
    return n;
  }

  /** Open windows of partition `p`, every aggregation's. */
  windowsOf(p: number): number {
    const op = this.ops.get(p);
    let n = 0;
    if (op !== undefined) for (let a = 0; a < this.aggregations; a++) n += op.openWindows(a);
    return n;
  }

  /** End (ms) of the earliest unfired window of aggregation `a` over every partition, +Infinity for none. */
  nextFireMs(a: number): number {
    let m = Infinity;
    for (const op of this.ops.values()) m = Math.min(m, op.nextFireMs(a));
    return m;
  }

  memoryBytes(): number {
    let n = 0;
    for (const op of this.ops.values()) n += op.memoryBytes();
    return n;
  }

  /**
   * Notes which partition each key's results come from, and reports a key that comes
   * from two. A key's results look once per registration (ResultKey.homeNoted), not
   * once per result: with sessions per user, a string and a map lookup per result cost
   * a few percent of the main thread.
   */
  private checkKeys(out: Output, p: number): void {
    const { keys, n } = out.results;
    for (let i = 0; i < n; i++) {
      const k = keys[i]!;
      if (k.homeNoted === true) continue;
      k.homeNoted = true;
      const { name, key } = k;
      if (this.sharedWarned.has(name)) continue;
      const homes = (this.keyHome[k.agg] ??= new Map<string, number>());
      const home = homes.get(key);
      if (home === undefined) {
        if (homes.size >= KEY_HOMES_MAX) homes.clear();
        homes.set(key, p);
      } else if (home !== p) {
        this.sharedWarned.add(name);
        this.onSharedKey?.(name, key, [home, p]);
      }
    }
  }

  /** Shows partition `p`'s results to onResults, if anyone looks. */
  private handOut(p: number, o: Output): void {
    if (this.onResults !== undefined && o.results.n > 0) this.onResults(p, o.results);
  }

  private advanceOthers(out: Output, except: number | undefined, nowMs: number): void {
    const w = this.watermarks.current;
    let parts: ResultBatch[] | undefined;
    for (const [p, op] of this.ops) {
      if (p === except || (this.advanced.get(p) ?? -Infinity) >= w) continue;
      const o = op.advance(w, nowMs);
      this.handOut(p, o);
      merge(out, o, (parts ??= [out.results]));
      this.advanced.set(p, w);
    }
    if (parts !== undefined) setParts(out, parts);
  }
}

/**
 * The step's results, from several partitions: kept apart in `out.parts`, and
 * `out.results` joins them only if read (the runner's loop hands the parts on: a
 * copy of every result per step, and its allocations, cost 5% of the main thread
 * with four partitions of sessions per user).
 */
function setParts(out: Output, parts: ResultBatch[]): void {
  const some = parts.filter((b) => b.n > 0);
  for (const b of parts) if (b.n === 0) b.release();
  if (some.length <= 1) {
    out.results = some[0] ?? ResultBatch.empty;
    return;
  }
  let joined: ResultBatch | undefined;
  out.parts = some;
  Object.defineProperty(out, 'results', { get: () => (joined ??= ResultBatch.join(some)), enumerable: true, configurable: true });
}

/** Keys the shared-key check remembers before it starts over. */
const KEY_HOMES_MAX = 100_000;

export function emptyOutput(aggregations: number, records: number): Output {
  return { results: ResultBatch.empty, deadLetters: [], gone: [], late: new Array<number>(aggregations).fill(0), records };
}

/** Adds `from` to `into`, its results to `parts` (concatenated by the caller, once). */
function merge(into: Output, from: Output, parts: ResultBatch[]): void {
  parts.push(from.results);
  for (const d of from.deadLetters) into.deadLetters.push(d);
  for (const g of from.gone) into.gone.push(g);
  from.late.forEach((l, a) => (into.late[a]! += l));
  into.records += from.records;
}
