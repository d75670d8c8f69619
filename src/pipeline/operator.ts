// The window operator: one batch in, results and dead letters out.
//
// Per batch: decode into the core's arrays, compute W before every event, run each
// aggregation through the core (one call each), then read
// what fired and what was rejected. Synchronous and free of I/O: the runner does that.
import type { AggregationConfig, Config } from '../config';
import { WasmCore, Layout } from '../core/wasm';
import { isoOf } from '../time/timestamp';
import { watermarksFor, type Watermarks } from '../time/watermarks';
import { JsonDecoder, explainInvalid, explainMalformed, REC_BLANK, REC_FAILED, REC_MALFORMED, REC_OK, type Decoder } from './decoder';
import { KeyRegistry } from './keys';
import { ScanDecoder } from './scandecoder';
import { offsetOf, stateKey, type DeadLetter, type RecordBatch } from './types';
import { ResultBatch, ResultEncoder } from './results';
import { ChangeBatchWriter, type ChangeBatch } from '../state/batch';
import { ChangeSet, PersistedWindows, StateKeyParts, STATE_MAGIC, STATE_VALUE_VERSION, type KeyTables, type StateChanges } from './changes';

export { STATE_VALUE_VERSION, type StateChanges } from './changes';

const { EV, GONE, GONE_BYTES } = Layout;

/**
 * A registry is swept for keys without an open window once it holds this many keys
 * (and then again after at least this many new ones): below it, keys are not worth
 * a pass over the window slots; above it, key memory stays within a few times what
 * the keys with open windows need.
 */
export const KEY_SWEEP_MIN = 4096;

/** Where the parts of a state value lie in its buffer, and the window's bounds. */
interface StateValueLayout {
  /** The aggregation's name: bytes [nameAt, nameAt + nameLen). */
  nameAt: number;
  nameLen: number;
  /** The group values: `count` of them from valuesAt, each a u32 length and its UTF-8 bytes. */
  count: number;
  valuesAt: number;
  start: number;
  end: number;
  /** The core's bytes of the window: [coreStart, coreEnd) of the value's buffer. */
  coreStart: number;
  coreEnd: number;
}

interface DecodedState extends StateValueLayout {
  name: string;
  values: string[];
}

/**
 * Finds the parts of the state value in bytes [p, end) of `b` (into `into`, no
 * strings made); answers why it is not one (undefined: it is).
 */
function locateStateValue(b: Buffer, p: number, end: number, into: StateValueLayout): string | undefined {
  if (end - p < 2 || b[p] !== STATE_MAGIC) return 'not a window state value';
  if (b[p + 1] !== STATE_VALUE_VERSION) return `unsupported state format version ${b[p + 1]} (this build reads ${STATE_VALUE_VERSION})`;
  let o = p + 2;
  if (o + 2 > end) return 'the value is truncated';
  const nameLen = b.readUInt16LE(o);
  if (o + 4 + nameLen > end) return 'the value is truncated';
  into.nameAt = o + 2;
  into.nameLen = nameLen;
  o += 2 + nameLen;
  const n = b.readUInt16LE(o);
  o += 2;
  into.count = n;
  into.valuesAt = o;
  for (let j = 0; j < n; j++) {
    if (o + 4 > end) return 'the value is truncated';
    const len = b.readUInt32LE(o);
    if (o + 4 + len > end) return 'the value is truncated';
    o += 4 + len;
  }
  if (o + 16 > end) return 'the value is truncated';
  into.start = b.readDoubleLE(o);
  into.end = b.readDoubleLE(o + 8);
  into.coreStart = o + 16;
  into.coreEnd = end;
  return undefined;
}

/** The group values of a located state value. */
function valuesOf(b: Buffer, at: StateValueLayout): string[] {
  const values = new Array<string>(at.count);
  for (let j = 0, q = at.valuesAt; j < at.count; j++) {
    const len = b.readUInt32LE(q);
    values[j] = b.toString('utf8', q + 4, q + 4 + len);
    q += 4 + len;
  }
  return values;
}

/** Buffer's own UTF-8 decoder, without toString()'s argument checks (a restore makes a key string per window). */
const utf8Slice = (Buffer.prototype as unknown as { utf8Slice: (this: Buffer, start: number, end: number) => string }).utf8Slice;

