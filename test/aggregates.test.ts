// Accuracy of the core's aggregates against plain two-pass references (docs/semantics.md, Results).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { runLines, testConfig, finals } from './helpers/run';
import { rng, normal, fsum } from './helpers/random';
import { quantileOk } from './helpers/accuracy';

const cfg = testConfig({
  eventTime: { maxOutOfOrdernessMs: 0, allowedLatenessMs: 0 },
  aggregations: [{ name: 'a', value: 'v', window: { type: 'tumbling', sizeMs: 1_000_000 } }],
});

/** Aggregates of `values` computed by the real pipeline (one window). */
function aggregate(values: readonly number[]) {
  const lines = values.map((v, i) => JSON.stringify({ timestamp: i % 1000, v }));
  const { results } = runLines(cfg, lines);
  assert.equal(results.length, 1);
  return results[0]!.results;
}


const distributions: Record<string, (r: () => number) => number> = {
  uniform: (r) => r() * 1000,
  lognormal: (r) => Math.exp(5 + 1.5 * normal(r)),
  exponential: (r) => -Math.log(1 - r()) * 250,
  'normal around zero': (r) => normal(r) * 100,
  'negative only': (r) => -1 - r() * 1e6,
  'with many zeros': (r) => (r() < 0.6 ? 0 : r() * 10),
  'log-uniform over the whole double range': (r) => Math.pow(10, -300 + r() * 600) * (r() < 0.5 ? -1 : 1),
  subnormals: (r) => r() * 1e-310,
  constant: () => 42.42,
  'integers 1..5': (r) => 1 + Math.floor(r() * 5),
};

for (const [name, draw] of Object.entries(distributions)) {
  test(`p50/p95/p99 within 1% of the true rank value: ${name}`, () => {
    const r = rng(name.length * 7919);
    const values = Array.from({ length: 20_000 }, () => draw(r));
    const got = aggregate(values);
    const sorted = [...values].sort((a, b) => a - b);
    for (const [q, v] of [[0.5, got.p50], [0.95, got.p95], [0.99, got.p99]] as const) {
      assert.ok(quantileOk(sorted, q, v), `${name}: p${q * 100} = ${v}, true ${sorted[Math.floor(q * (sorted.length - 1))]}`);
    }
  });
}

test('small windows: quantiles of 1, 2 and 3 values', () => {
  for (const values of [[7], [1, 100], [-5, 0, 5], [3, 3, 3]]) {
    const got = aggregate(values);
    const sorted = [...values].sort((a, b) => a - b);
    assert.ok(quantileOk(sorted, 0.5, got.p50), `p50 of ${values.join(',')}: ${got.p50}`);
    assert.ok(quantileOk(sorted, 0.99, got.p99), `p99 of ${values.join(',')}: ${got.p99}`);
  }
});

function twoPass(values: readonly number[]) {
  const n = values.length;
  const mean = fsum(values) / n;
  const m2 = fsum(values.map((x) => (x - mean) * (x - mean)));
  return { sum: fsum(values), mean, stddev: Math.sqrt(m2 / n) };
}

function close(got: number, want: number, rel: number, what: string): void {
  assert.ok(Math.abs(got - want) <= rel * Math.abs(want) + 1e-300, `${what}: got ${got}, want ${want} (rel ${rel})`);
}

test('count, min, max exact; sum and avg to 1e-9; stddev to 1e-6 (two-pass reference)', () => {
  const r = rng(11);
  for (const [name, values] of Object.entries({
    lognormal: Array.from({ length: 50_000 }, () => Math.exp(3 + normal(r))),
    'large and close together: 1.5e9 ± 2': Array.from({ length: 50_000 }, () => 1.5e9 + (r() * 4 - 2)),
    'cancelling sum': Array.from({ length: 10_000 }, (_, i) => (i % 2 ? 1e15 : -1e15) + r()),
    'mixed signs': Array.from({ length: 10_000 }, () => normal(r) * 1e6),
  })) {
    const got = aggregate(values);
    const want = twoPass(values);
    assert.equal(got.count, values.length, `${name} count`);
    assert.equal(got.min, Math.min(...values), `${name} min`);
    assert.equal(got.max, Math.max(...values), `${name} max`);
    close(got.sum, want.sum, 1e-9, `${name} sum`);
    close(got.avg, want.mean, 1e-9, `${name} avg`);
    close(got.stddev, want.stddev, 1e-6, `${name} stddev`);
  }
});

test('stddev of a constant is 0 and of one value is 0', () => {
  assert.equal(aggregate([1.5e9, 1.5e9, 1.5e9]).stddev, 0);
  assert.equal(aggregate([3]).stddev, 0);
});

test('min and max keep the sign of zero as Math.min and Math.max do, whatever the order', () => {
  for (const order of [['0', '-0'], ['-0', '0'], ['1', '-0', '0', '-1e-320', '0']]) {
    const lines = order.map((v, i) => `{"timestamp": ${i}, "v": ${v}}`);
    const got = runLines(cfg, lines).results[0]!.results;
    const values = order.map(Number);
    assert.ok(Object.is(got.min, Math.min(...values)), `min of ${order.join(',')}: ${got.min}`);
    assert.ok(Object.is(got.max, Math.max(...values)), `max of ${order.join(',')}: ${got.max}`);
  }
});

