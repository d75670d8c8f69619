// Decoding: raw records -> event time, value and key id per aggregation, written
// straight into the core's batch arrays. This is the JSON.parse path; the same
// rules decide the dead-letter messages (explain*).
import type { AggregationConfig } from '../config';
import type { WasmCore } from '../core/wasm';
import { messageOf } from '../errors/errors';
import { eventTimeOf, describeBadTimestamp } from '../time/timestamp';
import { KeyRegistry, groupValueString } from './keys';
import { compilePath, getPath, isPlainObject, jsonPreview, type Path } from './paths';
import type { RecordBatch } from './types';

/** Per-record outcome of decoding. */
export const REC_OK = 0;
export const REC_MALFORMED = 1;
export const REC_BLANK = 2;
/** Decoding the record threw (a bug or a limit no valid input should reach): dead-lettered `malformed` with the reason. */
export const REC_FAILED = 3;

/** JSON white space only (what JSON.parse skips around a value). */
export function isBlank(buf: Buffer, start: number, end: number): boolean {
  for (let i = start; i < end; i++) {
    const c = buf[i];
    if (c !== 0x20 && c !== 0x09 && c !== 0x0d && c !== 0x0a) return false;
  }
  return true;
}

export interface Decoder {
  /** Fills ts, val[a], key[a] for records 0..n-1 of the batch, and rec[i] (REC_*). */
  decode(batch: RecordBatch, core: WasmCore, rec: Uint8Array): void;
  /** Key `id` of aggregation `a` was released from its registry: forget what maps to it. */
  releaseKey(a: number, id: number): void;
  /** Of the last batch decoded: why each REC_FAILED record failed, by record index. */
  readonly failures: ReadonlyMap<number, string>;
}

/** The dead-letter message of a record whose decoding threw. */
export function failureMessage(e: unknown): string {
  return `the record could not be decoded: ${messageOf(e)}`;
}

export class JsonDecoder implements Decoder {
  private readonly tsPath: Path;
  private readonly valuePaths: Path[];
  private readonly groupPaths: Path[][];
  private readonly scratch: string[][];
  readonly failures = new Map<number, string>();

  constructor(
    tsField: string,
    aggs: readonly AggregationConfig[],
    private readonly registries: KeyRegistry[],
  ) {
    this.tsPath = compilePath(tsField);
    this.valuePaths = aggs.map((a) => compilePath(a.value));
    this.groupPaths = aggs.map((a) => a.groupBy.map(compilePath));
    this.scratch = aggs.map((a) => a.groupBy.map(() => ''));
  }

  releaseKey(): void {
    // Nothing maps to registry ids here but the registry.
  }

  decode(batch: RecordBatch, core: WasmCore, rec: Uint8Array): void {
    const ts = core.ts();
    const views = this.valuePaths.map((_, a) => core.agg(a));
    this.failures.clear();
    for (let i = 0; i < batch.n; i++) {
      const s = batch.starts[i]!, e = batch.ends[i]!;
      let obj: unknown;
      if (isBlank(batch.buf, s, e)) rec[i] = REC_BLANK;
      else {
        try {
          obj = JSON.parse(batch.buf.toString('utf8', s, e));
          rec[i] = isPlainObject(obj) ? REC_OK : REC_MALFORMED;
        } catch {
          rec[i] = REC_MALFORMED;
        }
      }
      if (rec[i] !== REC_OK) {
        ts[i] = NaN;
        for (const v of views) v.val[i] = NaN;
        continue;
      }
      try {
        ts[i] = eventTimeOf(getPath(obj, this.tsPath));
        for (let a = 0; a < views.length; a++) {
          const v = views[a]!;
          const x = getPath(obj, this.valuePaths[a]!);
          v.val[i] = typeof x === 'number' && Number.isFinite(x) ? x : NaN;
          const gp = this.groupPaths[a]!, vals = this.scratch[a]!;
          for (let j = 0; j < gp.length; j++) vals[j] = groupValueString(getPath(obj, gp[j]!));
          v.key[i] = this.registries[a]!.idOf(vals);
        }
      } catch (e) {
        // One record must not end the run (on Kafka, every restart would read it again).
        rec[i] = REC_FAILED;
        this.failures.set(i, failureMessage(e));
        ts[i] = NaN;
        for (const v of views) {
          v.val[i] = NaN;
          v.key[i] = 0;
        }
      }
    }
  }
}

/** Why a record is not a JSON object (for a `malformed` dead letter). */
export function explainMalformed(text: string): string {
  try {
    const v: unknown = JSON.parse(text);
    return `not a JSON object: the line is ${Array.isArray(v) ? 'an array' : v === null ? 'null' : `a ${typeof v}`}`;
  } catch (e) {
    return `not valid JSON: ${(e as Error).message}`;
  }
}

/**
 * Why a record is invalid for an aggregation (for an `invalid` dead letter). Quoted
 * values are cut to a preview: the record itself is in the dead letter.
 */
export function explainInvalid(text: string, tsField: string, valuePath: string): string {
  try {
    const obj = JSON.parse(text) as unknown;
    const tv = getPath(obj, compilePath(tsField));
    if (Number.isNaN(eventTimeOf(tv))) {
      // describeBadTimestamp quotes the whole value with JSON.stringify, which recurses.
      if (tv === undefined || typeof tv === 'number') return describeBadTimestamp(tsField, tv);
      return `timestamp field '${tsField}' is neither epoch milliseconds nor an ISO-8601 date-time: ${jsonPreview(tv)}`;
    }
    const v = getPath(obj, compilePath(valuePath));
    if (v === undefined) return `value field '${valuePath}' is missing`;
    if (typeof v !== 'number') return `value field '${valuePath}' is not a number: ${jsonPreview(v)}`;
    return `value field '${valuePath}' is not finite: ${v}`;
  } catch (e) {
    // The record is dead-lettered all the same; only the explanation is lost.
    return `invalid (timestamp field '${tsField}' or value field '${valuePath}'), and explaining it failed: ${messageOf(e)}`;
  }
}

export { groupValueString };