/**
 * The group values of a located state value as slices of `key`, its key string
 * (bytes [from, to) of `b`, all ASCII), when the key spells them plainly: each
 * `field=value`, joined by ':', with no value holding '%', ':' or '='. Undefined
 * otherwise (valuesOf() and KeyRegistry.spells() then decide).
 */
function valuesInKey(b: Buffer, from: number, to: number, key: string, fields: readonly string[], at: StateValueLayout): string[] | undefined {
  if (to - from !== key.length || at.count !== fields.length) return undefined;
  const values = new Array<string>(at.count);
  let p = from;
  for (let j = 0, q = at.valuesAt; j < at.count; j++) {
    if (j > 0 && b[p++] !== 0x3a) return undefined;
    const f = fields[j]!;
    for (let i = 0; i < f.length; i++) if (b[p + i] !== f.charCodeAt(i)) return undefined;
    p += f.length;
    if (b[p++] !== 0x3d) return undefined;
    const len = b.readUInt32LE(q);
    q += 4;
    if (p + len > to) return undefined;
    for (let i = 0; i < len; i++) {
      const c = b[q + i]!;
      if (c !== b[p + i] || c === 0x25 || c === 0x3a || c === 0x3d) return undefined;
    }
    values[j] = key.substring(p - from, p - from + len);
    p += len;
    q += len;
  }
  return p === to ? values : undefined;
}

/**
 * Parses the state value in bytes [p, end) of `b` into `into`; answers why it is not
 * one (undefined: it is).
 */
function parseStateValue(b: Buffer, p: number, end: number, into: DecodedState): string | undefined {
  const why = locateStateValue(b, p, end, into);
  if (why !== undefined) return why;
  into.name = b.toString('utf8', into.nameAt, into.nameAt + into.nameLen);
  into.values = valuesOf(b, into);
  return undefined;
}

/** Where the last integerAt() stopped. */
let integerEnd = 0;

/**
 * The integer written in bytes [from, to) of `b` up to the byte `stop` (or `to`), as
 * String(n) writes one of at most 15 digits; NaN for anything else.
 */
function integerAt(b: Buffer, from: number, to: number, stop: number): number {
  let i = from;
  const negative = i < to && b[i] === 0x2d;
  if (negative) i++;
  const first = i;
  let v = 0;
  for (; i < to && b[i] !== stop; i++) {
    const d = b[i]! - 0x30;
    if (d < 0 || d > 9) return NaN;
    v = v * 10 + d;
  }
  const digits = i - first;
  if (digits === 0 || digits > 15 || (digits > 1 && b[first] === 0x30) || (negative && v === 0)) return NaN;
  integerEnd = i;
  return negative ? -v : v;
}

/** Whether bytes [from, to) of `b` are `${start}_${end}` with integers written as String() writes them. */
function boundsAre(b: Buffer, from: number, to: number, start: number, end: number): boolean {
  if (integerAt(b, from, to, 0x5f) !== start || integerEnd === to) return false;
  return integerAt(b, integerEnd + 1, to, -1) === end;
}

function cannotRestore(key: string, why: string): Error {
  return new Error(`window state "${key}" cannot be restored: ${why}`);
}

/** Parses a state value; throws naming the state key when it is not one. */
export function decodeStateValue(key: string, v: Uint8Array): { name: string; values: string[]; start: number; end: number; core: Uint8Array } {
  const b = Buffer.from(v.buffer, v.byteOffset, v.byteLength);
  const st = {} as DecodedState;
  const why = parseStateValue(b, 0, b.length, st);
  if (why !== undefined) throw cannotRestore(key, why);
  return { name: st.name, values: st.values, start: st.start, end: st.end, core: b.subarray(st.coreStart, st.coreEnd) };
}

/** What one step of the operator produced. */
export interface Output {
  /** The windows that fired, in firing order, as JSON lines and their numbers (toObjects() for objects). */
  results: ResultBatch;
  deadLetters: DeadLetter[];
  /** Windows whose state was purged: (aggregation index, key, start, end); empty with OperatorOptions.gone false. */
  gone: { agg: number; key: string; start: number; end: number }[];
  /** Per aggregation: events too late for at least one of their windows. */
  late: number[];
  /** Records consumed (blank lines included). */
  records: number;
  /**
   * The same results as one batch per partition, when windows of more than one fired
   * in the step (PartitionedOperator): `results` then joins them, a copy, when first
   * read. Read one or the other: whoever hands the results on takes resultParts().
   */
  parts?: ResultBatch[];
}

