// The fast decoding path: raw bytes go into linear memory and the WASM scanner
// (assembly/scan.ts, decode.ts) validates each record and extracts only the
// configured fields; no JS object per event. What WASM cannot finish exactly
// (numbers beyond the fast exact path, escaped timestamp strings) is fixed up here
// with the same functions the JSON.parse path uses, so both agree bit for bit.
import type { AggregationConfig } from '../config';
import type { WasmCore } from '../core/wasm';
import { compilePathSpec, scanPlan, FIELD_BYTES, KIND_MISSING, KIND_NUMBER, KIND_STRING, KIND_TRUE, KIND_FALSE } from '../core/pathspec';
import { eventTimeOf } from '../time/timestamp';
import { failureMessage, REC_FAILED, REC_OK, type Decoder } from './decoder';
import { KeyRegistry, groupValueString } from './keys';
import type { RecordBatch } from './types';

const NO_AGG = 0xffffffff;

export class ScanDecoder implements Decoder {
  private readonly P: number;
  private readonly spec: number;
  private readonly bounds: number;
  private readonly fields: number;
  private readonly status: number;
  private input = 0;
  private inputCap = 0;
  /** Per aggregation: raw key id -> registry (canonical) id; -1 (or absent): not in use. */
  private readonly canon: number[][];
  /** Per aggregation: raw ids in use whose canonical id differs (0: no remapping pass needed). */
  private readonly aliased: number[];
  /**
   * Per aggregation: canonical id -> its raw ids other than itself (another spelling
   * of the same key, or a key registered before its raw id, by a restore).
   */
  private readonly spellings: Array<Map<number, number[]>>;
  /** Per aggregation: raw key ids whose key could not be built (canonical id -1), and why. */
  private readonly badKeys: Map<number, string>[];
  readonly failures = new Map<number, string>();
  private rec: Uint8Array = new Uint8Array(0);

  constructor(
    private readonly core: WasmCore,
    tsField: string,
    private readonly aggs: readonly AggregationConfig[],
    private readonly registries: KeyRegistry[],
  ) {
    const { paths, words } = scanPlan(tsField, aggs);
    this.P = paths.length;
    const spec = compilePathSpec(paths);
    this.spec = core.alloc(spec.length);
    core.write(this.spec, spec);
    const cfg = core.alloc(words.length * 4);
    core.write(cfg, new Uint8Array(Uint32Array.from(words).buffer));
    core.decodeInit(cfg, aggs.length);
    const cap = core.capacity;
    this.bounds = core.alloc(cap * 8);
    this.fields = core.alloc(cap * this.P * FIELD_BYTES);
    this.status = core.alloc(cap);
    this.canon = aggs.map(() => []);
    this.aliased = aggs.map(() => 0);
    this.spellings = aggs.map(() => new Map<number, number[]>());
    this.badKeys = aggs.map(() => new Map<number, string>());
  }

  decode(batch: RecordBatch, core: WasmCore, rec: Uint8Array): void {
    const n = batch.n;
    // Scanned already (by the Kafka consumer's thread, with this spec): only decoded here.
    const scanned = batch.scanned !== undefined && batch.scanned.paths === this.P ? batch.scanned : undefined;
    // Records of a batch are increasing, non-overlapping slices of one buffer; the
    // scanner's token offsets count from where the batch began when it was scanned.
    const base = scanned?.base ?? batch.starts[0]!;
    const span = batch.ends[n - 1]! - base;
    if (span > this.inputCap) {
      if (this.input) core.free(this.input);
      this.inputCap = Math.max(span, this.inputCap * 2, 1 << 20);
      this.input = core.alloc(this.inputCap);
    }
    const u8 = core.bytes();
    u8.set(batch.buf.subarray(base, base + span), this.input);
    let fixes: number;
    if (scanned !== undefined) {
      u8.set(scanned.fields.subarray(0, n * this.P * FIELD_BYTES), this.fields);
      u8.set(scanned.status.subarray(0, n), this.status);
      fixes = core.decodeFields(this.input, n, this.fields, this.status);
    } else {
      const words = core.words();
      const b = this.bounds >>> 2;
      for (let i = 0; i < n; i++) {
        words[b + 2 * i] = batch.starts[i]! - base;
        words[b + 2 * i + 1] = batch.ends[i]! - base;
      }
      fixes = core.decodeBatch(this.input, this.bounds, n, this.spec, this.fields, this.status);
    }
    rec.set(core.bytes().subarray(this.status, this.status + n));
    this.rec = rec;
    this.failures.clear();
    if (fixes > 0) this.fixUp(fixes);
    for (let a = 0; a < this.aggs.length; a++) this.mapKeys(a, n);
  }

  /** Values only JavaScript parses exactly: the token text through JSON.parse. */
  private fixUp(count: number): void {
    const core = this.core;
    const fp = core.fixPtr() >>> 2;
    for (let k = 0; k < count; k++) {
      const words = core.words();
      const i = words[fp + 3 * k]!, p = words[fp + 3 * k + 1]!, a = words[fp + 3 * k + 2]!;
      const f = this.fields + (i * this.P + p) * FIELD_BYTES;
      const start = words[(f + 4) >>> 2]!, end = words[(f + 8) >>> 2]!;
      try {
        const text = Buffer.from(core.bytes().buffer, this.input + start, end - start).toString('utf8');
        const v: unknown = JSON.parse(text);
        if (a === NO_AGG) core.ts()[i] = eventTimeOf(v);
        else core.agg(a).val[i] = typeof v === 'number' && Number.isFinite(v) ? v : NaN;
      } catch (e) {
        this.fail(i, failureMessage(e));
      }
    }
  }

