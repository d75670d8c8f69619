// Loads build/core.wasm and wraps its ABI (assembly/index.ts) in typed methods.
// Views into linear memory are re-created whenever memory has grown: every call
// into the core may allocate.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { FIELD_BYTES, type ScanSpec } from './pathspec';
import type { ScannedFields } from '../pipeline/types';

/** Offsets and sizes mirrored from assembly/layout.ts. */
export const Layout = {
  RES_BYTES: 104,
  RES: { AGG: 0, KEY: 4, FLAGS: 8, SID: 12, START: 16, END: 24, COUNT: 32, SUM: 40, MIN: 48, MAX: 56, AVG: 64, STDDEV: 72, P50: 80, P95: 88, P99: 96 },
  RES_LATE: 1,
  GONE_BYTES: 32,
  GONE: { AGG: 0, KEY: 4, START: 8, END: 16, SLOT: 24 },
  /** Snapshot record header; BODY is its slot serialization's offset in the region's body area, LEN its length. */
  SNAP_HEADER: 40,
  SNAP: { AGG: 0, KEY: 4, SLOT: 8, LEN: 12, START: 16, END: 24, BODY: 32 },
  SER_VERSION: 2,
  NO_SLOT: 0xffffffff,
  EV: { OK: 0, INVALID: 1, PARTLY_LATE: 2, LATE: 3 },
  WIN: { tumbling: 0, sliding: 1, session: 2 },
  /**
   * JSON text (assembly/dtoa.ts): most bytes of one number, most bytes of a result line
   * besides its prefix, and the spare room an output block needs past its last byte.
   */
  ENCODE: { NUMBER_MAX: 25, LINE_MAX: 416, SLACK: 64 },
} as const;

interface CoreExports {
  memory: WebAssembly.Memory;
  init(cap: number, aggregations: number): void;
  configure(a: number, kind: number, sizeMs: number, slideMs: number, latenessMs: number): void;
  tsPtr(): number;
  wmPtr(): number;
  capacity(): number;
  valPtr(a: number): number;
  keyPtr(a: number): number;
  statusPtr(a: number): number;
  outPtr(): number;
  outLength(): number;
  gonePtr(): number;
  goneLength(): number;
  resetOutput(): void;
  recordGone(on: number): void;
  computeWatermarks(n: number, maxBefore: number, oooMs: number, otherMin: number, floorW: number): number;
  processWindows(a: number, n: number): number;
  processSessions(a: number, n: number): number;
  /** 1 when it stopped at the fire limit with windows still due (see setFireLimit). */
  advance(a: number, w: number): number;
  setFireLimit(n: number): void;
  trackChanges(on: boolean, listLive: boolean): void;
  changedSlots(): number;
  serializeChanges(): number;
  serializeAll(): number;
  snapFill(from: number, to: number): void;
  snapPtr(): number;
  snapCount(): number;
  snapBodyPtr(): number;
  snapBodyLen(): number;
  restoreWindow(a: number, keyId: number, start: number, end: number, w: number, ptr: number, len: number): number;
  openWindows(a: number): number;
  nextFire(a: number): number;
  slotBytes(): number;
  slotCapacity(): number;
  reserveSlots(n: number): void;
  alloc(size: number): number;
  free(ptr: number): void;
  decodeInit(config: number, aggregations: number): void;
  decodeBatch(bytes: number, bounds: number, n: number, spec: number, fields: number, status: number): number;
  decodeFields(bytes: number, n: number, fields: number, status: number): number;
  scanRecords(bytes: number, bounds: number, n: number, spec: number, fields: number, status: number): void;
  fixPtr(): number;
  keyTable(a: number): number;
  internCount(t: number): number;
  internLive(t: number): number;
  internBytes(t: number, id: number): number;
  internLen(t: number, id: number): number;
  formatDoubles(src: number, n: number, out: number, bounds: number): number;
  encodeResults(res: number, n: number, prefixes: number, heads: number, emittedAt: number, out: number, bounds: number): number;
  encodeStatePuts(heads: number, first: number, last: number, bodies: number, tables: number, out: number): number;
  encodeStateDeletes(recs: number, n: number, tables: number, out: number): number;
  internRemove(t: number, id: number): number;
  internFresh(t: number): number;
  internFreshCount(t: number): number;
  internFreshReset(t: number): void;
  markLiveKeys(a: number, ptr: number, cap: number): number;
}

