// Results as bytes: one operator step's results without a JS object per result.
//
// The core writes result records (assembly/layout.ts, Result record); the encoder
// turns them into the JSON lines the sinks send, in WebAssembly (assembly/dtoa.ts),
// byte for byte what JSON.stringify gives for the same WindowResult. The parts that
// are the same for every window of a key (name, key, group) are encoded once per
// (aggregation, key id) and cached; the numbers are written per result.
import { KeyBlockTables, Layout, WorkBlock, type WasmCore } from '../core/wasm';
import { groupObject, type KeyRegistry } from './keys';
import { stateKey, type DeadLetter, type WindowResult } from './types';

const { RES, RES_BYTES, RES_LATE, ENCODE } = Layout;
const F64S = RES_BYTES / 8; // f64 per record
const U32S = RES_BYTES / 4; // u32 per record
/** Size of the slabs batches are cut from (ResultEncoder.carve). */
const SLAB_BYTES = 4 << 20;
/** Free slabs an encoder keeps for reuse. */
const SPARE_SLABS = 4;

/** The part of a result that is the same for every window of one key of one aggregation. */
export interface ResultKey {
  /** The aggregation's index in the config. */
  readonly agg: number;
  /** The aggregation's name. */
  readonly name: string;
  readonly key: string;
  readonly group: Record<string, string>;
  /**
   * Set once PartitionedOperator has noted which partition this key's results come
   * from: an encoder's key lives as long as its registry entry, so that is once per
   * key per partition (it looks again after the key is released and comes back).
   */
  homeNoted?: boolean;
}

/** The WindowResult of the result record whose floats start at `f[d]` (Layout.RES). */
export function windowResult(name: string, key: string, group: Record<string, string>, f: Float64Array, d: number, late: boolean, emittedAt: number): WindowResult {
  return {
    name,
    key,
    group,
    window: { start: f[d + RES.START / 8]!, end: f[d + RES.END / 8]! },
    results: {
      count: f[d + RES.COUNT / 8]!,
      sum: f[d + RES.SUM / 8]!,
      avg: f[d + RES.AVG / 8]!,
      min: f[d + RES.MIN / 8]!,
      max: f[d + RES.MAX / 8]!,
      p50: f[d + RES.P50 / 8]!,
      p95: f[d + RES.P95 / 8]!,
      p99: f[d + RES.P99 / 8]!,
      stddev: f[d + RES.STDDEV / 8]!,
    },
    late,
    emittedAt,
  };
}

/**
 * A block of memory that ResultBatches are carved from (ResultEncoder.carve), and how
 * many of the batches cut from it are still held. Once it is full (retired) and none
 * is held, its encoder writes new batches into it again: memory already mapped costs
 * much less to write than fresh memory, whose every page faults on its first write.
 */
class Slab {
  /** Bytes handed out. */
  used = 0;
  /** Batches carved from it that are not released yet. */
  held = 0;
  /** No more batches are carved from it: it goes back to its pool once none is held. */
  retired = false;

  constructor(
    readonly buf: Buffer,
    /** Takes it back once it is retired and free. */
    private readonly pool: (slab: Slab) => void,
  ) {}

  /** One batch carved from it is released. */
  free(): void {
    if (--this.held === 0 && this.retired) this.pool(this);
  }

  retire(): void {
    this.retired = true;
    if (this.held === 0) this.pool(this);
  }
}

/**
 * The results of one operator step (or a part, or several joined): the core's result
 * records, the key of each, and their JSON lines in one Buffer.
 *
 * `json` holds exactly the n lines in order, each followed by '\n': a JSON-lines sink
 * writes `json` as it is; line i alone (no '\n') is `json.subarray(lineStarts[i],
 * lineEnds[i])`, the value of a Kafka message. Immutable; parts share bytes.
 *
 * A batch from the encoder lives in memory the encoder reuses: it is held by whoever
 * made it, and by each reader it is handed to (retain()), and each lets go of it with
 * release(); once the last one has, its bytes belong to later batches, and nothing
 * may read it (or a slice of it) any more. Whoever keeps results longer keeps a copy
 * (concat(), toObject(), textOf(), Buffer.from(json)). A batch that is never released
 * is only garbage collected: its memory is not reused. Slices, joined batches and
 * batches made from objects own their memory: retain() and release() do nothing.
 */