/** A step's results as the batches they came in (Output.parts), without joining them. */
export function resultParts(out: Output): readonly ResultBatch[] {
  return out.parts ?? [out.results];
}

export interface OperatorOptions {
  /** Wall clock for emittedAt and dead-letter timestamps (injected by tests). @default Date.now */
  clock?: () => number;
  /** Watermarks shared with other operators (one per partition of a source); by default its own. */
  watermarks?: Watermarks;
  /** `scan`: the WASM byte scanner (default); `json`: JSON.parse per record (the reference path). */
  decoder?: 'scan' | 'json';
  /** Keys an aggregation holds before the first release of keys without open windows (tests lower it). @default KEY_SWEEP_MIN */
  keySweepMin?: number;
  /** Whether outputs list the windows whose state went (`Output.gone`); a run reads none of them. @default true */
  gone?: boolean;
}

export class WindowOperator {
  readonly registries: KeyRegistry[];
  readonly watermarks: Watermarks;
  private readonly core: WasmCore;
  private readonly aggs: readonly AggregationConfig[];
  private readonly isSession: boolean[];
  private readonly decoder: Decoder;
  private readonly encoder: ResultEncoder;
  private readonly rec: Uint8Array;
  private readonly clock: () => number;
  private readonly tsField: string;
  private readonly instance: string;
  private readonly latenessMs: number;
  private readonly aggIndex = new Map<string, number>();
  /** The aggregations' names, UTF-8, by index. */
  private readonly nameBytes: Buffer[];
  // ─── Checkpoint bookkeeping ───
  private tracking = false;
  /** Whether any event went into the core (restore needs a fresh operator). */
  private fed = false;
  /** The W its restored state stood at: W as this operator sees it never goes below (see restore()). */
  private floorMs = -Infinity;
  /** Which window each slot is persisted as, for the deletes of the next change set. */
  private readonly persisted: PersistedWindows;
  /** The last change set taken: until it is encoded, no key id is freed (it names keys by id). */
  private changes: ChangeSet | undefined;
  /** Each key's state key start and state value head, in the core's memory. */
  private readonly keyParts: StateKeyParts;
  /** Per aggregation: the registry size at which keys without open windows are released next. */
  private readonly sweepAt: number[];
  private readonly keySweepMin: number;
  private readonly listGone: boolean;
  /** Per aggregation, per key id: 1 when the key had no open window at the last sweep. */
  private readonly idle: Uint8Array[];
  /**
   * Restoring state keys in the order a RocksDB store gives them (by UTF-8 length, then
   * bytes: see state/rocksdb.ts) into registries that were empty when the restore
   * began. While every window's bounds (`start_end`) have one length, all windows of a
   * key have one length too and come one after another, so a key is either the
   * previous window's or not registered yet, and needs no lookup. Cleared for good by a
   * key out of order, bounds of another length, or a window restored the long way
   * (restoreOne() registers the key its values give, which may sort elsewhere).
   */
  private restoreOrdered: boolean | undefined;
  /** The previous window restored in order: its state key is bytes [prevK, prevEnd) of prevB, its key string ends at prevC; its key id. */
  private prevB: Buffer | undefined;
  private prevK = 0;
  private prevC = 0;
  private prevEnd = 0;
  private prevId = 0;

  constructor(cfg: Config, opts: OperatorOptions = {}) {
    const { eventTime, aggregations, processing } = cfg;
    this.aggs = aggregations;
    this.tsField = eventTime.field;
    this.instance = processing.instanceId;
    this.latenessMs = eventTime.allowedLatenessMs;
    this.clock = opts.clock ?? Date.now;
    this.registries = aggregations.map((a) => new KeyRegistry(a.groupBy));
    aggregations.forEach((a, i) => this.aggIndex.set(a.name, i));
    this.nameBytes = aggregations.map((a) => Buffer.from(a.name, 'utf8'));
    this.keySweepMin = opts.keySweepMin ?? KEY_SWEEP_MIN;
    this.listGone = opts.gone ?? true;
    this.sweepAt = aggregations.map(() => this.keySweepMin);
    this.idle = aggregations.map(() => new Uint8Array(0));
    this.core = new WasmCore(
      processing.batchSize,
      aggregations.map((a) => {
        const w = a.window;
        const kind = Layout.WIN[w.type];
        const sizeMs = w.type === 'session' ? w.gapMs : w.sizeMs;
        const slideMs = w.type === 'sliding' ? w.slideMs : sizeMs;
        return { kind, sizeMs, slideMs, latenessMs: eventTime.allowedLatenessMs };
      }),
    );
    // Purged windows are read only to be listed or to track checkpointed state (trackChanges()).
    this.core.recordGone(this.listGone);
    this.isSession = aggregations.map((a) => a.window.type === 'session');
    this.decoder =
      opts.decoder === 'json'
        ? new JsonDecoder(eventTime.field, aggregations, this.registries)
        : new ScanDecoder(this.core, eventTime.field, aggregations, this.registries);
    this.encoder = new ResultEncoder(this.core, aggregations.map((a) => a.name), this.registries);
    this.keyParts = new StateKeyParts(this.core, this.nameBytes, this.keyTables, this.registries);
    this.persisted = new PersistedWindows(aggregations.map((a) => a.name), this.keyTables, this.keyParts);
    this.rec = new Uint8Array(processing.batchSize);
    this.watermarks = opts.watermarks ?? watermarksFor(cfg);
  }