let compiled: WebAssembly.Module | undefined;

/** The release build's bytes (or WEIR_WASM=debug: the debug build's). */
function wasmBytes(): Buffer {
  const file = process.env['WEIR_WASM'] === 'debug' ? 'core.debug.wasm' : 'core.wasm';
  return readFileSync(join(__dirname, '..', '..', '..', 'build', file));
}

/** The compiled core. */
function wasmModule(): WebAssembly.Module {
  return (compiled ??= new WebAssembly.Module(wasmBytes()));
}

/** A fresh instance of the core; `what` names it in an abort's message. */
function instantiate(what: string, module = wasmModule()): CoreExports {
  const instance = new WebAssembly.Instance(module, {
    env: {
      abort(msg: number, file: number, line: number, col: number): never {
        throw new Error(`wasm ${what} aborted at ${line}:${col} (msg ${msg}, file ${file})`);
      },
    },
  });
  return instance.exports as unknown as CoreExports;
}

/** Bytes BatchScanner.scan writes for n records scanned for `paths` paths: their field records, then their status bytes. */
export function scanBytes(n: number, paths: number): number {
  return n * (paths * FIELD_BYTES + 1);
}

/**
 * The scan BatchScanner.scan wrote from byte `at` of `buf` for n records, as a batch
 * carries it (RecordBatch.scanned); its token offsets count from byte `base` of the batch's buffer.
 */
export function scannedAt(buf: ArrayBuffer, at: number, n: number, paths: number, base: number): ScannedFields {
  const fieldBytes = n * paths * FIELD_BYTES;
  return { fields: new Uint8Array(buf, at, fieldBytes), status: new Uint8Array(buf, at + fieldBytes, n), base, paths };
}

/**
 * The core's JSON scanner (assembly/scan.ts) in an instance of its own, for the Kafka
 * consumer's thread: it scans each batch as the operator's ScanDecoder would, with the
 * same spec, so that the operator thread only decodes the fields (decodeFields).
 */
export class BatchScanner {
  private readonly x: CoreExports;
  private readonly spec: number;
  private input = 0;
  private inputCap = 0;
  private work = 0;
  private workCap = 0;

  private constructor(
    private readonly plan: ScanSpec,
    module: WebAssembly.Module,
  ) {
    this.x = instantiate('scanner', module);
    this.spec = this.x.alloc(plan.spec.length);
    new Uint8Array(this.x.memory.buffer).set(plan.spec, this.spec);
  }

  /** A scanner of records by `plan`, the core compiled in the background (a thread's start does not wait for it). */
  static async create(plan: ScanSpec): Promise<BatchScanner> {
    return new BatchScanner(plan, compiled ?? (await WebAssembly.compile(wasmBytes())));
  }

  /** Bytes scan() writes for n records: their field records, then their status bytes. */
  bytesFor(n: number): number {
    return scanBytes(n, this.plan.paths);
  }

