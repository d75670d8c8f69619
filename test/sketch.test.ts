// The percentile sketch, exactly: a window of a few values keeps its buckets inline in
// its header, a larger one in bucket arrays (assembly/sketch.ts). Whichever it holds,
// p50/p95/p99 and the serialized sketch must be, bit for bit, what a plain model of the
// bucket scheme gives: here, sessions of chosen values cross every move between the two
// (a fifth bucket, a negative value, more values than it holds inline, merges of
// sessions of either kind), and a restore from the serialized state answers the same.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { WindowOperator, decodeStateValue, type Output } from '../src/pipeline/operator';
import { batchOfLines } from '../src/sources/lines';
import type { WindowResult } from '../src/pipeline/types';
import { testConfig } from './helpers/run';

// ─── The model: log-linear buckets (index = bits(|x|) >> 46), midpoints, ranks ───

const f64 = new Float64Array(1);
const u64 = new BigUint64Array(f64.buffer);
const TWO_64 = 2 ** 64;

function bucketIndex(m: number): number {
  f64[0] = m >= 2.2250738585072014e-308 ? m : m * TWO_64;
  const i = Number(u64[0]! >> 46n);
  return m >= 2.2250738585072014e-308 ? i : i - 4096;
}

function bucketValue(i: number): number {
  u64[0] = (BigInt(i >= 64 ? i : i + 4096) << 46n) | (1n << 45n);
  return i >= 64 ? f64[0]! : f64[0]! / TWO_64;
}

/** Bucket counts of one sign, by index. */
function buckets(values: readonly number[]): Map<number, number> {
  const m = new Map<number, number>();
  for (const v of values) m.set(bucketIndex(Math.abs(v)), (m.get(bucketIndex(Math.abs(v))) ?? 0) + 1);
  return m;
}

/** The value of rank floor(q·(n-1)): negatives from the most negative bucket, zeros, positives; clamped to [min, max]. */
function quantile(values: readonly number[], q: number): number {
  const lo = Math.min(...values), hi = Math.max(...values);
  if (Object.is(lo, hi)) return lo;
  const order: number[] = [];
  const neg = buckets(values.filter((v) => v < 0)), pos = buckets(values.filter((v) => v > 0));
  for (const i of [...neg.keys()].sort((a, b) => b - a)) for (let c = 0; c < neg.get(i)!; c++) order.push(-bucketValue(i));
  for (const v of values) if (v === 0) order.push(0);
  for (const i of [...pos.keys()].sort((a, b) => a - b)) for (let c = 0; c < pos.get(i)!; c++) order.push(bucketValue(i));
  return Math.min(Math.max(order[Math.floor(q * (values.length - 1))]!, lo), hi);
}

function varint(v: number): number[] {
  const out: number[] = [];
  for (; v >= 0x80; v = Math.floor(v / 128)) out.push((v & 0x7f) | 0x80);
  out.push(v);
  return out;
}

/** A store as serialized (format 2): first index, n (top bit: sparse), counts dense or (skip, count) varints, whichever is shorter. */
function storeBytes(m: Map<number, number>): number[] {
  const idx = [...m.keys()].sort((a, b) => a - b);
  const head = Buffer.alloc(8);
  if (idx.length === 0) return [...head];
  const lo = idx[0]!, n = idx[idx.length - 1]! - lo + 1;
  const sparse: number[] = [];
  let last = lo;
  for (const i of idx) {
    sparse.push(...varint(i - last), ...varint(m.get(i)!));
    last = i + 1;
  }
  head.writeInt32LE(lo, 0);
  if (sparse.length >= 4 * n) {
    head.writeUInt32LE(n, 4);
    const dense = Buffer.alloc(4 * n);
    for (const i of idx) dense.writeUInt32LE(m.get(i)!, 4 * (i - lo));
    return [...head, ...dense];
  }
  head.writeUInt32LE((n | 0x80000000) >>> 0, 4);
  return [...head, ...sparse];
}

function sketchBytes(values: readonly number[]): Buffer {
  const zeros = Buffer.alloc(4);
  zeros.writeUInt32LE(values.filter((v) => v === 0).length);
  return Buffer.from([...zeros, ...storeBytes(buckets(values.filter((v) => v > 0))), ...storeBytes(buckets(values.filter((v) => v < 0)))]);
}

// ─── The cases: one key each, its values in one session (gap 500 ms) ──────────

const many = (n: number, v: number): number[] => Array.from({ length: n }, () => v);
const CASES: Record<string, number[]> = {
  one: [5],
  same: [5, 5, 5],
  'one bucket': [1000, 1001, 1002],
  two: [1, 2],
  four: [100, 200, 300, 400],
  'fifth bucket': [100, 200, 300, 400, 500],
  'fifth after repeats': [100, 200, 300, 400, 100, 200, 500, 300],
  zeros: [0, 7, 0, 9, 0],
  'zeros only': [0, 0],
  'negative first': [-3, 4],
  'negative after four': [4, 8, 16, 32, -1, 0],
  'negative third': [4, 8, -3],
  subnormal: [5e-324, 1e-310, 1],
  huge: [1e300, 1.7976931348623157e308, 2],
  'values at the inline maximum': many(8, 42),
  'one past it': [...many(8, 42), 7],
  'many in one bucket': many(300, 42),
  'three buckets, busy': Array.from({ length: 900 }, (_, i) => [3, 7, 50][i % 3]!),
  'count far past it': many(20000, 42),
};