  get batchSize(): number {
    return this.core.capacity;
  }

  /** Processes one batch (batch.n <= batchSize) of one partition. */
  process(batch: RecordBatch, nowMs = this.clock()): Output {
    const n = batch.n;
    const core = this.core;
    // The core's batch arrays hold batchSize events: past them, its memory would be overwritten.
    if (n > core.capacity) throw new RangeError(`a batch of ${n} records: this operator takes at most processing.batchSize (${core.capacity})`);
    const out = this.emptyOutput(n);
    if (n === 0) return out;
    this.fed = true;
    this.prevB = undefined;
    this.decoder.decode(batch, core, this.rec);
    const wmk = this.watermarks;
    const p = batch.partition;
    const maxAfter = core.computeWatermarks(n, wmk.maxOf(p), wmk.ooo, wmk.othersMin(p, nowMs), this.floored(wmk.current));
    const bad: Array<[number, number, number]> = []; // (record, agg, EV_*)
    for (let a = 0; a < this.aggs.length; a++) {
      const notOk = this.isSession[a] ? core.processSessions(a, n) : core.processWindows(a, n);
      if (notOk > 0) {
        const status = core.agg(a).status;
        for (let i = 0; i < n; i++) if (status[i] !== EV.OK) bad.push([i, a, status[i]!]);
      }
    }
    wmk.update(p, maxAfter, nowMs);
    // W after the last event may already close windows.
    this.advanceAll(this.floored(wmk.current));
    this.collect(out, nowMs);
    this.deadLetter(batch, bad, out, nowMs);
    return out;
  }

  /** Moves W without new events (idle partitions, ticks). */
  tick(nowMs = this.clock()): Output {
    const out = this.emptyOutput(0);
    const before = this.watermarks.current;
    const w = this.watermarks.refresh(nowMs);
    if (w > before) {
      this.advanceAll(this.floored(w));
      this.collect(out, nowMs);
    }
    return out;
  }

  /** End of a bounded input: W = +inf, every open window fires (once more if changed) and is purged. */
  finish(nowMs = this.clock()): Output {
    const out = this.emptyOutput(0);
    this.watermarks.finish();
    this.advanceAll(Infinity);
    this.collect(out, nowMs);
    return out;
  }

  /**
   * finish() in steps of about `maxResults` results (a tumbling or sliding window's
   * keys all fire in one step): call until `done`. The steps' results together are
   * finish()'s, in its order. In steps, their records, lines and keys stay in the
   * cache, and the memory they are written to is the steps' before, not fresh.
   */
  finishStep(maxResults: number, nowMs = this.clock()): { out: Output; done: boolean } {
    const out = this.emptyOutput(0);
    this.watermarks.finish();
    let done = true;
    this.core.setFireLimit(maxResults);
    try {
      for (let a = 0; a < this.aggs.length && done; a++) done = !this.core.advance(a, Infinity);
    } finally {
      this.core.setFireLimit(undefined);
    }
    this.collect(out, nowMs);
    return { out, done };
  }

  /** Fires and purges what W = w makes due (W moved by another partition of the source). */
  advance(w: number, nowMs = this.clock()): Output {
    const out = this.emptyOutput(0);
    this.advanceAll(this.floored(w));
    this.collect(out, nowMs);
    return out;
  }

  openWindows(a: number): number {
    return this.core.openWindows(a);
  }

