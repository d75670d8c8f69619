// From scanned fields to the batch arrays: event time, and per aggregation the
// value and the raw key id. What only JavaScript can do exactly (an inexact number,
// an escaped timestamp string) goes to the fixup list for TS to finish.
import { scanRecords, FIELD_BYTES, F_KIND, F_FLAGS, F_START, F_END, F_NUM, KIND_MISSING, KIND_NUMBER, KIND_STRING, FLAG_NUM_EXACT, FLAG_STR_ESCAPED, STATUS_OK } from './scan';
import { internTableNew, internHash, internHashed, internTouch, internSlots } from './intern';
import { parseIsoMs } from './isotime';
import { tsBase, aggValues, aggKeys } from './windows';
import { ldu, stu, ldf, stf, ldb, stb, zalloc } from './mem';

// ─── Decode config (written once by TS at decodeInit) ─────────────────────────
//   ┌─────────┬──────────┬───────────────────────────────────────────────────────┐
//   │ P (u32) │ tsPath   │ per aggregation: valuePath u32, nGroup u32,           │
//   │         │ (u32)    │ groupPath u32 × nGroup                                │
//   └─────────┴──────────┴───────────────────────────────────────────────────────┘
// ─── Fixup record (out): what JS must finish ─────────────────────────────────
//   ┌──────────┬──────────┬───────────┐
//   │ record i │ path p   │ agg (or   │   u32 × 3; agg = 0xffffffff: the timestamp
//   │          │          │ NO_AGG)   │
//   └──────────┴──────────┴───────────┘
export const FIX_BYTES: usize = 12;
/** Key tables with fewer slots than this (256 KiB of them) are not touched ahead (decodeBatch). */
const TOUCH_MIN_SLOTS: u32 = 32768;
export const NO_AGG: u32 = 0xffffffff;
const MAX_TS: f64 = 8.64e15;

let cfg: usize = 0;
let aggCount: u32 = 0;
let tables: usize = 0; // u32[aggCount] intern table handles
export let fixBase: usize = 0;
export let fixCount: u32 = 0;
let fixCap: u32 = 0;
let scratch: usize = 0;
let scratchCap: usize = 0;
let tagBase: usize = 0; // u32[tagCap]: each record's key hash, per aggregation in turn
let tagCap: u32 = 0;

export function decodeInit(config: usize, aggregations: u32): void {
  cfg = config;
  aggCount = aggregations;
  tables = zalloc(<usize>aggregations << 2);
  for (let a: u32 = 0; a < aggregations; a++) stu(tables + (<usize>a << 2), <u32>internTableNew());
  fixCap = 256;
  fixBase = heap.alloc(<usize>fixCap * FIX_BYTES);
  scratchCap = 1024;
  scratch = heap.alloc(scratchCap);
}

export function keyTable(a: u32): usize { return <usize>ldu(tables + (<usize>a << 2)); }

function fixup(i: u32, p: u32, a: u32): void {
  if (fixCount == fixCap) {
    fixCap <<= 1;
    fixBase = heap.realloc(fixBase, <usize>fixCap * FIX_BYTES);
  }
  const f = fixBase + <usize>fixCount * FIX_BYTES;
  stu(f, i);
  stu(f + 4, p);
  stu(f + 8, a);
  fixCount++;
}

/**
 * Scans n records and fills ts, val[a] and key[a] (raw key ids of each
 * aggregation's intern table). Reads bytes/bounds (see scan.ts); writes fields
 * (n × P × FIELD_BYTES), status (n × u8), the batch arrays and the fixup list.
 * Returns the number of fixups.
 */
export function decodeBatch(bytes: usize, bounds: usize, n: u32, spec: usize, fields: usize, status: usize): u32 {
  scanRecords(bytes, bounds, <i32>n, spec, fields, status);
  return decodeFields(bytes, n, fields, status);
}

/**
 * decodeBatch after its scan: the fields and status of n records that scanRecords
 * wrote (here, or in another thread's core with the same spec, from the same bytes)
 * to the batch arrays and the fixup list. Returns the number of fixups.
 */