export class ResultBatch {
  /** Record i's f64 fields: f64[i * 13 + RES.X / 8] (Layout.RES). */
  readonly f64: Float64Array;
  /** Record i's u32 fields (aggregation, key id, flags): u32[i * 26 + RES.X / 4]. */
  readonly u32: Uint32Array;

  constructor(
    readonly n: number,
    /** n result records, Layout.RES_BYTES each (a copy: the core's region is reused). */
    readonly records: Uint8Array,
    /** Key of record i (captured when encoded: a key id may later name another key). */
    readonly keys: readonly ResultKey[],
    /** emittedAt of record i, epoch ms. */
    readonly emittedAt: Float64Array,
    readonly json: Buffer,
    readonly lineStarts: Uint32Array,
    readonly lineEnds: Uint32Array,
    /** Where its bytes were carved from (undefined: memory of its own). */
    private slab?: Slab,
  ) {
    this.f64 = new Float64Array(records.buffer, records.byteOffset, n * F64S);
    this.u32 = new Uint32Array(records.buffer, records.byteOffset, n * U32S);
  }

  /** Holders that have not released it (its maker counts as one). */
  private holders = 1;

  /** One more holder, which will call release() once. Returns the batch. */
  retain(): this {
    if (this.slab !== undefined) this.holders++;
    return this;
  }

  /** One holder is done with it; after the last, its memory goes to later batches. */
  release(): void {
    if (this.slab === undefined) return;
    if (--this.holders === 0) {
      const slab = this.slab;
      this.slab = undefined;
      slab.free();
    }
  }

  static readonly empty = new ResultBatch(0, new Uint8Array(0), [], new Float64Array(0), Buffer.alloc(0), new Uint32Array(0), new Uint32Array(0));

  /** Line i without its '\n' (shares the bytes). */
  lineOf(i: number): Buffer {
    return this.json.subarray(this.lineStarts[i], this.lineEnds[i]);
  }

  /** Line i as a string: JSON.stringify(toObject(i)). */
  textOf(i: number): string {
    return this.json.toString('utf8', this.lineStarts[i], this.lineEnds[i]);
  }

  /** Index of record i's aggregation in the config (-1 where unknown: fromObjects without one). */
  aggregationOf(i: number): number {
    return this.u32[i * U32S + RES.AGG / 4]! | 0;
  }

  /** Results per aggregation index, for `aggregations` aggregations (records only: no key is read). */
  countsByAggregation(aggregations: number): number[] {
    const counts = new Array<number>(aggregations).fill(0);
    for (let i = 0, w = RES.AGG / 4; i < this.n; i++, w += U32S) counts[this.u32[w]!]!++;
    return counts;
  }

  /** Name of record i's aggregation (the result's `name`). */
  nameOf(i: number): string {
    return this.keys[i]!.name;
  }

  keyOf(i: number): string {
    return this.keys[i]!.key;
  }

  windowOf(i: number): { start: number; end: number } {
    const d = i * F64S;
    return { start: this.f64[d + RES.START / 8]!, end: this.f64[d + RES.END / 8]! };
  }

  /** Window end of record i, epoch ms. */
  endOf(i: number): number {
    return this.f64[i * F64S + RES.END / 8]!;
  }

  isLate(i: number): boolean {
    return (this.u32[i * U32S + RES.FLAGS / 4]! & RES_LATE) !== 0;
  }