  /** End (ms) of the earliest window of aggregation `a` that has not fired, +Infinity for none (sessions: a lower bound). */
  nextFireMs(a: number): number {
    return this.core.nextFire(a);
  }

  // ─── Checkpoints ─────────────────────────────────────────────────────────────

  /**
   * Turns change tracking on (idempotent): from now on drainChanges() gives the
   * changes of the window state. Windows the operator already holds from events count
   * as changed (the first drain has them all); restored ones do not.
   */
  trackChanges(): void {
    if (this.tracking) return;
    this.tracking = true;
    this.core.recordGone(true);
    this.core.trackChanges(true, this.fed);
  }

  /**
   * The state-key-level changes since the last drain (or since trackChanges /
   * restore): puts of every window created or changed, deletes of every persisted
   * key no window holds any more. A window created and purged in between appears in
   * neither; a persisted one changed and then purged only in deletes. Applying
   * deletes, then puts, to the state of the last drain gives exactly the live
   * windows. `takeChanges()` and `materialize()` in one.
   */
  drainChanges(): StateChanges {
    return this.takeChanges().materialize();
  }

  /**
   * The changes since the last take (a checkpoint's barrier): the core writes a header
   * per changed window into a region of its own, and a pass over them, numbers only,
   * finds the persisted windows they replace. The windows' bytes (written by the core
   * copy on write) and the state keys are left to ChangeSet.encode(), which must run
   * before the next take; until it has encoded every record, no key id is freed.
   */
  takeChanges(): ChangeSet {
    if (!this.tracking) throw new Error('takeChanges() needs trackChanges() first');
    return (this.changes = this.persisted.take(this.core.serialize(false)));
  }

  /** Every live window's (state key, value), as drainChanges would put them; changes nothing. */
  snapshot(): Array<[string, Buffer]> {
    return new PersistedWindows(this.aggs.map((a) => a.name), this.keyTables, this.keyParts).take(this.core.serialize(true)).materialize().puts;
  }

  /** Per aggregation, its key strings and group values by key id (the registries' own arrays, which stay the same arrays). */
  private get keyTables(): KeyTables {
    return { keys: this.registries.map((r) => r.keys), values: this.registries.map((r) => r.values) };
  }

  /**
   * Rebuilds the window state of a fresh operator (no event processed yet) from the
   * (state key, value) pairs of the last checkpoint, as it stood at watermark
   * `watermarkMs`: windows with end <= W count as fired. W as this operator sees it
   * stays at `watermarkMs` or above from then on, even where the instance's W is
   * lower (a partition taken over from an instance that was further on): its fired
   * windows fire again at once with a late event, as they would have there, and
   * never a second time as on time. The keys are registered
   * again, so new events of the same keys reuse them; later drains replace or delete
   * these entries. The operator's watermarks are not touched: the caller restores
   * them (watermarks.register(partition, now, maxEventTime), watermarks.current).
   */
  restore(entries: Iterable<[string, Uint8Array]>, watermarkMs: number): void {
    const w = new ChangeBatchWriter();
    for (const [key, value] of entries) w.put(key, value);
    this.restoreBatch(w.finish(), watermarkMs);
  }

  /**
   * restore() from the puts of a change batch (batch.ts), but for the keys `skip`
   * has. The batch is copied into the core once, and each window is read in place:
   * its state key is made a string only when `skip` has keys or the window is not
   * one restoreFast() takes.
   */
  restoreBatch(batch: ChangeBatch, watermarkMs: number, skip?: ReadonlyMap<string, unknown>): void {
    this.beginRestore(watermarkMs);
    const b = Buffer.from(batch.buffer, 0, batch.length);
    const base = this.core.stage(b);
    const skipping = skip !== undefined && skip.size > 0;
    const st = {} as DecodedState;
    let p = 0;
    for (let i = 0; i < batch.count; i++) {
      if (p + 8 > b.length) throw new Error(`a change batch ends inside record ${i} of ${batch.count}`);
      const keyLen = b.readUInt32LE(p), v = b.readUInt32LE(p + 4);
      const k = p + 8, end = k + keyLen + v;
      if (end > b.length) throw new Error(`a change batch ends inside record ${i} of ${batch.count}`);
      p = end;
      if (v === 0) continue;
      if (skipping && skip.has(b.toString('utf8', k, k + keyLen))) continue;
      if (this.restoreFast(b, k, k + keyLen, k + keyLen + 1, end, watermarkMs, base, st)) continue;
      this.restoreOne(b.toString('utf8', k, k + keyLen), b, k + keyLen + 1, end, watermarkMs, st, base);
    }
    this.core.unstage();
  }

