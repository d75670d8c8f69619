// The window-state changes a checkpoint takes, in two parts (Flink's asynchronous
// snapshots): `PersistedWindows.take()` runs in the checkpoint's barrier, while
// processing waits; `ChangeSet.encode()` writes the state keys and values later,
// while processing goes on, straight into a change batch (bytes, src/state/batch.ts)
// that the state thread stages: no object per window.
//
// The barrier handles numbers only. The core writes a header per changed window into
// its changes region (assembly/snapshot.ts), which stays until the next barrier; one
// pass over the headers (aggregation, key id, slot, window bounds) finds the persisted
// windows they replace. No state byte is copied and no string touched: the core
// writes each window's bytes (its body) later, copy on write (when the change set is
// encoded, or first thing when the window changes again before that), and the change
// set turns key ids into key strings when it is encoded. Until then the operator frees
// no key id (WindowOperator: no key sweep while a change set is not encoded), so an id
// the change set names cannot be given to another key in between.
import { KeyBlockTables, Layout, WorkBlock, type SnapRegion, type WasmCore } from '../core/wasm';
import { ChangeBatchWriter, readChangeBatch } from '../state/batch';
import type { KeyRegistry } from './keys';

const { SNAP, SNAP_HEADER, ENCODE } = Layout;
// Field offsets of a snap record in u32 words and f64 slots from its start.
const SNAP_AGG_W = SNAP.AGG / 4, SNAP_KEY_W = SNAP.KEY / 4, SNAP_LEN_W = SNAP.LEN / 4, SNAP_SLOT_W = SNAP.SLOT / 4;
const SNAP_START_D = SNAP.START / 8, SNAP_END_D = SNAP.END / 8;
/** Header words per snap record. */
const HEAD_W = SNAP_HEADER / 4;
/** No window persisted from the slot (PersistedWindows), or a legacy key string instead of a key id (MovedWindows). */
const NONE = 0xffffffff;

/** Changes of the window state since the last drain, at the level of state keys. */
export interface StateChanges {
  /** Windows created or changed: (state key, value). */
  puts: Array<[string, Buffer]>;
  /** State keys no window holds any more (purged, merged away, or a session that grew). */
  deletes: string[];
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

/** The key strings and group values of each aggregation's key ids (the registries' own arrays). */
export interface KeyTables {
  keys: ReadonlyArray<ReadonlyArray<string | undefined>>;
  values: ReadonlyArray<ReadonlyArray<readonly string[] | undefined>>;
}

/**
 * The windows changed (and gone) between two checkpoint barriers: the records of the
 * core's changes region and the persisted windows they replace. It holds until the
 * next take() of its PersistedWindows (encode() throws after that), and its key ids
 * mean the same keys until it is encoded (see the top of this file).
 */
export class ChangeSet {
  /** Whether every record has been encoded: the key ids it names may be freed. */
  encoded: boolean;
  constructor(
    /** The aggregations' names, UTF-8. */
    private readonly names: readonly Buffer[],
    private readonly region: SnapRegion,
    private readonly tables: KeyTables,
    private readonly gone: GoneWindows,
    private readonly moved: MovedWindows,
    /** The start of each key's state keys and the head of its state values, shared by the change sets of one operator. */
    private readonly parts: StateKeyParts,
    private readonly owner: PersistedWindows,
    private readonly take: number,
  ) {
    this.encoded = this.size === 0;
  }

  /** Records the change set encodes to: its deletes (indexes 0 to deletes - 1), then its puts. */
  get size(): number {
    return this.gone.key.length + this.moved.n + this.region.count;
  }

  /** A first guess of the encoded size in bytes (the writer grows past it if need be). */
  get bytesHint(): number {
    return this.region.bodyLength + 128 * this.size;
  }

  /**
   * Writes records [from, to) (see size) as state keys and values to `w`. Encoding
   * 0 to size in order and staging the batch gives, applied to the state of the
   * previous change set, exactly the windows live at the barrier: the deletes come
   * first, so that a key both gone and put (a window purged, then opened again) ends
   * up put.
   */
  encode(w: ChangeBatchWriter, from: number, to: number): void {
    if (!this.owner.holds(this.take)) throw new Error('a change set must be encoded before the next take of changes');
    const names = this.names, g = this.gone, nGone = g.key.length;
    for (let i = from; i < Math.min(to, nGone); i++) this.writeDelete(w, names[g.agg[i]!]!, g.key[i]!, g.start[i]!, g.end[i]!);
    const m = this.moved, nDeletes = nGone + m.n;
    const j0 = Math.max(from, nGone) - nGone, j1 = Math.min(to, nDeletes) - nGone;
    if (j0 < j1) {
      // Windows restored from a legacy key string are deleted under that string.
      if (m.legacy.size > 0) for (let j = j0; j < j1; j++) if (m.key[j] === NONE) this.writeDelete(w, names[m.agg[j]!]!, m.legacy.get(j)!, m.start[j]!, m.end[j]!);
      this.parts.encodeDeletes(m, j0, j1, w);
    }
    const first = Math.max(from, nDeletes) - nDeletes, last = to - nDeletes;
    if (first < last) this.encodePuts(w, first, last);
    if (to >= this.size) this.encoded = true;
  }