  /**
   * Scans records buf[starts[k], ends[k]) (k < n, increasing and non-overlapping) with
   * token offsets from starts[0], and writes their field records and then their status
   * bytes (bytesFor(n) in all) to `into`.
   */
  scan(buf: Uint8Array, starts: Uint32Array, ends: Uint32Array, n: number, into: Uint8Array): void {
    const x = this.x;
    const base = starts[0]!;
    const span = ends[n - 1]! - base;
    if (span > this.inputCap) {
      if (this.input !== 0) x.free(this.input);
      this.inputCap = Math.max(span, 2 * this.inputCap, 1 << 20);
      this.input = x.alloc(this.inputCap);
    }
    const fieldBytes = n * this.plan.paths * FIELD_BYTES;
    const need = 8 * n + this.bytesFor(n);
    if (need > this.workCap) {
      if (this.work !== 0) x.free(this.work);
      this.workCap = Math.max(need, 2 * this.workCap);
      this.work = x.alloc(this.workCap);
    }
    const bounds = this.work, fields = bounds + 8 * n, status = fields + fieldBytes;
    new Uint8Array(x.memory.buffer).set(buf.subarray(base, base + span), this.input);
    const words = new Uint32Array(x.memory.buffer, bounds, 2 * n);
    for (let k = 0; k < n; k++) {
      words[2 * k] = starts[k]! - base;
      words[2 * k + 1] = ends[k]! - base;
    }
    x.scanRecords(this.input, bounds, n, this.spec, fields, status);
    // The scan may have grown memory: a view made after it.
    into.set(new Uint8Array(x.memory.buffer, fields, fieldBytes + n));
  }
}

/**
 * What a serialize call wrote: `count` SNAP headers (Layout.SNAP_HEADER bytes each)
 * from `base`, and their bodies (slot serializations) in `bodyLength` bytes from
 * `body`. A body is there once fill() covered its record.
 */
export interface SnapRegion {
  count: number;
  base: number;
  body: number;
  /** Bytes reserved for the bodies: at least what they take. */
  bodyLength: number;
  /** Writes the bodies of records [from, to) not written yet (it may grow memory). */
  fill(from: number, to: number): void;
  /** Every record's slot is below this (the core's slot capacity). */
  slots: number;
  memory(): { bytes: Uint8Array; f64: Float64Array; u32: Uint32Array };
}

/** Batch arrays of one aggregation, as views into linear memory. */
export interface AggViews {
  val: Float64Array;
  key: Uint32Array;
  status: Uint8Array;
}

/**
 * A block of the core's heap for work space (the encoders' output), reused, and
 * replaced by a larger one (double, 64 KB at least) when asked for more.
 */
export class WorkBlock {
  private ptr = 0;
  private size = 0;
  constructor(private readonly core: WasmCore) {}

  /** Its address, at least `bytes` long (what it held is gone when it grows). */
  reserve(bytes: number): number {
    if (bytes > this.size) {
      if (this.ptr !== 0) this.core.free(this.ptr);
      this.size = Math.max(bytes, 2 * this.size, 64 * 1024);
      this.ptr = this.core.alloc(this.size);
    }
    return this.ptr;
  }

  /** Bytes held. */
  get bytes(): number {
    return this.size;
  }
}

/**
 * Per aggregation and key id, an entry of `words` u32 whose first is the address of a
 * block of the core's heap that the entry owns (0: no entry), in per-aggregation tables
 * in the core's memory that the core reads (their addresses at `tables`, u32 per
 * aggregation), mirrored here for TypeScript. Tables grow by doubling as ids do; a
 * registry's release hook drops its id's entry and frees the block.
 */
export class KeyBlockTables {
  /** The tables' addresses, u32 per aggregation, in the core's memory. */
  readonly tables: number;
  /** Per aggregation: its entries, `words` per key id. */
  private readonly mirror: Uint32Array[];
  /** Per aggregation: its table's address (0: none yet). */
  private readonly table: number[];

  constructor(
    private readonly core: WasmCore,
    aggregations: number,
    private readonly words: number,
  ) {
    this.mirror = Array.from({ length: aggregations }, () => new Uint32Array(0));
    this.table = Array.from({ length: aggregations }, () => 0);
    this.tables = core.alloc(Math.max(1, aggregations) * 4);
  }

  /** Word k of key id `id`'s entry (0 without one). */
  word(a: number, id: number, k: number): number {
    return this.mirror[a]![id * this.words + k] ?? 0;
  }