  /** Takes record i out of every aggregation: it becomes a dead letter with `why`. */
  private fail(i: number, why: string): void {
    const core = this.core;
    this.rec[i] = REC_FAILED;
    if (!this.failures.has(i)) this.failures.set(i, why);
    core.ts()[i] = NaN;
    for (let a = 0; a < this.aggs.length; a++) core.agg(a).val[i] = NaN;
  }

  /** Gives new raw key ids (or ids handed out again) their canonical ids, and rewrites key[a] if they differ. */
  private mapKeys(a: number, n: number): void {
    const core = this.core;
    const canon = this.canon[a]!;
    for (const r of core.takeFreshKeys(a)) {
      let id: number;
      try {
        const start = core.keyStart(a, r);
        id = this.registries[a]!.idOf(decodeKey(core.memoryBuffer(), start, start + core.keyLength(a, r)), r, decodedUnique, true);
      } catch (e) {
        // The same bytes intern to the same raw id again: every record with them fails alike.
        id = -1;
        this.badKeys[a]!.set(r, failureMessage(e));
      }
      canon[r] = id;
      if (id === r) continue;
      this.aliased[a]!++;
      if (id < 0) continue;
      const more = this.spellings[a]!.get(id);
      if (more === undefined) this.spellings[a]!.set(id, [r]);
      else more.push(r);
    }
    if (this.aliased[a] === 0) return;
    const key = core.agg(a).key;
    const bad = this.badKeys[a]!;
    for (let i = 0; i < n; i++) {
      const r = key[i]!;
      const id = canon[r] ?? 0;
      if (id < 0 && bad.has(r)) {
        if (this.rec[i] === REC_OK) this.fail(i, bad.get(r)!);
        key[i] = 0;
        // Records that are not JSON objects carry raw id 0, in use or not: any id will do.
      } else key[i] = Math.max(0, id);
    }
  }

  /** Canonical key `id` of aggregation `a` is released: its raw ids leave the core's table. */
  releaseKey(a: number, id: number): void {
    const canon = this.canon[a]!;
    if (canon[id] === id) {
      this.core.removeKey(a, id);
      canon[id] = -1;
    }
    const more = this.spellings[a]!.get(id);
    if (more === undefined) return;
    for (const r of more) {
      this.core.removeKey(a, r);
      canon[r] = -1;
    }
    this.aliased[a]! -= more.length;
    this.spellings[a]!.delete(id);
  }

  /** Raw key ids of aggregation `a` in use in the core's table. */
  rawKeys(a: number): number {
    return this.core.liveKeyCount(a);
  }
}

/**
 * Whether the key decodeKey() read last is spelled only one way: every value a JSON
 * string of ASCII without an escape. Two such raw keys never give the same values, so
 * the registry needs no lookup for them (KeyRegistry.idOf). Any other token can name
 * the same value as another (`1` and `1.0`, `"a"` and `"\u0061"`, `true` and
 * `"true"`, a missing field and `"null"`), and invalid UTF-8 reads as U+FFFD.
 */
let decodedUnique = false;

/** Value strings of an interned key, bytes[start, end): per field a kind byte, the raw token, a 0 byte. */
function decodeKey(bytes: Buffer, start: number, end: number): string[] {
  const values: string[] = [];
  let pos = start;
  decodedUnique = true;
  while (pos < end) {
    const kind = bytes[pos]!;
    // A raw token holds no 0 byte: JSON text has none outside strings, and none raw inside one.
    let stop = pos + 1;
    while (bytes[stop] !== 0) stop++;
    if (kind !== KIND_STRING) decodedUnique = false;
    if (kind === KIND_MISSING) values.push('null');
    else if (kind === KIND_STRING) {
      // Without an escape, the bytes between the quotes are the value, as JSON.parse reads them (the scanner has checked the token).
      const form = stringForm(bytes, pos + 1, stop);
      if (form !== PLAIN_ASCII) decodedUnique = false;
      values.push(form === ESCAPED ? groupValueString(JSON.parse(bytes.toString('utf8', pos + 1, stop))) : bytes.toString(form === PLAIN_ASCII ? 'latin1' : 'utf8', pos + 2, stop - 1));
    }
    else if (kind === KIND_NUMBER) values.push(groupValueString(JSON.parse(bytes.toString('latin1', pos + 1, stop))));
    else if (kind === KIND_TRUE) values.push('true');
    else if (kind === KIND_FALSE) values.push('false');
    else values.push(groupValueString(JSON.parse(bytes.toString('utf8', pos + 1, stop))));
    pos = stop + 1;
  }
  return values;
}

const ESCAPED = 0, PLAIN_ASCII = 1, PLAIN_UTF8 = 2;

/** Whether the JSON string token [start, end) (quotes included) has an escape, else whether it is ASCII. */
function stringForm(bytes: Buffer, start: number, end: number): number {
  let form = PLAIN_ASCII;
  for (let i = start + 1; i < end - 1; i++) {
    const c = bytes[i]!;
    if (c === 0x5c) return ESCAPED;
    if (c >= 0x80) form = PLAIN_UTF8;
  }
  return form;
}
