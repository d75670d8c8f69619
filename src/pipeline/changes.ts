// The window-state changes a checkpoint takes, in two parts (Flink's asynchronous
// snapshots): `PersistedWindows.take()` runs in the checkpoint's barrier, while
// processing waits, and only copies; `ChangeSet.encode()` writes the state keys and
// values later, while processing goes on, straight into a change batch (bytes,
// src/state/batch.ts) that the state thread stages: no object per window.
//
// The barrier's work is proportional to the changed windows but allocation-free per
// window apart from one reference per array: the core serializes the changed windows
// into its snap region (assembly/snapshot.ts), one memcpy copies that region out, and
// the windows' identities (aggregation, key string, group values, start, end) are read
// into plain arrays. Key strings are captured here, not key ids: an id may be freed and
// given to another key before the checkpoint completes.
import { Layout } from '../core/wasm';
import { ChangeBatchWriter, readChangeBatch } from '../state/batch';

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

function stateHeader(name: Buffer, values: readonly string[]): Buffer {
  const parts = [name, ...values.map((v) => Buffer.from(v, 'utf8'))];
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

const COLON = 0x3a, UNDERSCORE = 0x5f, MINUS = 0x2d, ZERO_DIGIT = 0x30;
/** Bytes of a number as JavaScript writes it (String(x)): at most 24 ("-1.2345678901234567e+308"). */
const NUMBER_MAX = 24;

/** Writes `s` as UTF-8 at `p` (room for 3 bytes per UTF-16 unit reserved); returns the end. ASCII without a native call. */
function writeString(b: Buffer, p: number, s: string): number {
  let q = p;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c >= 0x80) return p + b.write(s, p, 'utf8');
    b[q++] = c;
  }
  return q;
}

/** Writes the digits of an integer 0 <= v < 1e8 at `p` (int32 arithmetic); returns the end. */
function writeDigits(b: Buffer, p: number, v: number): number {
  let n = 1;
  for (let t = v; t >= 10; t = (t / 10) | 0) n++;
  for (let q = p + n - 1; q >= p; q--) {
    const d = (v / 10) | 0;
    b[q] = ZERO_DIGIT + v - d * 10;
    v = d;
  }
  return p + n;
}

/**
 * Writes String(x) at `p`; returns the end. Safe integers (window bounds in ms) digit
 * by digit without a string, in two halves of 8 digits at most: a double's % is slow.
 */
function writeNumber(b: Buffer, p: number, x: number): number {
  if (!Number.isSafeInteger(x)) return p + b.write(String(x), p, 'latin1');
  if (x < 0) {
    b[p++] = MINUS;
    x = -x;
  }
  if (x < 1e8) return writeDigits(b, p, x);
  const hi = Math.floor(x / 1e8);
  p = writeDigits(b, p, hi);
  // The low 8 digits, leading zeros included (x - hi × 1e8 is exact below 2^53).
  let v = x - hi * 1e8;
  for (let q = p + 7; q >= p; q--) {
    const d = (v / 10) | 0;
    b[q] = ZERO_DIGIT + v - d * 10;
    v = d;
  }
  return p + 8;
}

/** Writes the state key `name:key:start_end` (types.ts stateKey) at `p`; returns the end. */
function writeStateKey(b: Buffer, p: number, name: Buffer, key: string, start: number, end: number): number {
  b.set(name, p);
  p += name.length;
  b[p++] = COLON;
  p = writeString(b, p, key);
  b[p++] = COLON;
  p = writeNumber(b, p, start);
  b[p++] = UNDERSCORE;
  return writeNumber(b, p, end);
}

/**
 * The windows changed (and gone) between two checkpoint barriers, copied out of the
 * core: immutable, independent of anything the operator does afterwards.
 */