  /** Ids aggregation a's table has room for. */
  capacity(a: number): number {
    return this.mirror[a]!.length / this.words;
  }

  /** Sets key id `id`'s entry: its block's address, then the other words. */
  set(a: number, id: number, ...entry: number[]): void {
    if (id >= this.capacity(a)) this.grow(a, id + 1);
    this.write(a, id, entry);
  }

  /** Drops key id `id`'s entry and frees its block, if it has one. */
  drop(a: number, id: number): void {
    const ptr = this.word(a, id, 0);
    if (ptr === 0) return;
    this.core.free(ptr);
    this.write(a, id, []);
  }

  /** Writes an entry (words it leaves out: 0) here and in the core's table. */
  private write(a: number, id: number, entry: readonly number[]): void {
    const at = id * this.words, u32 = this.core.words(), t = (this.table[a]! >>> 2) + at;
    for (let k = 0; k < this.words; k++) {
      this.mirror[a]![at + k] = entry[k] ?? 0;
      u32[t + k] = entry[k] ?? 0;
    }
  }

  /** Grows aggregation a's table to at least `cap` ids (the core's copy moves). */
  private grow(a: number, cap: number): void {
    const old = this.mirror[a]!;
    const size = Math.max(cap, 2 * this.capacity(a), 256) * this.words;
    const mirror = new Uint32Array(size);
    mirror.set(old);
    this.mirror[a] = mirror;
    const from = this.table[a]!, table = this.core.alloc(size * 4);
    if (from !== 0) this.core.free(from);
    this.table[a] = table;
    const u32 = this.core.words();
    u32.set(mirror, table >>> 2);
    u32[(this.tables >>> 2) + a] = table;
  }
}

/** One instance of the WebAssembly core: the working state of every window. */
export class WasmCore {
  readonly capacity: number;
  private readonly x: CoreExports;
  private buffer: ArrayBuffer;
  private f64!: Float64Array;
  private u32!: Uint32Array;
  private u8!: Uint8Array;
  private mem!: Buffer;
  private tsView!: Float64Array;
  private wmView!: Float64Array;
  private aggViews: AggViews[] = [];
  private scratch = 0;
  private scratchCap = 0;
  /** The block liveKeys marks into. */
  private mark = 0;
  private markCap = 0;

  constructor(capacity: number, windows: ReadonlyArray<{ kind: number; sizeMs: number; slideMs: number; latenessMs: number }>) {
    this.x = instantiate('core');
    this.capacity = capacity;
    this.x.init(capacity, windows.length);
    windows.forEach((w, a) => this.x.configure(a, w.kind, w.sizeMs, w.slideMs, w.latenessMs));
    this.buffer = this.x.memory.buffer;
    this.refresh();
  }

  /** Re-creates every view if memory grew (the old ArrayBuffer is then detached). */
  private refresh(): void {
    const buf = this.x.memory.buffer;
    if (buf === this.buffer && this.tsView !== undefined) return;
    this.buffer = buf;
    this.f64 = new Float64Array(buf);
    this.u32 = new Uint32Array(buf);
    this.u8 = new Uint8Array(buf);
    this.mem = Buffer.from(buf);
    const cap = this.capacity;
    this.tsView = new Float64Array(buf, this.x.tsPtr(), cap);
    this.wmView = new Float64Array(buf, this.x.wmPtr(), cap);
    this.aggViews = this.aggViews.length === 0 ? [] : this.aggViews;
    const n = this.aggViews.length;
    this.aggViews = [];
    for (let a = 0; a < n; a++) this.aggViews.push(this.viewsOf(a));
  }

  private viewsOf(a: number): AggViews {
    return {
      val: new Float64Array(this.buffer, this.x.valPtr(a), this.capacity),
      key: new Uint32Array(this.buffer, this.x.keyPtr(a), this.capacity),
      status: new Uint8Array(this.buffer, this.x.statusPtr(a), this.capacity),
    };
  }

