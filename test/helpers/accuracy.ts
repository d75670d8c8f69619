/** True when v is within 1% of some value between the sorted values at floor and ceil of rank q(n-1) (docs/semantics.md). */
export function quantileOk(sorted: readonly number[], q: number, v: number): boolean {
  const r = q * (sorted.length - 1);
  const lo = sorted[Math.floor(r)]!, hi = sorted[Math.ceil(r)]!;
  if (v >= lo && v <= hi) return true;
  const t = v < lo ? lo : hi;
  return Math.abs(v - t) <= 0.01 * Math.abs(t);
}