  private writeDelete(w: ChangeBatchWriter, name: Buffer, key: string, start: number, end: number): void {
    w.start(name.length + 3 * key.length + 3 + 2 * NUMBER_MAX);
    w.pos = writeStateKey(w.buf, w.pos, name, key, start, end);
    w.endDelete();
  }

  /** Puts [first, last): the region's records in order, their bodies written first. */
  private encodePuts(w: ChangeBatchWriter, first: number, last: number): void {
    this.region.fill(first, last);
    this.parts.encode(this.region, w, first, last);
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

/** Windows no slot holds any more, with their key strings, as parallel arrays (no object per window). */
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
 * Persisted windows a take found replaced by a changed one in the same slot (a
 * session whose start or end moved, a window restored from a legacy key): by key id,
 * read when the change set is encoded; a legacy key has NONE as its id and its string
 * in `legacy`. Typed arrays reused from one take to the next.
 */
class MovedWindows {
  n = 0;
  agg = new Uint32Array(64);
  key = new Uint32Array(64);
  start = new Float64Array(64);
  end = new Float64Array(64);
  /** By index: the key strings of legacy keys. */
  legacy = new Map<number, string>();

  clear(): void {
    this.n = 0;
    if (this.legacy.size > 0) this.legacy = new Map();
  }

  /** Room for `cap` entries: persist() writes them in place, then sets n. */
  reserve(cap: number): void {
    if (cap <= this.agg.length) return;
    cap = Math.max(cap, 2 * this.agg.length);
    const agg = new Uint32Array(cap), key = new Uint32Array(cap), start = new Float64Array(cap), end = new Float64Array(cap);
    agg.set(this.agg);
    key.set(this.key);
    start.set(this.start);
    end.set(this.end);
    this.agg = agg;
    this.key = key;
    this.start = start;
    this.end = end;
  }
}

/**
 * Which window each core slot is persisted as (as of the last change set or the
 * restore), so that a change set can say which state keys went away: a purged window,
 * or a session whose start or end moved (it is stored under a new key). Typed arrays
 * indexed by slot, grown by doubling: a barrier touches them once per changed window.
 *
 * A slot holds its key id as long as it is live, and every slot freed is released
 * here before the operator frees any key id (its purge record is read first): a
 * persisted key id names its key until the slot is released.
 */
export class PersistedWindows {
  private agg = new Uint32Array(0);
  /** Key id by slot; NONE: no window persisted from the slot. */
  private key = new Uint32Array(0);
  private start = new Float64Array(0);
  private end = new Float64Array(0);
  /** Slots persisted under a legacy key string (restored), not their key id's string. */
  private readonly legacy = new Map<number, string>();
  /** Persisted windows no slot holds any more since the last take(). */
  private gone = new GoneWindows();
  private readonly moved = new MovedWindows();
  private count = 0;
  private takes = 0;
  /** The aggregations' names, UTF-8. */
  private readonly names: readonly Buffer[];

  constructor(
    names: readonly string[],
    private readonly tables: KeyTables,
    /** Each key's state key start and state value head (see ChangeSet). */
    private readonly parts: StateKeyParts,
  ) {
    this.names = names.map((n) => Buffer.from(n, 'utf8'));
  }

  /** Whether any window is persisted (nothing to track before the first checkpoint). */
  get empty(): boolean {
    return this.count === 0;
  }

  /** Whether the change set of take number `take` still holds (no take since). */
  holds(take: number): boolean {
    return take === this.takes;
  }

  /**
   * Room for every slot below `slots` (the core's slot capacity). The operator calls it
   * after each step, so that the arrays grow with the slots, not in a barrier.
   */
  reserve(slots: number): void {
    if (slots > this.key.length) this.ensure(slots - 1);
  }

  private ensure(slot: number): void {
    if (slot < this.key.length) return;
    const cap = Math.max(slot + 1, this.key.length * 2, 1024);
    const agg = new Uint32Array(cap), key = new Uint32Array(cap), start = new Float64Array(cap), end = new Float64Array(cap);
    const old = this.key.length;
    agg.set(this.agg);
    key.set(this.key);
    start.set(this.start);
    end.set(this.end);
    // Written now, to the end: a page's first write costs a fault, here rather than in a barrier.
    agg.fill(0, old);
    key.fill(NONE, old);
    start.fill(0, old);
    end.fill(0, old);
    this.agg = agg;
    this.key = key;
    this.start = start;
    this.end = end;
  }

  /** A restored window: `slot` holds it as persisted, under its key id's string or under `legacyKey`. */
  set(slot: number, agg: number, keyId: number, start: number, end: number, legacyKey?: string): void {
    this.ensure(slot);
    if (this.key[slot] === NONE) this.count++;
    this.agg[slot] = agg;
    this.key[slot] = keyId;
    this.start[slot] = start;
    this.end[slot] = end;
    if (legacyKey !== undefined) this.legacy.set(slot, legacyKey);
    else this.legacy.delete(slot);
  }

  /** The window in `slot` was purged: its persisted state key goes at the next take(). Before the key id is freed. */
  release(slot: number): void {
    if (slot >= this.key.length) return;
    const id = this.key[slot]!;
    if (id === NONE) return;
    const a = this.agg[slot]!;
    let key = this.tables.keys[a]![id]!;
    if (this.legacy.size > 0 && this.legacy.has(slot)) {
      key = this.legacy.get(slot)!;
      this.legacy.delete(slot);
    }
    this.gone.push(a, key, this.start[slot]!, this.end[slot]!);
    this.key[slot] = NONE;
    this.count--;
  }

  /**
   * The change set of the windows the core just serialized (`region`, its changed
   * windows); marks them persisted. Numbers only: a read of each record's header and
   * a few typed-array writes per window. The change set holds until the next take().
   */
  take(region: SnapRegion): ChangeSet {
    const moved = this.moved;
    moved.clear();
    if (region.count > 0) {
      this.ensure(region.slots - 1);
      const { u32, f64 } = region.memory();
      this.count += persist(u32, f64, region.base, region.count, this.agg, this.key, this.start, this.end, this.legacy, moved);
    }
    const gone = this.gone;
    this.gone = new GoneWindows();
    return new ChangeSet(this.names, region, this.tables, gone, moved, this.parts, this, ++this.takes);
  }
}

/**
 * The barrier's loop over the `n` records from `base` (PersistedWindows.take): each
 * record's window becomes its slot's persisted one, and the one it replaces, if any
 * and not the same, goes to `moved`. Returns how many slots had none. A function of
 * its own, with nothing after its loop: V8 optimizes it once and keeps it (code after
 * a loop that an optimization compiled before it ran is thrown away when first run).
 * Every record runs the same code, moved or not (each compare, and the stores into
 * `moved` at its end, which only a moved window keeps by counting itself): V8
 * optimizes this loop during a first checkpoint of new windows only, and code that
 * never ran then would be thrown away at the first moved window (the second
 * checkpoint, with sessions), the rest of that barrier interpreted (25 to 80 ms for
 * 30,000 windows).
 */
function persist(
  u32: Uint32Array,
  f64: Float64Array,
  base: number,
  n: number,
  pAgg: Uint32Array,
  pKey: Uint32Array,
  pStart: Float64Array,
  pEnd: Float64Array,
  legacy: Map<number, string>,
  moved: MovedWindows,
): number {
  let added = 0;
  const anyLegacy = legacy.size > 0;
  moved.reserve(moved.n + n + 1);
  const mAgg = moved.agg, mKey = moved.key, mStart = moved.start, mEnd = moved.end;
  let m = moved.n;
  for (let k = 0; k < n; k++) {
    const r = base + k * SNAP_HEADER, rw = r >>> 2, rd = r >>> 3;
    const a = u32[rw + SNAP_AGG_W]!, id = u32[rw + SNAP_KEY_W]!, slot = u32[rw + SNAP_SLOT_W]!;
    const start = f64[rd + SNAP_START_D]!, end = f64[rd + SNAP_END_D]!;
    const old = pKey[slot]!, oldAgg = pAgg[slot]!, oldStart = pStart[slot]!, oldEnd = pEnd[slot]!;
    const otherKey = old !== id, otherStart = oldStart !== start, otherEnd = oldEnd !== end, otherAgg = oldAgg !== a;
    const fresh = old === NONE;
    added += fresh ? 1 : 0;
    const legacyKey = anyLegacy && !fresh ? legacy.get(slot) : undefined;
    mAgg[m] = oldAgg;
    mKey[m] = legacyKey === undefined ? old : NONE;
    mStart[m] = oldStart;
    mEnd[m] = oldEnd;
    if (legacyKey !== undefined) {
      // Stored under a legacy key string: that key goes, the window is put under its key now.
      moved.legacy.set(m++, legacyKey);
      legacy.delete(slot);
    } else m += !fresh && (otherKey || otherStart || otherEnd || otherAgg) ? 1 : 0;
    // In the loop, not after it (see above).
    moved.n = m;
    pAgg[slot] = a;
    pKey[slot] = id;
    pStart[slot] = start;
    pEnd[slot] = end;
  }
  return added;
}

/**
 * Per (aggregation, key id), in the core's memory: the start of the key's state keys
 * (`name:key:`) and the head of its state values (stateHeader), written once per key,
 * from which the core writes a checkpoint's puts (WasmCore.encodeStatePuts): the main
 * thread's share of a checkpoint, a few hundred nanoseconds per changed window. A
 * key's parts go when its registry releases the id.
 */
export class StateKeyParts {
  /** Per key id: its parts' block, the key part's length, the header's length. */
  private readonly parts: KeyBlockTables;
  /** Where the records are written, in the core's memory. */
  private readonly block: WorkBlock;

  constructor(
    private readonly core: WasmCore,
    /** The aggregations' names, UTF-8. */
    private readonly names: readonly Buffer[],
    private readonly keys: KeyTables,
    registries: readonly KeyRegistry[],
  ) {
    this.parts = new KeyBlockTables(core, names.length, 3);
    this.block = new WorkBlock(core);
    registries.forEach((reg, a) => reg.onRelease((id) => this.parts.drop(a, id)));
  }

  /** Writes the deletes of moved windows [j0, j1) to `w`, those under a legacy key string (NONE) left out. */
  encodeDeletes(m: MovedWindows, j0: number, j1: number, w: ChangeBatchWriter): void {
    let n = 0, bound = ENCODE.SLACK;
    for (let j = j0; j < j1; j++) {
      const a = m.agg[j]!, id = m.key[j]!;
      if (id === NONE) continue;
      const parts = this.partsOf(a, id);
      bound += 24 + 8 + parts + 2 * ENCODE.NUMBER_MAX + 1;
      n++;
    }
    if (n === 0) return;
    const recs = this.block.reserve(bound), out = recs + 24 * n;
    const u32 = this.core.words(), f64 = this.core.doubles();
    let r = recs;
    for (let j = j0; j < j1; j++) {
      const id = m.key[j]!;
      if (id === NONE) continue;
      u32[r >>> 2] = m.agg[j]!;
      u32[(r >>> 2) + 1] = id;
      f64[(r >>> 3) + 1] = m.start[j]!;
      f64[(r >>> 3) + 2] = m.end[j]!;
      r += 24;
    }
    const bytes = this.core.encodeStateDeletes(recs, n, this.parts.tables, out);
    w.append(this.core.bytes().subarray(out, out + bytes), n);
  }

  /** Writes records [first, last) of `region` (their bodies written) as puts to `w`. */
  encode(region: SnapRegion, w: ChangeBatchWriter, first: number, last: number): void {
    if (first >= last) return;
    // Every key's parts first (allocating may grow memory: views are taken again), and the room the records need.
    let u32 = region.memory().u32;
    const hw = region.base >>> 2;
    let bound = ENCODE.SLACK;
    for (let k = first; k < last; k++) {
      const rw = hw + k * HEAD_W;
      const a = u32[rw + SNAP_AGG_W]!, id = u32[rw + SNAP_KEY_W]!;
      const installed = this.parts.word(a, id, 0) !== 0;
      const parts = this.partsOf(a, id);
      if (!installed) u32 = region.memory().u32;
      bound += 8 + parts + 2 * ENCODE.NUMBER_MAX + 18 + u32[rw + SNAP_LEN_W]!;
    }
    const out = this.block.reserve(bound);
    const n = this.core.encodeStatePuts(region, first, last, this.parts.tables, out);
    w.append(this.core.bytes().subarray(out, out + n), last - first);
  }

  /** Bytes of key id `id`'s parts, written first if it has none. */
  private partsOf(a: number, id: number): number {
    if (this.parts.word(a, id, 0) !== 0) return this.parts.word(a, id, 1) + this.parts.word(a, id, 2);
    const name = this.names[a]!, key = this.keys.keys[a]![id]!, values = this.keys.values[a]![id]!;
    const head = stateHeader(name, values);
    const keyPart = Buffer.concat([name, Buffer.from(':' + key + ':', 'utf8')]);
    const ptr = this.core.alloc(keyPart.length + head.length);
    const bytes = this.core.bytes();
    bytes.set(keyPart, ptr);
    bytes.set(head, ptr + keyPart.length);
    this.parts.set(a, id, ptr, keyPart.length, head.length);
    return keyPart.length + head.length;
  }
}