  /** Event times of the batch (NaN = invalid). Valid until the next call into the core. */
  ts(): Float64Array {
    this.refresh();
    return this.tsView;
  }

  /** W before each event of the batch, after computeWatermarks. */
  wm(): Float64Array {
    this.refresh();
    return this.wmView;
  }

  agg(a: number): AggViews {
    this.refresh();
    while (this.aggViews.length <= a) this.aggViews.push(this.viewsOf(this.aggViews.length));
    return this.aggViews[a]!;
  }

  computeWatermarks(n: number, maxBefore: number, oooMs: number, otherMin: number, floorW: number): number {
    return this.x.computeWatermarks(n, maxBefore, oooMs, otherMin, floorW);
  }

  processWindows(a: number, n: number): number {
    return this.x.processWindows(a, n);
  }

  /**
   * Fires and purges what W = w makes due for aggregation `a`. False when done; true
   * when it stopped at the fire limit with more due (nothing purged yet): call again.
   */
  advance(a: number, w: number): boolean {
    return this.x.advance(a, w) !== 0;
  }

  /** Results one advance() emits at most before it stops (undefined: no limit). */
  setFireLimit(n: number | undefined): void {
    this.x.setFireLimit(n === undefined ? 0xffffffff : Math.max(1, n));
  }

  processSessions(a: number, n: number): number {
    return this.x.processSessions(a, n);
  }

  /** Results fired since resetOutput: count and typed views to read them. */
  results(): { count: number; base: number; f64: Float64Array; u32: Uint32Array } {
    this.refresh();
    return { count: this.x.outLength(), base: this.x.outPtr(), f64: this.f64, u32: this.u32 };
  }

  gone(): { count: number; base: number; f64: Float64Array; u32: Uint32Array } {
    this.refresh();
    return { count: this.x.goneLength(), base: this.x.gonePtr(), f64: this.f64, u32: this.u32 };
  }

  resetOutput(): void {
    this.x.resetOutput();
  }

  /** Whether purged windows are recorded for gone() (on at start). */
  recordGone(on: boolean): void {
    this.x.recordGone(on ? 1 : 0);
  }

  openWindows(a: number): number {
    return this.x.openWindows(a);
  }

  /** End (ms) of the earliest unfired window of aggregation `a`, +Infinity for none (sessions: a lower bound). */
  nextFire(a: number): number {
    return this.x.nextFire(a);
  }

  // ─── Checkpoints (assembly/snapshot.ts) ─────────────────────────────────────

  /**
   * Change tracking on or off. Turned on with `listLive`, every live window counts as
   * changed; without, as already persisted (restored).
   */
  trackChanges(on: boolean, listLive: boolean): void {
    this.x.trackChanges(on, listLive);
  }

  /** Every slot index is below this (it grows by doubling, or to what reserveSlots asked). */
  slotCapacity(): number {
    return this.x.slotCapacity();
  }

  /** Grows the slot pool to room for at least n windows, so that restoring n does not grow it again. */
  reserveSlots(n: number): void {
    if (!Number.isInteger(n) || n < 0 || n > 0xffffffff) throw new RangeError(`reserveSlots: ${n} is not a number of windows`);
    this.x.reserveSlots(n);
  }

  /** Entries on the dirty list: an upper bound of the windows changed since the last serializeChanges. */
  changedSlots(): number {
    return this.x.changedSlots();
  }

  /**
   * Takes the windows changed since the last call (or, `all`, every live window) into a
   * snap region. serialize(all) writes every record whole. serialize(false), the
   * checkpoint's barrier, writes the headers only: a window's body is written by
   * fill(), or by the core before the window next changes or goes, as it was at the
   * call (copy on write). The changes region stays where it is until the next
   * serialize(false), whatever the core does in between (serialize(true) writes a
   * region of its own); `memory()` gives views valid until the next call into the core.
   */
  serialize(all: boolean): SnapRegion {
    const count = all ? this.x.serializeAll() : this.x.serializeChanges();
    const x = this.x;
    return {
      count,
      base: x.snapPtr(),
      body: x.snapBodyPtr(),
      bodyLength: x.snapBodyLen(),
      slots: x.slotCapacity(),
      fill: all ? () => {} : (from, to) => x.snapFill(from, to),
      memory: () => this.memory(),
    };
  }