  /** `name:key:start_end`, as stateKey(): the Kafka message key of record i. */
  stateKeyOf(i: number): string {
    const k = this.keys[i]!, d = i * F64S;
    return stateKey(k.name, k.key, this.f64[d + RES.START / 8]!, this.f64[d + RES.END / 8]!);
  }

  /** Record i as a WindowResult (the group object is shared, as the operator's results share it). */
  toObject(i: number): WindowResult {
    const k = this.keys[i]!;
    return windowResult(k.name, k.key, k.group, this.f64, i * F64S, this.isLate(i), this.emittedAt[i]!);
  }

  toObjects(): WindowResult[] {
    const out: WindowResult[] = [];
    for (let i = 0; i < this.n; i++) out.push(this.toObject(i));
    return out;
  }

  /** Records [from, to) (clamped), sharing this batch's bytes. */
  slice(from: number, to: number = this.n): ResultBatch {
    from = Math.max(0, Math.min(from, this.n));
    to = Math.max(from, Math.min(to, this.n));
    if (from === 0 && to === this.n) return this;
    if (from === to) return ResultBatch.empty;
    const n = to - from, base = this.lineStarts[from]!;
    const starts = new Uint32Array(n), ends = new Uint32Array(n);
    for (let i = 0; i < n; i++) {
      starts[i] = this.lineStarts[from + i]! - base;
      ends[i] = this.lineEnds[from + i]! - base;
    }
    return new ResultBatch(
      n,
      this.records.subarray(from * RES_BYTES, to * RES_BYTES),
      this.keys.slice(from, to),
      this.emittedAt.subarray(from, to),
      this.json.subarray(base, this.lineEnds[to - 1]! + 1),
      starts,
      ends,
    );
  }

  /**
   * A batch of results that exist as objects (results read back from a dead letter,
   * tests): each line is JSON.stringify of the result, as the encoder writes it.
   * `agg` is the aggregation's index where known, else -1.
   */
  static fromObjects(results: readonly WindowResult[], agg: (r: WindowResult) => number = () => -1): ResultBatch {
    const n = results.length;
    if (n === 0) return ResultBatch.empty;
    const records = new Uint8Array(n * RES_BYTES);
    const f = new Float64Array(records.buffer, 0, n * F64S), u = new Uint32Array(records.buffer, 0, n * U32S);
    const emittedAt = new Float64Array(n);
    const starts = new Uint32Array(n), ends = new Uint32Array(n);
    const keys: ResultKey[] = [];
    let text = '';
    for (let i = 0; i < n; i++) {
      const r = results[i]!, d = i * F64S, x = r.results;
      const a = agg(r);
      keys.push({ agg: a, name: r.name, key: r.key, group: r.group });
      u[i * U32S + RES.AGG / 4] = a;
      u[i * U32S + RES.FLAGS / 4] = r.late ? RES_LATE : 0;
      f[d + RES.START / 8] = r.window.start;
      f[d + RES.END / 8] = r.window.end;
      f[d + RES.COUNT / 8] = x.count;
      f[d + RES.SUM / 8] = x.sum;
      f[d + RES.AVG / 8] = x.avg;
      f[d + RES.MIN / 8] = x.min;
      f[d + RES.MAX / 8] = x.max;
      f[d + RES.P50 / 8] = x.p50;
      f[d + RES.P95 / 8] = x.p95;
      f[d + RES.P99 / 8] = x.p99;
      f[d + RES.STDDEV / 8] = x.stddev;
      emittedAt[i] = r.emittedAt;
      text += JSON.stringify(r) + '\n';
    }
    const json = Buffer.from(text, 'utf8');
    lineBounds(json, starts, ends);
    return new ResultBatch(n, records, keys, emittedAt, json, starts, ends);
  }

  /**
   * concat(), which takes over the caller's hold of each batch: a batch it copied is
   * released (see release()); a lone batch it returns as it is stays held.
   */
  static join(batches: readonly ResultBatch[]): ResultBatch {
    const joined = ResultBatch.concat(batches);
    for (const b of batches) if (b !== joined) b.release();
    return joined;
  }

