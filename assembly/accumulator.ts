// count, sum, min, max, mean and M2 of one window.
//
// The mean and M2 follow Welford's update and Chan et al.'s parallel merge, so the
// variance never comes from sqrt(E[x^2] - mean^2) on raw sums: values like
// 1.5e9 ± 2 keep their stddev to ~1e-9 relative. The sum is compensated (Neumaier:
// the exact rounding error of every add is summed apart), so it stays exact to
// rounding even when large terms cancel.
import { SLOT_COUNT, SLOT_SUM, SLOT_SUM_ERR, SLOT_MIN, SLOT_MAX, SLOT_MEAN, SLOT_M2 } from './layout';
import { ldf, stf } from './mem';

export function accInit(s: usize): void {
  stf(s + SLOT_COUNT, 0);
  stf(s + SLOT_SUM, 0);
  stf(s + SLOT_SUM_ERR, 0);
  stf(s + SLOT_MIN, Infinity);
  stf(s + SLOT_MAX, -Infinity);
  stf(s + SLOT_MEAN, 0);
  stf(s + SLOT_M2, 0);
}

/**
 * The rounding error of t = a + b, exactly (Knuth's TwoSum). It is the error that
 * Neumaier's form computes after testing which operand is larger; without the test,
 * nothing on the hot path branches on the data.
 */
// @ts-ignore: decorator
@inline function addError(a: f64, b: f64, t: f64): f64 {
  const bv = t - a;
  return (a - (t - bv)) + (b - bv);
}

// @ts-ignore: decorator
@inline export function accAdd(s: usize, x: f64): void {
  const n = ldf(s + SLOT_COUNT) + 1;
  stf(s + SLOT_COUNT, n);
  const sum = ldf(s + SLOT_SUM);
  const t = sum + x;
  stf(s + SLOT_SUM, t);
  stf(s + SLOT_SUM_ERR, ldf(s + SLOT_SUM_ERR) + addError(sum, x, t));
  // Stores only when the extreme moves (rare once a window has a few values): a
  // window update is bound by its stores.
  // (<= and f64.min keep min's sign of zero: min(0, -0) is -0.)
  const lo = ldf(s + SLOT_MIN), hi = ldf(s + SLOT_MAX);
  if (x <= lo) stf(s + SLOT_MIN, min(lo, x));
  if (x >= hi) stf(s + SLOT_MAX, max(hi, x));
  const mean = ldf(s + SLOT_MEAN);
  const delta = x - mean;
  const mean2 = mean + delta / n;
  stf(s + SLOT_MEAN, mean2);
  stf(s + SLOT_M2, ldf(s + SLOT_M2) + delta * (x - mean2));
}

/** Merges accumulator `b` into `a` (Chan's parallel update). */
export function accMerge(a: usize, b: usize): void {
  const nb = ldf(b + SLOT_COUNT);
  if (nb == 0) return;
  const na = ldf(a + SLOT_COUNT);
  if (na == 0) {
    memory.copy(a, b, SLOT_M2 + 8);
    return;
  }
  const n = na + nb;
  const ma = ldf(a + SLOT_MEAN);
  const delta = ldf(b + SLOT_MEAN) - ma;
  stf(a + SLOT_MEAN, ma + delta * (nb / n));
  stf(a + SLOT_M2, ldf(a + SLOT_M2) + ldf(b + SLOT_M2) + delta * delta * (na * nb / n));
  stf(a + SLOT_COUNT, n);
  // Neumaier-add b's sum (value and compensation) into a's.
  const sum = ldf(a + SLOT_SUM);
  const x = ldf(b + SLOT_SUM);
  const t = sum + x;
  stf(a + SLOT_SUM, t);
  stf(a + SLOT_SUM_ERR, ldf(a + SLOT_SUM_ERR) + addError(sum, x, t) + ldf(b + SLOT_SUM_ERR));
  stf(a + SLOT_MIN, min(ldf(a + SLOT_MIN), ldf(b + SLOT_MIN)));
  stf(a + SLOT_MAX, max(ldf(a + SLOT_MAX), ldf(b + SLOT_MAX)));
}

// @ts-ignore: decorator
@inline export function accSum(s: usize): f64 { return ldf(s + SLOT_SUM) + ldf(s + SLOT_SUM_ERR); }

/** Population standard deviation. */
// @ts-ignore: decorator
@inline export function accStddev(s: usize): f64 {
  const n = ldf(s + SLOT_COUNT);
  return n > 0 ? Math.sqrt(max(ldf(s + SLOT_M2), 0) / n) : 0;
}