  /**
   * Restores the window whose state key is bytes [k, keyEnd) of `b` and whose value is
   * [p, end), staged in the core at `base`, when its key is the one its value gives
   * with integer bounds, from the key's bytes and one string (its key's); false, with
   * nothing done, for anything else (restoreOne() then restores or explains it).
   */
  private restoreFast(b: Buffer, k: number, keyEnd: number, p: number, end: number, w: number, base: number, at: StateValueLayout): boolean {
    if (locateStateValue(b, p, end, at) !== undefined) return false;
    const nameLen = at.nameLen;
    if (keyEnd - k < nameLen + 2 || b[k + nameLen] !== 0x3a) return false;
    for (let j = 0; j < nameLen; j++) if (b[at.nameAt + j] !== b[k + j]) return false;
    const a = this.aggIndexOf(b, at.nameAt, nameLen);
    if (a < 0) return false;
    const reg = this.registries[a]!;
    if (at.count !== reg.fields.length) return false;
    // The key ends ':' start '_' end: the last ':' ends the key string.
    let c = keyEnd - 1;
    while (c > k + nameLen && b[c] !== 0x3a) c--;
    if (c === k + nameLen || !boundsAre(b, c + 1, keyEnd, at.start, at.end)) return false;
    let id: number | undefined;
    const prev = this.prevB;
    if (this.restoreOrdered && prev !== undefined) {
      const pk = this.prevK, pEnd = this.prevEnd, len = keyEnd - k;
      // Bounds of another length: the same key may come again in another length's run.
      if (len < pEnd - pk || keyEnd - c !== pEnd - this.prevC) this.restoreOrdered = false;
      else if (len === pEnd - pk) {
        // Where the two state keys first differ (Buffer.compare() costs more than the lookup it saves).
        let i = 0;
        while (i < len && b[k + i] === prev[pk + i]) i++;
        if (i === len || b[k + i]! < prev[pk + i]!) this.restoreOrdered = false;
        // The same key: the same bytes up to and including the ':' that ends it.
        else if (c - k === this.prevC - pk && i > c - k) id = this.prevId;
      }
      // Longer than the previous key, in order: a key not seen yet.
    }
    if (id === undefined) {
      const key = utf8Slice.call(b, k + nameLen + 1, c);
      if (!this.restoreOrdered) id = reg.known(key);
      if (id === undefined) {
        let values = valuesInKey(b, k + nameLen + 1, c, key, reg.fields, at);
        if (values === undefined) {
          values = valuesOf(b, at);
          // A key of other values (one stored before values were percent-encoded, say) takes the long way.
          if (!reg.spells(key, values)) return false;
        }
        id = reg.add(key, values);
      }
    }
    const slot = this.core.restoreWindow(a, id, at.start, at.end, w, base + at.coreStart, at.coreEnd - at.coreStart);
    if (slot === Layout.NO_SLOT) throw this.rejected(b.toString('utf8', k, keyEnd), a);
    this.persisted.set(slot, a, id, at.start, at.end);
    if (this.restoreOrdered) {
      this.prevB = b;
      this.prevK = k;
      this.prevC = c;
      this.prevEnd = keyEnd;
      this.prevId = id;
    }
    return true;
  }

  /** The index of the aggregation named by bytes [at, at + len) of `b`; -1 if none is. */
  private aggIndexOf(b: Buffer, at: number, len: number): number {
    for (let a = 0; a < this.nameBytes.length; a++) {
      const name = this.nameBytes[a]!;
      if (name.length !== len) continue;
      let j = 0;
      while (j < len && name[j] === b[at + j]) j++;
      if (j === len) return a;
    }
    return -1;
  }

  /**
   * Room for n windows: the core's slot pool and the persisted windows' arrays grow
   * once to hold them, so that restoring n windows (restore(), restoreBatch()) does
   * not regrow either.
   */
  reserve(n: number): void {
    this.core.reserveSlots(n);
    this.persisted.reserve(this.core.slotCapacity());
  }

  private beginRestore(watermarkMs: number): void {
    if (this.fed) throw new Error('restore() needs a fresh operator: this one has processed events');
    this.floorMs = watermarkMs;
    this.restoreOrdered ??= this.registries.every((r) => r.size === 0);
  }