/** Two sessions of a key, then an event between them that merges the three. */
const MERGES: Record<string, [number[], number[], number]> = {
  'inline + inline, inline': [[10, 20], [30], 10],
  'inline + inline, past four': [[10, 20, 40], [80, 160], 320],
  'inline + arrays': [[10], [1, 2, 4, 8, 16, 32], 10],
  'arrays + inline': [[1, 2, 4, 8, 16, 32], [10], 10],
  'inline + negative': [[10, 20], [-5], 0],
  'inline + inline, past the inline maximum of values': [many(4, 3), many(4, 3), 3],
};

function lines(): { lines: string[]; want: Map<string, number[]> } {
  const out: string[] = [];
  const want = new Map<string, number[]>();
  let t = 1_000;
  const ev = (k: string, ts: number, v: number): void => void out.push(JSON.stringify({ timestamp: ts, k, v }));
  for (const [k, values] of Object.entries(CASES)) {
    values.forEach((v, i) => ev(k, t + (i % 100), v));
    want.set(k, values);
    t += 10_000;
  }
  for (const [k, [a, b, bridge]] of Object.entries(MERGES)) {
    a.forEach((v) => ev(k, t, v));
    b.forEach((v) => ev(k, t + 1_000, v));
    ev(k, t + 500, bridge); // [t+500, t+1000) touches both, [t, t+500) and [t+1000, t+1500): one session
    want.set(k, [...a, ...b, bridge]);
    t += 10_000;
  }
  return { lines: out, want };
}

const cfg = testConfig({
  eventTime: { field: 'timestamp', maxOutOfOrdernessMs: 1e9, allowedLatenessMs: 0 },
  aggregations: [{ name: 's', groupBy: ['k'], value: 'v', window: { type: 'session', gapMs: 500 } }],
});

function feed(op: WindowOperator, input: readonly string[]): void {
  for (let i = 0; i < input.length; i += 4096) op.process(batchOfLines(input.slice(i, i + 4096), 0, i));
}

function results(o: Output): Map<string, WindowResult> {
  return new Map(o.results.toObjects().map((r) => [r.group['k']!, r]));
}

function checkResults(got: Map<string, WindowResult>, want: Map<string, number[]>, what: string): void {
  assert.equal(got.size, want.size, `${what}: one session per case`);
  for (const [k, values] of want) {
    const r = got.get(k);
    assert.ok(r !== undefined, `${what}: ${k} fired`);
    assert.equal(r.results.count, values.length, `${what}: ${k} count`);
    for (const [q, v] of [[0.5, r.results.p50], [0.95, r.results.p95], [0.99, r.results.p99]] as const) assert.equal(v, quantile(values, q), `${what}: ${k} p${q * 100}`);
  }
}

test('sketches: inline and in bucket arrays, quantiles and serialized bytes equal the model of the buckets', () => {
  const { lines: input, want } = lines();
  const op = new WindowOperator(cfg, { clock: () => 0 });
  feed(op, input);
  const snapshot = [...op.snapshot()];
  assert.equal(snapshot.length, want.size, 'one live session per case');
  for (const [key, value] of snapshot) {
    const st = decodeStateValue(key, value);
    const core = Buffer.from(st.core);
    const k = st.values[0]!;
    assert.deepEqual([...core.subarray(60)], [...sketchBytes(want.get(k)!)], `${k}: the serialized sketch`);
  }
  checkResults(results(op.finish()), want, 'live');

  // Restored from those bytes (into bucket arrays), the same answers.
  const restored = new WindowOperator(cfg, { clock: () => 0 });
  restored.restore(new Map(snapshot), -Infinity);
  checkResults(results(restored.finish()), want, 'restored');
});

test('sketches: random small sessions, merged and not, equal the model', () => {
  let a = 7;
  const rnd = (): number => ((a = (Math.imul(a, 1103515245) + 12345) >>> 0) / 4294967296);
  const input: string[] = [];
  const want = new Map<string, number[]>();
  for (let s = 0; s < 3000; s++) {
    const k = `r${s}`, t = 1_000 + s * 10_000;
    const n = 1 + Math.floor(rnd() * 7);
    const values: number[] = [];
    for (let i = 0; i < n; i++) {
      const r = rnd();
      // A few distinct magnitudes, some repeated, now and then a zero or a negative.
      const v = r < 0.05 ? 0 : (r < 0.1 ? -1 : 1) * [3, 7, 50, 51, 400, 4096, 1e6][Math.floor(rnd() * 7)]!;
      values.push(v);
      // Every other key in two sessions that its last event joins into one.
      input.push(JSON.stringify({ timestamp: s % 2 === 0 ? t + i : i < n - 1 ? t + (i % 2) * 1_000 : t + 500, k, v }));
    }
    want.set(k, values);
  }
  const op = new WindowOperator(cfg, { clock: () => 0 });
  feed(op, input);
  for (const [key, value] of op.snapshot()) {
    const st = decodeStateValue(key, value);
    const values = want.get(st.values[0]!)!;
    assert.deepEqual([...Buffer.from(st.core).subarray(60)], [...sketchBytes(values)], `${st.values[0]}: the serialized sketch`);
  }
  checkResults(results(op.finish()), want, 'random');
});