  /** Views of all of linear memory, valid until the next call into the core. */
  private memory(): { bytes: Uint8Array; f64: Float64Array; u32: Uint32Array } {
    this.refresh();
    return { bytes: this.u8, f64: this.f64, u32: this.u32 };
  }

  /**
   * Copies `src` into linear memory in one piece, for restoreWindow(); its address.
   * It stays there until the next stage() or unstage().
   */
  stage(src: Uint8Array): number {
    if (src.length > this.scratchCap) {
      if (this.scratch) this.x.free(this.scratch);
      this.scratchCap = Math.max(src.length, 2 * this.scratchCap, 4096);
      this.scratch = this.x.alloc(this.scratchCap);
    }
    this.refresh();
    this.u8.set(src, this.scratch);
    return this.scratch;
  }

  /**
   * Restores one window from bytes [ptr, ptr + len) of what stage() copied (the core's
   * serialization of its slot), as of watermark w; the slot, or Layout.NO_SLOT if rejected.
   */
  restoreWindow(a: number, keyId: number, start: number, end: number, w: number, ptr: number, len: number): number {
    return this.x.restoreWindow(a, keyId, start, end, w, ptr, len) >>> 0;
  }

  /** Gives a large staging area back to the core's heap (a restore is done). */
  unstage(): void {
    if (this.scratchCap <= 1 << 16) return;
    this.x.free(this.scratch);
    this.scratch = 0;
    this.scratchCap = 0;
  }

  memoryBytes(): number {
    return this.x.memory.buffer.byteLength;
  }

  // ─── Decoding (assembly/decode.ts) ──────────────────────────────────────────

  /** A heap block in linear memory, for TS-owned regions. */
  alloc(size: number): number {
    return this.x.alloc(size);
  }

  free(ptr: number): void {
    this.x.free(ptr);
  }

  /** Copies bytes into linear memory at ptr. */
  write(ptr: number, bytes: Uint8Array): void {
    this.refresh();
    this.u8.set(bytes, ptr);
  }

  /** `text` as UTF-8 at ptr (room for Buffer.byteLength(text) bytes); returns the bytes written. */
  writeUtf8(ptr: number, text: string): number {
    this.refresh();
    return this.mem.write(text, ptr);
  }

  /** Byte view of all of linear memory (valid until the next call into the core). */
  bytes(): Uint8Array {
    this.refresh();
    return this.u8;
  }

  words(): Uint32Array {
    this.refresh();
    return this.u32;
  }

  doubles(): Float64Array {
    this.refresh();
    return this.f64;
  }

  decodeInit(config: number, aggregations: number): void {
    this.x.decodeInit(config, aggregations);
  }

  /** Scans n records and fills ts, val[a], key[a] (raw ids); returns the fixup count. */
  decodeBatch(bytes: number, bounds: number, n: number, spec: number, fields: number, status: number): number {
    return this.x.decodeBatch(bytes, bounds, n, spec, fields, status);
  }

  decodeFields(bytes: number, n: number, fields: number, status: number): number {
    return this.x.decodeFields(bytes, n, fields, status);
  }

  fixPtr(): number {
    return this.x.fixPtr();
  }

  /** The bound of aggregation a's raw key ids (every one in use is below it), and the bytes of one. */
  keyCount(a: number): number {
    return this.x.internCount(this.x.keyTable(a));
  }

  // ─── JSON text (assembly/dtoa.ts) ───────────────────────────────────────────