  /** Restores the window of state key `key` from its value, bytes [p, end) of `b`, staged in the core at `base`. */
  private restoreOne(key: string, b: Buffer, p: number, end: number, watermarkMs: number, st: DecodedState, base: number): void {
    this.restoreOrdered = false;
    const why = parseStateValue(b, p, end, st);
    if (why !== undefined) throw cannotRestore(key, why);
    const a = this.aggIndex.get(st.name);
    if (a === undefined) throw cannotRestore(key, `no aggregation named "${st.name}" in this config (aggregations: ${this.aggs.map((x) => x.name).join(', ')})`);
    const reg = this.registries[a]!;
    if (st.values.length !== reg.fields.length) throw cannotRestore(key, `it has ${st.values.length} group values, aggregation "${st.name}" groups by ${reg.fields.length} fields`);
    const id = reg.idOf(st.values);
    const expect = stateKey(st.name, reg.keys[id]!, st.start, st.end);
    // State written before key values were percent-encoded is read as well; the next drain rewrites it.
    const legacyKey = expect === key ? undefined : reg.fields.map((f, j) => `${f}=${st.values[j]!}`).join(':');
    if (legacyKey !== undefined && stateKey(st.name, legacyKey, st.start, st.end) !== key) throw cannotRestore(key, `its value describes the window "${expect}"`);
    const slot = this.core.restoreWindow(a, id, st.start, st.end, watermarkMs, base + st.coreStart, st.coreEnd - st.coreStart);
    if (slot === Layout.NO_SLOT) throw this.rejected(key, a);
    // Persisted under the key it was stored with: a legacy one is deleted at the next drain.
    this.persisted.set(slot, a, id, st.start, st.end, legacyKey);
  }

  private rejected(key: string, a: number): Error {
    const agg = this.aggs[a]!;
    return cannotRestore(
      key,
      `the core rejected it (corrupt or unsupported state, a window that is not one of "${agg.name}"'s ${agg.window.type} windows, or one that overlaps another restored window)`,
    );
  }

  memoryBytes(): number {
    return this.core.memoryBytes();
  }

  /** W as this operator sees it, given the instance's W `w` (see restore()). */
  floored(w: number): number {
    return w > this.floorMs ? w : this.floorMs;
  }

  /** Keeps W at `w` at least from now on, whatever the instance's W does (see PartitionedOperator.rebase()). */
  holdAt(w: number): void {
    if (w > this.floorMs) this.floorMs = w;
  }

  private emptyOutput(records: number): Output {
    return { results: ResultBatch.empty, deadLetters: [], gone: [], late: this.aggs.map(() => 0), records };
  }

  private advanceAll(w: number): void {
    for (let a = 0; a < this.aggs.length; a++) this.core.advance(a, w);
  }

  /** Encodes the out region's results and reads the gone region, then clears them. */
  private collect(out: Output, nowMs: number): void {
    out.results = this.encoder.encode(this.core.results(), nowMs);
    const g = this.core.gone();
    const persisted = this.persisted.empty ? undefined : this.persisted;
    const list = this.listGone;
    if (list || persisted !== undefined) {
      for (let k = 0; k < g.count; k++) {
        const b = g.base + k * GONE_BYTES;
        if (list) {
          const a = g.u32[(b >>> 2) + GONE.AGG / 4]!;
          out.gone.push({ agg: a, key: this.registries[a]!.keys[g.u32[(b >>> 2) + GONE.KEY / 4]!]!, start: g.f64[(b >>> 3) + GONE.START / 8]!, end: g.f64[(b >>> 3) + GONE.END / 8]! });
        }
        if (persisted !== undefined) {
          // The slot's persisted key (a session may have grown since) is no window's any more.
          persisted.release(g.u32[(b >>> 2) + GONE.SLOT / 4]!);
        }
      }
    }
    this.core.resetOutput();
    if (this.tracking) this.persisted.reserve(this.core.slotCapacity());
    // Every key id of this step has been read: ids without an open window may go, unless
    // a change set not yet encoded names them (then at the first step after it is).
    if (this.changes !== undefined && !this.changes.encoded) return;
    for (let a = 0; a < this.aggs.length; a++) if (this.registries[a]!.size >= this.sweepAt[a]!) this.releaseKeys(a);
  }