  /** The records of the batches in order, in one batch (copies the bytes). */
  static concat(batches: readonly ResultBatch[]): ResultBatch {
    const parts = batches.filter((b) => b.n > 0);
    if (parts.length === 0) return ResultBatch.empty;
    if (parts.length === 1) return parts[0]!;
    let n = 0;
    for (const b of parts) n += b.n;
    const records = new Uint8Array(n * RES_BYTES);
    const emittedAt = new Float64Array(n);
    const starts = new Uint32Array(n), ends = new Uint32Array(n);
    const keys: ResultKey[] = [];
    let i = 0, shift = 0;
    for (const b of parts) {
      records.set(b.records, i * RES_BYTES);
      emittedAt.set(b.emittedAt, i);
      for (let j = 0; j < b.n; j++) {
        starts[i + j] = b.lineStarts[j]! + shift;
        ends[i + j] = b.lineEnds[j]! + shift;
        keys.push(b.keys[j]!);
      }
      i += b.n;
      shift += b.json.length;
    }
    return new ResultBatch(n, records, keys, emittedAt, Buffer.concat(parts.map((b) => b.json), shift), starts, ends);
  }
}

/**
 * The key of the results an encoder writes: its group object is made when first asked
 * for (toObject(): a PostgreSQL row, the library's results), from the group values
 * the key had when it was encoded.
 */
class EncodedKey implements ResultKey {
  private made: Record<string, string> | undefined;
  homeNoted = false;

  constructor(
    readonly agg: number,
    readonly name: string,
    readonly key: string,
    private readonly fields: readonly string[],
    private readonly values: readonly string[],
  ) {}

  get group(): Record<string, string> {
    return (this.made ??= groupObject(this.fields, this.values));
  }
}

/**
 * The parts of one aggregation's prefixes that do not depend on the key: the head up
 * to the key's value, and per group-by field the text before its value. Without them
 * (undefined) the group is written from its object: when a field name repeats or
 * reads as an array index, JSON.stringify does not follow the group-by order.
 */
function prefixParts(name: string, fields: readonly string[]): { head: string; fieldHeads: string[] | undefined } {
  const head = '{"name":' + jsonString(name) + ',"key":';
  const plain = new Set(fields).size === fields.length && !fields.some((f) => /^(0|[1-9][0-9]*)$/.test(f));
  return { head, fieldHeads: plain ? fields.map((f, j) => (j === 0 ? '' : ',') + jsonString(f) + ':') : undefined };
}

/** The constant head of a result's JSON, up to the window start's value. */
export function resultPrefix(name: string, key: string, group: Record<string, string>): string {
  // Each part as JSON.stringify writes it: its escaping (quotes, control characters,
  // lone surrogates as \udXXX) and the group's property order are then exactly the
  // whole object's.
  let g = '{';
  for (const f in group) g += (g.length > 1 ? ',' : '') + jsonString(f) + ':' + jsonString(group[f]!);
  return '{"name":' + jsonString(name) + ',"key":' + jsonString(key) + ',"group":' + g + '},"window":{"start":';
}

/** Prefixes up to this long are reserved for at their longest; beyond, at their sum. */
const LONG_PREFIX = 512;

const GROUP_OPEN = ',"group":{';
const PREFIX_TAIL = '},"window":{"start":';
const GROUP_OPEN_BYTES = Buffer.from(GROUP_OPEN);

/** Bytes a block of `len` bytes takes: the core reads it in 32-byte steps. */
function blockBytes(len: number): number {
  return (len + 31) & ~31;
}

/**
 * JSON.stringify(s) at `p` when s is printable ASCII without '"' or '\\' (0x20 to
 * 0x7e: JSON writes those as they are); returns the end, or -1 for any other string.
 */
