// The window-state changes a checkpoint takes, in two parts (Flink's asynchronous
// snapshots): `PersistedWindows.take()` runs in the checkpoint's barrier, while
// processing waits, and only copies; `ChangeSet.materialize()` builds the state keys
// and values later, while processing goes on.
//
// The barrier's work is proportional to the changed windows but allocation-free per
// window apart from one reference per array: the core serializes the changed windows
// into its snap region (assembly/snapshot.ts), one memcpy copies that region out, and
// the windows' identities (aggregation, key string, group values, start, end) are read
// into plain arrays. Key strings are captured here, not key ids: an id may be freed and
// given to another key before the checkpoint completes.
import { Layout } from '../core/wasm';
import { stateKey } from './types';

const { SNAP, SNAP_HEADER } = Layout;
const NO_VALUES: readonly string[] = [];
// Field offsets of a snap record in u32 words and f64 slots from its start.
const SNAP_AGG_W = SNAP.AGG / 4, SNAP_KEY_W = SNAP.KEY / 4, SNAP_LEN_W = SNAP.LEN / 4, SNAP_SLOT_W = SNAP.SLOT / 4;
const SNAP_START_D = SNAP.START / 8, SNAP_END_D = SNAP.END / 8;

/** Changes of the window state since the last drain, at the level of state keys. */
export interface StateChanges {
  /** Windows created or changed: (state key, value). */
  puts: Array<[string, Buffer]>;
  /** State keys no window holds any more (purged, merged away, or a session that grew). */
  deletes: string[];
}

/** The snap region as the core wrote it (see WasmCore.serialize). */
export interface SnapRegion {
  count: number;
  base: number;
  length: number;
  bytes: Uint8Array;
  f64: Float64Array;
  u32: Uint32Array;
  /** The highest slot among the records, when known (the arrays by slot grow once). */
  maxSlot?: number;
}

/**
 * Value format of one window's state (version 1), little-endian:
 *
 *   u8 'W' (0x57), u8 version (1)
 *   u16 byte length, UTF-8: the aggregation's name
 *   u16 n, then n × (u32 byte length, UTF-8): the group values, in group-by order
 *   f64 start, f64 end
 *   the rest: the core's slot serialization (accumulators and sketch; assembly/layout.ts,
 *   versioned by its own leading u32 SER_VERSION)
 */
export const STATE_VALUE_VERSION = 1;
export const STATE_MAGIC = 0x57;

function stateHeader(name: string, values: readonly string[]): Buffer {
  const parts = [Buffer.from(name, 'utf8'), ...values.map((v) => Buffer.from(v, 'utf8'))];
  const b = Buffer.allocUnsafe(2 + 2 + parts[0]!.length + 2 + values.length * 4 + parts.slice(1).reduce((n, x) => n + x.length, 0));
  let o = b.writeUInt8(STATE_MAGIC, 0);
  o = b.writeUInt8(STATE_VALUE_VERSION, o);
  o = b.writeUInt16LE(parts[0]!.length, o);
  o += parts[0]!.copy(b, o);
  o = b.writeUInt16LE(values.length, o);
  for (const x of parts.slice(1)) {
    o = b.writeUInt32LE(x.length, o);
    o += x.copy(b, o);
  }
  return b;
}

/**
 * The windows changed (and gone) between two checkpoint barriers, copied out of the
 * core: immutable, independent of anything the operator does afterwards.
 */
export class ChangeSet {
  constructor(
    private readonly names: readonly string[],
    /** The snap region's bytes from its base: record k at offsets[k]. */
    private readonly snap: Buffer,
    private readonly offsets: Uint32Array,
    private readonly lengths: Uint32Array,
    private readonly starts: Float64Array,
    private readonly ends: Float64Array,
    private readonly aggs: Uint32Array,
    /** Windows to put: the first n of keys and values. */
    private readonly n: number,
    private readonly keys: readonly string[],
    private readonly values: ReadonlyArray<readonly string[]>,
    private readonly gone: GoneWindows,
    /** The encoded head of a state value per group-values array (one per key), shared by the change sets of one operator. */
    private readonly headers: WeakMap<readonly string[], Buffer>,
  ) {}