/** A JSON number for `v` that keeps the sign of zero (JSON.stringify(-0) is "0"). */
const num = (v: number): string => (Object.is(v, -0) ? '-0' : JSON.stringify(v));

const anyValue = fc.oneof(
  fc.double({ noNaN: true, noDefaultInfinity: true }),
  fc.integer({ min: -1000, max: 1000 }),
  fc.constantFrom(0, -0, 5e-324, -1e-310, 1, -1, 812.4),
  fc.double({ min: 1e-3, max: 1e4, noNaN: true }),
);

test('p50, p95, p99 never lie outside [min, max] of their window, every window type (random data)', () => {
  const windows = [
    { type: 'tumbling', sizeMs: 10 },
    { type: 'sliding', sizeMs: 10, slideMs: 5 },
    { type: 'session', gapMs: 3 },
  ];
  const groups = fc.array(fc.tuple(fc.integer({ min: 0, max: 40 }), fc.integer({ min: 0, max: 2 }), anyValue), { minLength: 1, maxLength: 200 });
  fc.assert(
    fc.property(groups, fc.constantFrom(...windows), fc.integer({ min: 0, max: 20 }), (events, window, outOfOrder) => {
      const c = testConfig({
        eventTime: { maxOutOfOrdernessMs: outOfOrder, allowedLatenessMs: 5 },
        aggregations: [{ name: 'a', groupBy: ['k'], value: 'v', window }],
      });
      const lines = events.map(([ts, k, v]) => `{"timestamp": ${ts}, "k": ${k}, "v": ${num(v)}}`);
      for (const { key, window: w, results: r } of runLines(c, lines).results) {
        for (const [q, v] of [['p50', r.p50], ['p95', r.p95], ['p99', r.p99]] as const) {
          assert.ok(v >= r.min && v <= r.max, `${key} [${w.start}, ${w.end}) ${q} = ${v} outside [${r.min}, ${r.max}]`);
        }
      }
    }),
    { numRuns: Number(process.env['WEIR_PROPERTY_RUNS'] ?? 300), seed: process.env['WEIR_PROPERTY_SEED'] ? Number(process.env['WEIR_PROPERTY_SEED']) : undefined },
  );
});

test('quantiles stay within 1% of the true rank value after clamping (random data, final tumbling windows)', () => {
  fc.assert(
    fc.property(fc.array(fc.tuple(fc.integer({ min: 0, max: 29 }), anyValue), { minLength: 1, maxLength: 300 }), (events) => {
      // Out-of-orderness larger than the time range: every event is on time, so a final window holds all of its events.
      const c = testConfig({ eventTime: { maxOutOfOrdernessMs: 100, allowedLatenessMs: 0 }, aggregations: [{ name: 'a', value: 'v', window: { type: 'tumbling', sizeMs: 10 } }] });
      const lines = events.map(([ts, v]) => `{"timestamp": ${ts}, "v": ${num(v)}}`);
      for (const [, f] of finals(runLines(c, lines).results)) {
        const sorted = events.filter(([ts]) => ts >= f.window.start && ts < f.window.end).map(([, v]) => v).sort((a, b) => a - b);
        assert.equal(f.results.count, sorted.length);
        for (const [q, v] of [[0.5, f.results.p50], [0.95, f.results.p95], [0.99, f.results.p99]] as const) {
          assert.ok(quantileOk(sorted, q, v), `p${q * 100} = ${v} not within 1% of ${sorted.join(',')}`);
        }
      }
    }),
    { numRuns: Number(process.env['WEIR_PROPERTY_RUNS'] ?? 300), seed: process.env['WEIR_PROPERTY_SEED'] ? Number(process.env['WEIR_PROPERTY_SEED']) : undefined },
  );
});

test('a window whose values are all equal returns that value exactly as p50, p95 and p99', () => {
  fc.assert(
    fc.property(anyValue, fc.integer({ min: 1, max: 50 }), (v, n) => {
      const lines = Array.from({ length: n }, (_, i) => `{"timestamp": ${i}, "v": ${num(v)}}`);
      const r = runLines(cfg, lines).results[0]!.results;
      for (const q of [r.p50, r.p95, r.p99]) assert.ok(Object.is(q, v), `${n} × ${num(v)}: got ${num(q)}`);
    }),
    { numRuns: Number(process.env['WEIR_PROPERTY_RUNS'] ?? 300) },
  );
  // Values the sketch's bucket midpoints miss: latencies, cents, the largest and smallest doubles.
  for (const v of [812.4, 0.0123, 42.42, 1.5e9, -3.7, Number.MAX_VALUE, -Number.MAX_VALUE, Number.MIN_VALUE]) {
    const r = aggregate([v, v, v, v, v]);
    assert.deepEqual([r.p50, r.p95, r.p99], [v, v, v], `five × ${v}`);
  }
});
