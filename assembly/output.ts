// Growable output regions: results (firings) and gone records (purged windows).
// TS reads them after each call through outPtr/outCount and gonePtr/goneCount.
import {
  RES_AGG, RES_KEY, RES_FLAGS, RES_SID, RES_START, RES_END, RES_COUNT, RES_SUM, RES_MIN, RES_MAX,
  RES_AVG, RES_STDDEV, RES_P50, RES_P95, RES_P99, RES_BYTES, RES_LATE,
  GONE_AGG, GONE_KEY, GONE_START, GONE_END, GONE_SLOT, GONE_BYTES,
  SLOT_COUNT, SLOT_MIN, SLOT_MAX, SLOT_MEAN, SLOT_START, SLOT_END, SLOT_KEY, SLOT_SKETCH, SLOT_FLAGS, SLOT_SID,
  SLOT_FIRED,
} from './layout';
import { ldf, stf, ldu, stu } from './mem';
import { accSum, accStddev } from './accumulator';
import { sketchQuantiles, q0, q1, q2 } from './sketch';
import { slotAddr } from './slots';

export let outBase: usize = 0;
export let outCount: u32 = 0;
let outCap: u32 = 0;
/**
 * Results one advance call emits before it stops (firing the rest at its next call):
 * the end of the input fires every open window, and in steps of a bounded number of
 * results their records, lines and keys stay in the cache and in memory already used.
 */
export let fireLimit: u32 = u32.MAX_VALUE;
export function setFireLimit(n: u32): void {
  fireLimit = n;
}
export let goneBase: usize = 0;
export let goneCount: u32 = 0;
let goneCap: u32 = 0;
/** Whether purged windows are recorded (TS reads them only to list them or to track checkpointed state). */
let goneOn: bool = true;

export function goneRecords(on: bool): void {
  goneOn = on;
}

export function outputInit(): void {
  outCap = 1024;
  outBase = heap.alloc(<usize>outCap * RES_BYTES);
  goneCap = 1024;
  goneBase = heap.alloc(<usize>goneCap * GONE_BYTES);
}

export function outputReset(): void {
  outCount = 0;
  goneCount = 0;
}

/** Appends the current result of slot `i` of aggregation `agg` and marks it fired. */
export function emitResult(agg: u32, i: u32, late: bool): void {
  if (outCount == outCap) {
    outCap <<= 1;
    outBase = heap.realloc(outBase, <usize>outCap * RES_BYTES);
  }
  const s = slotAddr(i);
  const r = outBase + <usize>outCount * RES_BYTES;
  outCount++;
  const n = ldf(s + SLOT_COUNT);
  stu(r + RES_AGG, agg);
  stu(r + RES_KEY, ldu(s + SLOT_KEY));
  stu(r + RES_FLAGS, late ? RES_LATE : 0);
  stu(r + RES_SID, ldu(s + SLOT_SID));
  stf(r + RES_START, ldf(s + SLOT_START));
  stf(r + RES_END, ldf(s + SLOT_END));
  stf(r + RES_COUNT, n);
  stf(r + RES_SUM, accSum(s));
  const lo = ldf(s + SLOT_MIN), hi = ldf(s + SLOT_MAX);
  stf(r + RES_MIN, lo);
  stf(r + RES_MAX, hi);
  // The compensated sum gives the mean exact to rounding; Welford's running mean drifts by ~eps·max|x|.
  stf(r + RES_AVG, n > 0 ? accSum(s) / n : NaN);
  stf(r + RES_STDDEV, accStddev(s));
  // A bucket's midpoint can lie past the window's extremes (p99 above max, p50 below
  // min); the true value lies within them, so clamping only brings the answer closer,
  // and a window of equal values (min == max) gets that value exactly. f64.min/max
  // order -0 below +0, so a window of -0 answers -0. Once per firing, not per event.
  // Equal extremes, bit for bit (a window of one value: every other session of a
  // user), need no pass over the sketch: the clamp gives them whatever it holds.
  if (reinterpret<u64>(lo) == reinterpret<u64>(hi) && n > 0) {
    stf(r + RES_P50, lo);
    stf(r + RES_P95, lo);
    stf(r + RES_P99, lo);
  } else {
    sketchQuantiles(s + SLOT_SKETCH, n, 0.5, 0.95, 0.99);
    stf(r + RES_P50, min(max(q0, lo), hi));
    stf(r + RES_P95, min(max(q1, lo), hi));
    stf(r + RES_P99, min(max(q2, lo), hi));
  }
  stu(s + SLOT_FLAGS, ldu(s + SLOT_FLAGS) | SLOT_FIRED);
}

/** Records that the state of slot `i` is gone (purged), for the state backend. */
export function emitGone(agg: u32, i: u32): void {
  if (!goneOn) return;
  if (goneCount == goneCap) {
    goneCap <<= 1;
    goneBase = heap.realloc(goneBase, <usize>goneCap * GONE_BYTES);
  }
  const s = slotAddr(i);
  const g = goneBase + <usize>goneCount * GONE_BYTES;
  goneCount++;
  stu(g + GONE_AGG, agg);
  stu(g + GONE_KEY, ldu(s + SLOT_KEY));
  stf(g + GONE_START, ldf(s + SLOT_START));
  stf(g + GONE_END, ldf(s + SLOT_END));
  stu(g + GONE_SLOT, i);
}