  /**
   * The state keys and values. Applying the deletes, then the puts, to the state of the
   * previous change set gives exactly the windows live at the barrier.
   */
  materialize(): StateChanges {
    const headers = this.headers;
    const puts: Array<[string, Buffer]> = [];
    for (let k = 0; k < this.n; k++) {
      const a = this.aggs[k]!, name = this.names[a]!, vals = this.values[k]!;
      const start = this.starts[k]!, end = this.ends[k]!;
      let head = headers.get(vals);
      if (head === undefined) headers.set(vals, (head = stateHeader(name, vals)));
      const len = this.lengths[k]!, off = this.offsets[k]!;
      const value = Buffer.allocUnsafe(head.length + 16 + len);
      head.copy(value, 0);
      value.writeDoubleLE(start, head.length);
      value.writeDoubleLE(end, head.length + 8);
      this.snap.copy(value, head.length + 16, off + SNAP_HEADER, off + SNAP_HEADER + len);
      puts.push([stateKey(name, this.keys[k]!, start, end), value]);
    }
    // A key can be both gone and put (a window purged, then opened again): applied in
    // that order, the put wins. Duplicates among the deletes are harmless too.
    const g = this.gone;
    const deletes = g.key.map((key, i) => stateKey(this.names[g.agg[i]!]!, key, g.start[i]!, g.end[i]!));
    return { puts, deletes };
  }
}

/** Windows no slot holds any more, as parallel arrays (no object per window in a barrier). */
class GoneWindows {
  agg: number[] = [];
  key: string[] = [];
  start: number[] = [];
  end: number[] = [];

  push(agg: number, key: string, start: number, end: number): void {
    this.agg.push(agg);
    this.key.push(key);
    this.start.push(start);
    this.end.push(end);
  }
}

/**
 * Which window each core slot is persisted as (as of the last change set or the
 * restore), so that a change set can say which state keys went away: a purged window,
 * or a session whose start or end moved (it is stored under a new key). Typed arrays
 * indexed by slot, grown by doubling: a barrier touches them once per changed window.
 */
export class PersistedWindows {
  private agg = new Uint32Array(0);
  private start = new Float64Array(0);
  private end = new Float64Array(0);
  private key: Array<string | undefined> = [];
  /** Persisted windows no slot holds any more since the last take(). */
  private gone = new GoneWindows();
  private count = 0;
  private copyBuffer: Buffer = Buffer.alloc(0);
  private offsetsBuffer = new Uint32Array(0);
  private lengthsBuffer = new Uint32Array(0);
  private aggsBuffer = new Uint32Array(0);
  private startsBuffer = new Float64Array(0);
  private endsBuffer = new Float64Array(0);
  private readonly keysBuffer: string[] = [];
  private readonly valuesBuffer: Array<readonly string[]> = [];

  constructor(
    private readonly names: readonly string[],
    /** Caches the encoded head of a state value per group-values array (see ChangeSet). */
    private readonly headers = new WeakMap<readonly string[], Buffer>(),
  ) {}

  /** Whether any window is persisted (nothing to track before the first checkpoint). */
  get empty(): boolean {
    return this.count === 0;
  }

  private ensure(slot: number): void {
    if (slot < this.agg.length) return;
    const cap = Math.max(slot + 1, this.agg.length * 2, 1024);
    const agg = new Uint32Array(cap), start = new Float64Array(cap), end = new Float64Array(cap);
    agg.set(this.agg);
    start.set(this.start);
    end.set(this.end);
    this.agg = agg;
    this.start = start;
    this.end = end;
    // Filled, not holey: V8 keeps the array's fast elements.
    for (let i = this.key.length; i < cap; i++) this.key.push(undefined);
  }

  /** A restored window: `slot` holds it as persisted. */
  set(slot: number, agg: number, key: string, start: number, end: number): void {
    this.ensure(slot);
    if (this.key[slot] === undefined) this.count++;
    this.agg[slot] = agg;
    this.key[slot] = key;
    this.start[slot] = start;
    this.end[slot] = end;
  }