  /**
   * Releases the keys of aggregation `a` that had no open window at this sweep and
   * the one before: their registry entries (with them their cached state headers) and (scan decoder) raw
   * ids in the core's table, so that memory follows open windows, not every key
   * ever seen. A key idle at one sweep only is kept one more round: keys that come
   * back soon after their windows closed (heavy users between sessions) are not
   * registered again and again. A key that comes back later is registered anew,
   * maybe under another id; state keys and results use key strings, never ids.
   */
  private releaseKeys(a: number): void {
    const reg = this.registries[a]!;
    const cap = reg.capacity;
    const live = this.core.liveKeys(a, cap);
    let idle = this.idle[a]!;
    if (idle.length < cap) {
      const grown = new Uint8Array(Math.max(cap, 2 * idle.length));
      grown.set(idle);
      this.idle[a] = idle = grown;
    }
    let open = 0;
    for (let id = 0; id < cap; id++) {
      if (live[id] !== 0) {
        idle[id] = 0;
        open++;
      } else if (!reg.has(id)) idle[id] = 0;
      else if (idle[id] === 0) idle[id] = 1;
      else {
        idle[id] = 0;
        this.decoder.releaseKey(a, id);
        reg.release(id); // the encoder drops the key's prefix (a release hook)
      }
    }
    // The next sweep once half as many new keys as keys with open windows have come:
    // its pass over every id and slot then costs a few steps per new key, and the keys
    // kept stay within about twice those with open windows (their memory, not the
    // pass, is what a key costs: a wider margin had a run with a million users hold
    // three to four times the keys it needed).
    this.sweepAt[a] = reg.size + Math.max(this.keySweepMin, open >>> 1);
  }

  /** Keys of aggregation `a` registered now, and the raw ids the scan decoder's table holds (0 with the JSON decoder). */
  keyCounts(a: number): { keys: number; ids: number; rawKeys: number } {
    const reg = this.registries[a]!;
    return { keys: reg.size, ids: reg.capacity, rawKeys: this.decoder instanceof ScanDecoder ? this.decoder.rawKeys(a) : 0 };
  }

  /** Dead letters in input order: malformed once per record, invalid and late per aggregation. */
  private deadLetter(batch: RecordBatch, bad: Array<[number, number, number]>, out: Output, nowMs: number): void {
    const rec = this.rec;
    // The constants in locals, read once per batch: each import read in the loop is a property load on its module.
    const malformed = REC_MALFORMED, failed = REC_FAILED, blank = batch.messages === true ? REC_BLANK : -1, ok = REC_OK;
    for (let i = 0; i < batch.n; i++) {
      const r = rec[i]!;
      if (r !== ok && (r === malformed || r === failed || r === blank)) bad.push([i, -1, EV.INVALID]);
    }
    if (bad.length === 0) return;
    const stamp = new Date(nowMs).toISOString();
    bad.sort((x, y) => x[0] - y[0] || x[1] - y[1]);
    const wm = this.core.wm();
    const ts = this.core.ts();
    for (const [i, a, st] of bad) {
      if (st === EV.PARTLY_LATE) {
        out.late[a]!++;
        continue;
      }
      if (rec[i] !== REC_OK && a >= 0) continue;
      const text = batch.buf.toString('utf8', batch.starts[i], batch.ends[i]);
      const base = {
        retry_count: 0,
        timestamp: stamp,
        processor_instance: this.instance,
        partition: batch.partition,
        offset: String(offsetOf(batch, i)),
      };
      if (a < 0) {
        const error =
          rec[i] === REC_FAILED ? this.decoder.failures.get(i)!
          : batch.nullOffsets?.includes(offsetOf(batch, i)) === true ? 'null Kafka message value (a tombstone)'
          : text === '' ? 'empty Kafka message value'
          : explainMalformed(text);
        out.deadLetters.push({ original_event: text, reason: 'malformed', error, ...base });
        continue;
      }
      const agg = this.aggs[a]!;
      if (st === EV.LATE) {
        out.late[a]!++;
        out.deadLetters.push({
          original_event: text,
          reason: 'late',
          error: `event time ${isoOf(ts[i]!)} is past the allowed lateness (${this.latenessMs} ms) of every window it belongs to; watermark ${isoOf(wm[i]!)}`,
          aggregation: agg.name,
          ...base,
        });
      } else {
        out.deadLetters.push({ original_event: text, reason: 'invalid', error: explainInvalid(text, this.tsField, agg.value), aggregation: agg.name, ...base });
      }
    }
  }

}