export class ChangeSet {
  constructor(
    /** The aggregations' names, UTF-8. */
    private readonly names: readonly Buffer[],
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

  /** Records the change set encodes to: its deletes (indexes 0 to deletes - 1), then its puts. */
  get size(): number {
    return this.gone.key.length + this.n;
  }

  /** A first guess of the encoded size in bytes (the writer grows past it if need be). */
  get bytesHint(): number {
    return this.snap.length + 128 * this.size;
  }

  /**
   * Writes records [from, to) (see size) as state keys and values to `w`. Encoding
   * 0 to size in order and staging the batch gives, applied to the state of the
   * previous change set, exactly the windows live at the barrier: the deletes come
   * first, so that a key both gone and put (a window purged, then opened again) ends
   * up put.
   */
  encode(w: ChangeBatchWriter, from: number, to: number): void {
    const g = this.gone, names = this.names, nGone = g.key.length;
    for (let i = from; i < Math.min(to, nGone); i++) {
      const name = names[g.agg[i]!]!, key = g.key[i]!;
      w.start(name.length + 3 * key.length + 3 + 2 * NUMBER_MAX);
      w.pos = writeStateKey(w.buf, w.pos, name, key, g.start[i]!, g.end[i]!);
      w.endDelete();
    }
    const headers = this.headers, snap = this.snap;
    for (let k = Math.max(from, nGone) - nGone; k < to - nGone; k++) {
      const a = this.aggs[k]!, name = names[a]!, key = this.keys[k]!, vals = this.values[k]!;
      const start = this.starts[k]!, end = this.ends[k]!;
      let head = headers.get(vals);
      if (head === undefined) headers.set(vals, (head = stateHeader(name, vals)));
      const len = this.lengths[k]!, off = this.offsets[k]! + SNAP_HEADER;
      w.start(name.length + 3 * key.length + 3 + 2 * NUMBER_MAX + head.length + 16 + len);
      const b = w.buf;
      w.pos = writeStateKey(b, w.pos, name, key, start, end);
      w.endKey();
      let p = w.pos;
      b.set(head, p);
      p += head.length;
      b.writeDoubleLE(start, p);
      b.writeDoubleLE(end, p + 8);
      p += 16;
      // A plain Uint8Array view: Buffer.subarray costs twice as much per window.
      b.set(new Uint8Array(snap.buffer, snap.byteOffset + off, len), p);
      w.pos = p + len;
      w.endPut();
    }
  }

  /**
   * The state keys and values as objects (tests, snapshot()): what encode() writes.
   * Applying the deletes, then the puts, to the state of the previous change set gives
   * exactly the windows live at the barrier.
   */
  materialize(): StateChanges {
    const w = new ChangeBatchWriter(this.bytesHint);
    this.encode(w, 0, this.size);
    const puts: Array<[string, Buffer]> = [];
    const deletes: string[] = [];
    readChangeBatch(w.finish(), (key, value) => (value === null ? deletes.push(key) : puts.push([key, value])));
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
  /** The aggregations' names, UTF-8. */
  private readonly names: readonly Buffer[];

  constructor(
    names: readonly string[],
    /** Caches the encoded head of a state value per group-values array (see ChangeSet). */
    private readonly headers = new WeakMap<readonly string[], Buffer>(),
  ) {
    this.names = names.map((n) => Buffer.from(n, 'utf8'));
  }

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
   * buffer with the next take(): encode it before then.
   */
  take(snap: SnapRegion, keysOf: ReadonlyArray<ReadonlyArray<string | undefined>>, valuesOf: ReadonlyArray<ReadonlyArray<readonly string[] | undefined>>): ChangeSet {
    const n = snap.count;
    // Buffers and arrays reused from one take to the next: memory touched for the first
    // time costs a page fault per 4 KiB, which on some machines is most of a barrier's
    // time. At most one change set is pending at a time (one checkpoint in flight), and it
    // is encoded before the next take.
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
      // Most changed windows keep their key: a reference store less (each costs more while the GC marks).
      if (old !== key) pKey[slot] = key;
      pStart[slot] = start;
      pEnd[slot] = end;
      off += SNAP_HEADER + ((len + 7) & ~7);
    }
    this.count = count;
    this.gone = new GoneWindows();
    return new ChangeSet(this.names, copy, offsets, lengths, starts, ends, aggs, n, keys, values, gone, this.headers);
  }

}