  /** The window in `slot` was purged: its persisted state key goes at the next take(). */
  release(slot: number): void {
    const key = this.key[slot];
    if (key === undefined) return;
    this.gone.push(this.agg[slot]!, key, this.start[slot]!, this.end[slot]!);
    this.key[slot] = undefined;
    this.count--;
  }

  /**
   * The change set of the windows the core just serialized (`snap`, its changed
   * windows), with the registries' key strings and group values (`keysOf[agg][keyId]`,
   * `valuesOf[agg][keyId]`) resolved now; marks them persisted. The change set shares a
   * buffer with the next take(): materialize it before then.
   */
  take(snap: SnapRegion, keysOf: ReadonlyArray<ReadonlyArray<string | undefined>>, valuesOf: ReadonlyArray<ReadonlyArray<readonly string[] | undefined>>): ChangeSet {
    const n = snap.count;
    // Buffers and arrays reused from one take to the next: memory touched for the first
    // time costs a page fault per 4 KiB, which on some machines is most of a barrier's
    // time. At most one change set is pending at a time (one checkpoint in flight), and it
    // is materialized before the next take.
    if (this.copyBuffer.length < snap.length) this.copyBuffer = Buffer.allocUnsafeSlow(Math.max(snap.length, 2 * this.copyBuffer.length));
    const copy = this.copyBuffer.subarray(0, snap.length);
    copy.set(snap.bytes.subarray(snap.base, snap.base + snap.length));
    if (this.offsetsBuffer.length < n) {
      const cap = Math.max(n, 2 * this.offsetsBuffer.length);
      this.offsetsBuffer = new Uint32Array(cap);
      this.lengthsBuffer = new Uint32Array(cap);
      this.aggsBuffer = new Uint32Array(cap);
      this.startsBuffer = new Float64Array(cap);
      this.endsBuffer = new Float64Array(cap);
    }
    const offsets = this.offsetsBuffer, lengths = this.lengthsBuffer, aggs = this.aggsBuffer;
    const starts = this.startsBuffer, ends = this.endsBuffer;
    // Reused like the buffer: filling fresh arrays of 100,000 references costs more
    // than the rest of the barrier together.
    const keys = this.keysBuffer, values = this.valuesBuffer;
    while (keys.length < n) {
      keys.push('');
      values.push(NO_VALUES);
    }
    const u32 = snap.u32, f64 = snap.f64;
    const gone = this.gone;
    // In locals: the loop reads them per window, and nothing in it can change them.
    if (n > 0) this.ensure(snap.maxSlot ?? 0);
    let pAgg = this.agg, pStart = this.start, pEnd = this.end;
    const pKey = this.key;
    let count = this.count;
    let off = 0;
    for (let k = 0; k < n; k++) {
      const w = (snap.base + off) >>> 2, d = (snap.base + off) >>> 3;
      const a = u32[w + SNAP_AGG_W]!, keyId = u32[w + SNAP_KEY_W]!, len = u32[w + SNAP_LEN_W]!;
      const slot = u32[w + SNAP_SLOT_W]!;
      const start = f64[d + SNAP_START_D]!, end = f64[d + SNAP_END_D]!;
      const key = keysOf[a]![keyId]!;
      offsets[k] = off;
      lengths[k] = len;
      aggs[k] = a;
      starts[k] = start;
      ends[k] = end;
      keys[k] = key;
      values[k] = valuesOf[a]![keyId]!;
      if (slot >= pAgg.length) {
        this.ensure(slot);
        pAgg = this.agg;
        pStart = this.start;
        pEnd = this.end;
      }
      const old = pKey[slot];
      if (old === undefined) count++;
      else if (old !== key || pStart[slot] !== start || pEnd[slot] !== end || pAgg[slot] !== a) gone.push(pAgg[slot]!, old, pStart[slot]!, pEnd[slot]!);
      pAgg[slot] = a;
      pKey[slot] = key;
      pStart[slot] = start;
      pEnd[slot] = end;
      off += SNAP_HEADER + ((len + 7) & ~7);
    }
    this.count = count;
    this.gone = new GoneWindows();
    return new ChangeSet(this.names, copy, offsets, lengths, starts, ends, aggs, n, keys, values, gone, this.headers);
  }

}