export function decodeFields(bytes: usize, n: u32, fields: usize, status: usize): u32 {
  fixCount = 0;
  const P = <usize>ldu(cfg);
  const tsPath = <usize>ldu(cfg + 4);
  if (n * aggCount > tagCap) {
    if (tagBase) heap.free(tagBase);
    tagCap = n * aggCount;
    tagBase = heap.alloc((<usize>tagCap << 2) + 8); // + where the touch passes leave what they read
  }
  // With many keys, the keys' hashes first, and two passes that touch what each lookup
  // will read: each lookup would miss the cache on its slot, then on its entry, in turn.
  // A small table stays in the cache: its keys are hashed as they are looked up.
  let c = cfg + 8;
  let acc: u64 = 0;
  let touched: u64 = 0; // bit a: aggregation a's hashes are in tagBase
  for (let a: u32 = 0; a < aggCount; a++) {
    const nGroup = <usize>ldu(c + 4);
    const groups = c + 8;
    c = groups + (nGroup << 2);
    const t = keyTable(a), tags = tagBase + (<usize>(a * n) << 2);
    if (internSlots(t) < TOUCH_MIN_SLOTS) continue;
    touched |= <u64>1 << a;
    for (let i: u32 = 0; i < n; i++) {
      if (ldb(status + <usize>i) != STATUS_OK) continue;
      const len = keyBytes(bytes, fields + <usize>i * P * FIELD_BYTES, groups, nGroup);
      const tag = internHash(scratch, <u32>len);
      stu(tags + (<usize>i << 2), tag);
      acc ^= internTouch(t, tag, false);
    }
    for (let i: u32 = 0; i < n; i++) {
      if (ldb(status + <usize>i) != STATUS_OK) continue;
      acc ^= internTouch(t, ldu(tags + (<usize>i << 2)), true);
    }
  }
  // Stored, so that the optimizer keeps the reads.
  store<u64>(tagBase + (<usize>tagCap << 2), acc);
  for (let i: u32 = 0; i < n; i++) {
    const rec = fields + <usize>i * P * FIELD_BYTES;
    const ok = ldb(status + <usize>i) == STATUS_OK;
    // Event time.
    let t: f64 = NaN;
    if (ok) {
      const f = rec + tsPath * FIELD_BYTES;
      const kind = ldb(f + F_KIND);
      if (kind == KIND_NUMBER) {
        if (ldb(f + F_FLAGS) & FLAG_NUM_EXACT) {
          const x = ldf(f + F_NUM);
          if (x == Math.trunc(x) && abs(x) <= MAX_TS) t = x;
        } else fixup(i, <u32>tsPath, NO_AGG);
      } else if (kind == KIND_STRING) {
        if (ldb(f + F_FLAGS) & FLAG_STR_ESCAPED) fixup(i, <u32>tsPath, NO_AGG);
        else {
          const s = bytes + <usize>ldu(f + F_START) + 1;
          t = parseIsoMs(s, ldu(f + F_END) - ldu(f + F_START) - 2);
        }
      }
    }
    stf(tsBase + (<usize>i << 3), t);
    // Per aggregation: value and key.
    c = cfg + 8;
    for (let a: u32 = 0; a < aggCount; a++) {
      const valuePath = <usize>ldu(c);
      const nGroup = <usize>ldu(c + 4);
      const groups = c + 8;
      c = groups + (nGroup << 2);
      let x: f64 = NaN;
      if (ok) {
        const f = rec + valuePath * FIELD_BYTES;
        if (ldb(f + F_KIND) == KIND_NUMBER) {
          if (ldb(f + F_FLAGS) & FLAG_NUM_EXACT) x = ldf(f + F_NUM);
          else fixup(i, <u32>valuePath, a);
        }
      }
      stf(aggValues(a) + (<usize>i << 3), x);
      let key: u32 = 0;
      if (ok) {
        const len = <u32>keyBytes(bytes, rec, groups, nGroup);
        const tag = touched & (<u64>1 << a) ? ldu(tagBase + (<usize>(a * n + i) << 2)) : internHash(scratch, len);
        key = internHashed(keyTable(a), scratch, len, tag);
      }
      stu(aggKeys(a) + (<usize>i << 2), key);
    }
  }
  return fixCount;
}

/** Copies [src, src+n): tokens are short, and memory.copy is a call out of the generated code in V8. */
// @ts-ignore: decorator
@inline function copyShort(dst: usize, src: usize, n: usize): void {
  let i: usize = 0;
  for (; i + 8 <= n; i += 8) store<u64>(dst + i, load<u64>(src + i));
  for (; i < n; i++) store<u8>(dst + i, load<u8>(src + i));
}

/** Writes the key of a record into scratch: kind byte + raw token of each group-by field, 0-separated. Returns its length. */
// @ts-ignore: decorator
@inline function keyBytes(bytes: usize, rec: usize, groups: usize, nGroup: usize): usize {
  let len: usize = 0;
  for (let g: usize = 0; g < nGroup; g++) {
    const f = rec + <usize>ldu(groups + (g << 2)) * FIELD_BYTES;
    const kind = ldb(f + F_KIND);
    const start = <usize>ldu(f + F_START);
    const tok: usize = kind == KIND_MISSING ? 0 : <usize>ldu(f + F_END) - start;
    if (len + tok + 2 > scratchCap) {
      while (len + tok + 2 > scratchCap) scratchCap <<= 1;
      scratch = heap.realloc(scratch, scratchCap);
    }
    stb(scratch + len, kind);
    copyShort(scratch + len + 1, bytes + start, tok);
    len += tok + 1;
    stb(scratch + len, 0);
    len++;
  }
  return len;
}