function asciiString(b: Uint8Array, p: number, s: string): number {
  b[p++] = 0x22;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x20 || c > 0x7e || c === 0x22 || c === 0x5c) return -1;
    b[p++] = c;
  }
  b[p++] = 0x22;
  return p;
}

/** Characters JSON.stringify writes other than as themselves (any surrogate: a lone one is escaped). */
const JSON_ESCAPED = /["\\\u0000-\u001f\ud800-\udfff]/;

/** JSON.stringify(s), without its general path for the strings that need no escape. */
function jsonString(s: string): string {
  return JSON_ESCAPED.test(s) ? JSON.stringify(s) : '"' + s + '"';
}

/**
 * One aggregation's part of its prefixes, and each key id's ResultKey. A prefix is
 * the aggregation's head, the key's middle and a tail the same for every prefix
 * (assembly/dtoa.ts, Result lines):
 *   `{"name":"N","key":` + `"K","group":{"f":"v"` + `},"window":{"start":`
 * Per key only its middle is kept (ResultEncoder.blocks): the head and tail are ~half
 * of a prefix, and thousands of whole prefixes did not stay in the cache.
 */
class Template {
  /** head, UTF-8. */
  readonly headBytes: Buffer;
  /** fieldHeads, UTF-8 (empty without them). */
  readonly fieldHeadBytes: Buffer[];
  /** The head in the core's memory. */
  readonly headPtr: number;
  /** The ResultKey the results of each key get (undefined: no middle). */
  entry: Array<ResultKey | undefined> = [];

  constructor(
    core: WasmCore,
    /** The prefix up to the key's value. */
    readonly head: string,
    /** Per group-by field, the text before its value (prefixParts). */
    readonly fieldHeads: string[] | undefined,
  ) {
    this.headBytes = Buffer.from(head, 'utf8');
    this.fieldHeadBytes = (fieldHeads ?? []).map((h) => Buffer.from(h, 'utf8'));
    this.headPtr = core.alloc(blockBytes(this.headBytes.length));
    core.bytes().set(this.headBytes, this.headPtr);
  }
}

/**
 * Encodes the core's result records into ResultBatches. One per WasmCore: the records
 * are read and the lines written in that core's memory, where the encoder also keeps
 * each aggregation's head and each (aggregation, key id)'s middle of the JSON prefix
 * (Template). A key's middle goes when its registry releases the id.
 */
export class ResultEncoder {
  private readonly templates: Template[];
  /** Per aggregation, its head's address and length (u32 each), in the core's memory. */
  private readonly heads: number;
  /** Per aggregation, per key id: its middle's address and length, in the core's memory. */
  private readonly blocks: KeyBlockTables;
  /** Work block in the core's memory: line bounds (n × 8), then the lines. */
  private readonly block: WorkBlock;
  /** The slab batches are carved from now, and retired slabs that no batch holds any more. */
  private slab: Slab;
  private readonly spare: Slab[] = [];
  /** Bytes of the longest prefix installed so far (the output block is reserved for n of them). */
  private longestPrefix = 0;
  private readonly recycle = (slab: Slab): void => {
    if (slab.buf.length !== this.slabBytes || this.spare.length >= SPARE_SLABS) return;
    slab.used = 0;
    slab.retired = false;
    this.spare.push(slab);
  };

  constructor(
    private readonly core: WasmCore,
    /** Aggregation names, by index. */
    private readonly names: readonly string[],
    private readonly registries: readonly KeyRegistry[],
    /** Size of the slabs batches are carved from (tests lower it). */
    private readonly slabBytes = SLAB_BYTES,
  ) {
    this.slab = new Slab(Buffer.alloc(0), this.recycle);
    this.templates = names.map((name, a) => {
      const { head, fieldHeads } = prefixParts(name, registries[a]!.fields);
      return new Template(core, head, fieldHeads);
    });
    this.heads = core.alloc(Math.max(1, names.length) * 8);
    const u32 = core.words();
    this.templates.forEach((t, a) => {
      u32[(this.heads >>> 2) + 2 * a] = t.headPtr;
      u32[(this.heads >>> 2) + 2 * a + 1] = t.headBytes.length;
    });
    this.blocks = new KeyBlockTables(core, names.length, 2);
    this.block = new WorkBlock(core);
    registries.forEach((reg, a) => {
      reg.onRelease((id) => this.forget(a, id));
      // A key's middle is written when it is registered: its strings were just made and
      // are in the cache, where at its first result, seconds later, each read missed it.
      reg.onRegister((id) => this.install(a, id));
    });
  }

  /**
   * The results region as a batch: call with `core.results()` before resetOutput.
   * `emittedAtMs` goes into every result (the operator's nowMs).
   */
  encode(res: { count: number; base: number }, emittedAtMs: number): ResultBatch {
    const n = res.count;
    if (n === 0) return ResultBatch.empty;
    const core = this.core;
    const keys: ResultKey[] = new Array<ResultKey>(n);
    let u32 = core.words();
    for (let k = 0, w = res.base >>> 2; k < n; k++, w += U32S) {
      const a = u32[w + RES.AGG / 4]!, id = u32[w + RES.KEY / 4]!;
      let e = this.templates[a]!.entry[id];
      if (e === undefined) {
        e = this.install(a, id);
        u32 = core.words(); // allocating may have grown memory
      }
      keys[k] = e;
    }
    // Room for n of the longest prefix any key has had (no sum over the batch's keys),
    // unless some key is long enough for that to reserve far more than needed.
    const prefixBytes = this.longestPrefix <= LONG_PREFIX ? n * this.longestPrefix : this.prefixBytesOf(res.base, n);
    const bounds = this.block.reserve(n * 8 + prefixBytes + n * ENCODE.LINE_MAX + ENCODE.SLACK);
    const out = bounds + n * 8;
    const total = core.encodeResults(res.base, n, this.blocks.tables, this.heads, emittedAtMs, out, bounds);
    // The batch's parts, carved from one slab: records and emittedAt (8-aligned), the
    // line bounds, the lines.
    const recBytes = n * RES_BYTES;
    const at = this.carve(recBytes + n * 8 + n * 8 + total);
    const slab = this.slab.buf;
    const bytes = core.bytes();
    const records = slab.subarray(at, at + recBytes);
    records.set(bytes.subarray(res.base, res.base + recBytes));
    const emitted = new Float64Array(slab.buffer, slab.byteOffset + at + recBytes, n).fill(emittedAtMs);
    const b = new Uint32Array(slab.buffer, slab.byteOffset + at + recBytes + n * 8, 2 * n);
    b.set(core.words().subarray(bounds >>> 2, (bounds >>> 2) + 2 * n));
    const json = slab.subarray(at + recBytes + n * 16, at + recBytes + n * 16 + total);
    json.set(bytes.subarray(out, out + total));
    this.slab.held++;
    return new ResultBatch(n, records, keys, emitted, json, b.subarray(0, n), b.subarray(n), this.slab);
  }

  /**
   * Offset of `bytes` new bytes (8-aligned) in this.slab.buf. Batches are carved from
   * large slabs rather than allocated one by one: fewer, larger allocations cost less
   * (the collections that external memory triggers), and a slab whose batches are all
   * released is written again (a few are kept spare) rather than fresh memory, whose
   * every page faults on its first write. A slab that is not reused is freed by the
   * garbage collector once no batch cut from it is alive.
   */
  private carve(bytes: number): number {
    let slab = this.slab;
    if (slab.used + bytes > slab.buf.length) {
      slab.retire();
      const size = Math.max(bytes, this.slabBytes);
      slab = this.slab = (size === this.slabBytes ? this.spare.pop() : undefined) ?? new Slab(Buffer.allocUnsafeSlow(size), this.recycle);
    }
    const at = slab.used;
    slab.used += (bytes + 7) & ~7;
    return at;
  }

  /** Bytes of the prefix of key id `id` of aggregation a (installed): head, middle, tail. */
  private prefixLength(a: number, id: number): number {
    return this.templates[a]!.headBytes.length + this.blocks.word(a, id, 1) + PREFIX_TAIL.length;
  }

  /** Bytes of the prefixes of the n records from `base` (each installed). */
  private prefixBytesOf(base: number, n: number): number {
    const u32 = this.core.words();
    let bytes = 0;
    for (let k = 0, w = base >>> 2; k < n; k++, w += U32S) bytes += this.prefixLength(u32[w + RES.AGG / 4]!, u32[w + RES.KEY / 4]!);
    return bytes;
  }

  /** Drops the middle of a key id (its registry released it: called by the registry). */
  forget(agg: number, keyId: number): void {
    const t = this.templates[agg];
    if (t === undefined || t.entry[keyId] === undefined) return;
    t.entry[keyId] = undefined;
    this.blocks.drop(agg, keyId);
  }

  /** Bytes of the core's memory held for heads, middles, their tables and the work block. */
  memoryBytes(): number {
    let total = this.block.bytes + this.templates.length * 8;
    this.templates.forEach((t, a) => {
      total += blockBytes(t.headBytes.length) + this.blocks.capacity(a) * 8;
      for (let id = 0; id < t.entry.length; id++) if (t.entry[id] !== undefined) total += blockBytes(this.blocks.word(a, id, 1));
    });
    return total;
  }

  private install(a: number, id: number): ResultKey {
    const reg = this.registries[a]!;
    const key = reg.keys[id]!, values = reg.values[id]!, name = this.names[a]!;
    const t = this.templates[a]!;
    // Most keys are printable ASCII that JSON writes as it is: their middle is written
    // as bytes straight into the core's memory, without a string (a new key per few
    // events, as sessions per user have, makes this a good part of the results' cost).
    let len = -1;
    let ptr = 0;
    if (t.fieldHeads !== undefined) {
      ptr = this.core.alloc(blockBytes(asciiMiddleBytes(t, key, values)));
      len = asciiMiddle(t, key, values, this.core.bytes(), ptr);
      if (len < 0) this.core.free(ptr);
    }
    if (len < 0) {
      let text: string;
      const fieldHeads = t.fieldHeads;
      if (fieldHeads === undefined) {
        // The group written from its object: resultPrefix() without its head and tail.
        const prefix = resultPrefix(name, key, reg.groupOf(id));
        text = prefix.slice(t.head.length, prefix.length - PREFIX_TAIL.length);
      } else {
        // The same middle as asciiMiddle(), its fields in group-by order (see prefixParts).
        text = jsonString(key) + GROUP_OPEN;
        for (let j = 0; j < fieldHeads.length; j++) text += fieldHeads[j]! + jsonString(values[j]!);
      }
      len = Buffer.byteLength(text, 'utf8');
      ptr = this.core.alloc(blockBytes(len));
      this.core.writeUtf8(ptr, text);
    }
    this.blocks.set(a, id, ptr, len);
    const prefix = this.prefixLength(a, id);
    if (prefix > this.longestPrefix) this.longestPrefix = prefix;
    // Dense: ids come in any order, and an array written far past its end turns into a slow dictionary.
    while (t.entry.length < this.blocks.capacity(a)) t.entry.push(undefined);
    const e = new EncodedKey(a, name, key, reg.fields, values);
    t.entry[id] = e;
    return e;
  }
}

/** Bytes of a key's middle (asciiMiddle) if every character of it is ASCII. */
function asciiMiddleBytes(t: Template, key: string, values: readonly string[]): number {
  const heads = t.fieldHeadBytes;
  let n = key.length + GROUP_OPEN_BYTES.length + 2;
  for (let j = 0; j < values.length; j++) n += heads[j]!.length + values[j]!.length + 2;
  return n;
}

/** src at b[p]; returns the end. A loop: Buffer.copy costs more than the copy for a few bytes. */
function putBytes(b: Uint8Array, p: number, src: Uint8Array): number {
  for (let i = 0; i < src.length; i++) b[p + i] = src[i]!;
  return p + src.length;
}

/**
 * The middle of a key whose key string and group values are all printable ASCII
 * other than '"' and '\\' (JSON.stringify writes them as they are), written at
 * b[at] as the string path writes it; its length, or -1 for any other key.
 */
function asciiMiddle(t: Template, key: string, values: readonly string[], b: Uint8Array, at: number): number {
  const heads = t.fieldHeadBytes;
  let p = asciiString(b, at, key);
  if (p < 0) return -1;
  p = putBytes(b, p, GROUP_OPEN_BYTES);
  for (let j = 0; j < values.length; j++) {
    p = putBytes(b, p, heads[j]!);
    p = asciiString(b, p, values[j]!);
    if (p < 0) return -1;
  }
  return p - at;
}

// ─── Dead letters ─────────────────────────────────────────────────────────────

/** Lines of JSON in one Buffer, each followed by '\n' (as ResultBatch.json). */
export interface EncodedLines {
  n: number;
  json: Buffer;
  lineStarts: Uint32Array;
  lineEnds: Uint32Array;
}

/** JSON.stringify of a number. */
function num(x: number): string {
  return Number.isFinite(x) ? String(x) : 'null';
}

/**
 * JSON.stringify(d) for a DeadLetter whose properties were created in the interface's
 * order (every producer in Weir does so), absent optional fields left out.
 */
export function deadLetterJson(d: DeadLetter): string {
  let s = `{"original_event":${JSON.stringify(d.original_event)},"reason":${JSON.stringify(d.reason)},"error":${JSON.stringify(d.error)}`;
  if (d.aggregation !== undefined) s += `,"aggregation":${JSON.stringify(d.aggregation)}`;
  s += `,"retry_count":${num(d.retry_count)},"timestamp":${JSON.stringify(d.timestamp)},"processor_instance":${JSON.stringify(d.processor_instance)}`;
  s += `,"partition":${num(d.partition)},"offset":${JSON.stringify(d.offset)}`;
  if (d.sink !== undefined) s += `,"sink":${JSON.stringify(d.sink)}`;
  return s + '}';
}

/**
 * Dead letters as JSON lines in one Buffer: line i is JSON.stringify(records[i]).
 * Each line is written into the Buffer as it is made, its bounds noted: a string of
 * every line joined costs more (it is flattened, then encoded, then searched for the
 * newlines).
 */
export function encodeDeadLetters(records: readonly DeadLetter[]): EncodedLines {
  const n = records.length;
  const lineStarts = new Uint32Array(n), lineEnds = new Uint32Array(n);
  let json = Buffer.allocUnsafe(n * 512), pos = 0;
  for (let i = 0; i < n; i++) {
    const line = deadLetterJson(records[i]!);
    // UTF-8 takes at most 3 bytes per UTF-16 unit.
    if (pos + 3 * line.length + 1 > json.length) {
      const grown = Buffer.allocUnsafe(Math.max(2 * json.length, pos + 3 * line.length + 1));
      json.copy(grown, 0, 0, pos);
      json = grown;
    }
    lineStarts[i] = pos;
    pos += json.write(line, pos, 'utf8');
    lineEnds[i] = pos;
    json[pos++] = 10;
  }
  return { n, json: json.subarray(0, pos), lineStarts, lineEnds };
}

/** Where each of the '\n'-ended lines of `json` starts and ends (JSON text has no raw newline: JSON.stringify escapes it). */
function lineBounds(json: Buffer, starts: Uint32Array, ends: Uint32Array): void {
  for (let i = 0, start = 0; i < starts.length; i++) {
    const end = json.indexOf(10, start);
    starts[i] = start;
    ends[i] = end;
    start = end + 1;
  }
}