  /**
   * Writes the n doubles at src (f64[n]) as JSON numbers back to back from `out`, and
   * the end of each (u32[n], relative to out) at `bounds`; returns the bytes written.
   * `out` needs n × ENCODE.NUMBER_MAX + ENCODE.SLACK bytes.
   */
  formatDoubles(src: number, n: number, out: number, bounds: number): number {
    return this.x.formatDoubles(src, n, out, bounds);
  }

  /**
   * Writes the JSON lines of n result records at `res` (each followed by '\n') from
   * `out`, and the line starts (u32[n]) then ends (u32[n]) relative to out at `bounds`.
   * Returns the bytes written. A prefix is its aggregation's head, its key's middle and
   * a fixed tail (assembly/dtoa.ts, Result lines): `heads` holds per aggregation its
   * head's address and length (u32 each), `prefixes` per aggregation (u32) the address
   * of its table of middles: per key id, the middle's address and length (u32 each),
   * for every key id in the records. `out` needs the prefixes' lengths + n ×
   * ENCODE.LINE_MAX + ENCODE.SLACK bytes.
   */
  encodeResults(res: number, n: number, prefixes: number, heads: number, emittedAt: number, out: number, bounds: number): number {
    return this.x.encodeResults(res, n, prefixes, heads, emittedAt, out, bounds);
  }

  /**
   * Writes snap records [first, last) of a changes region (every body written) as
   * change-batch puts from `out`, with the key parts that the per-aggregation tables at
   * `tables` reference (assembly/dtoa.ts, State records); returns the bytes written.
   */
  encodeStatePuts(region: SnapRegion, first: number, last: number, tables: number, out: number): number {
    return this.x.encodeStatePuts(region.base, first, last, region.body, tables, out) >>> 0;
  }

  /**
   * Writes n deletes, listed at `recs` as (u32 aggregation, u32 key id, f64 start, f64
   * end), as change-batch records from `out`, with the key parts of `tables`; returns
   * the bytes written.
   */
  encodeStateDeletes(recs: number, n: number, tables: number, out: number): number {
    return this.x.encodeStateDeletes(recs, n, tables, out) >>> 0;
  }

  /** Raw key ids of aggregation a in use. */
  liveKeyCount(a: number): number {
    return this.x.internLive(this.x.keyTable(a));
  }

  /** The raw key ids handed out (new, or handed out again) since the last call, in order. */
  takeFreshKeys(a: number): Uint32Array {
    const t = this.x.keyTable(a);
    const n = this.x.internFreshCount(t);
    const ids = new Uint32Array(n);
    if (n > 0) {
      this.refresh();
      const from = this.x.internFresh(t) >>> 2;
      ids.set(this.u32.subarray(from, from + n));
    }
    this.x.internFreshReset(t);
    return ids;
  }

  /** Removes raw key id `id` of aggregation a: a later new key may get it. */
  removeKey(a: number, id: number): void {
    this.x.internRemove(this.x.keyTable(a), id);
  }

  /**
   * Which key ids below `cap` have an open window of aggregation a (1) or none (0).
   * The view is valid until the next call into the core.
   */
  liveKeys(a: number, cap: number): Uint8Array {
    if (cap > this.markCap) {
      if (this.mark) this.x.free(this.mark);
      this.markCap = Math.max(cap, 2 * this.markCap, 4096);
      this.mark = this.x.alloc(this.markCap);
    }
    this.x.markLiveKeys(a, this.mark, cap);
    this.refresh();
    return this.u8.subarray(this.mark, this.mark + cap);
  }

  /** Where the bytes of raw key id `id` of aggregation a start in memoryBuffer(). */
  keyStart(a: number, id: number): number {
    return this.x.internBytes(this.x.keyTable(a), id);
  }

  /** How many bytes raw key id `id` of aggregation a has (from keyStart). */
  keyLength(a: number, id: number): number {
    return this.x.internLen(this.x.keyTable(a), id);
  }

  /** The one Buffer over the core's memory (valid until memory grows: take it after the call that may grow it). */
  memoryBuffer(): Buffer {
    this.refresh();
    return this.mem;
  }
}
