// Random, out-of-order, late, invalid and malformed event sequences through the whole
// pipeline (WASM core included), compared window by window and dead letter by dead
// letter with the plain reference implementation of docs/semantics.md (test/reference).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { runReference, type RefAggregation, type RefEmission } from './reference/reference';
import { runLines, testConfig } from './helpers/run';
import { WindowOperator, decodeStateValue } from '../src/pipeline/operator';
import { batchOfLines } from '../src/sources/lines';
import type { WindowResult } from '../src/pipeline/types';
import { quantileOk } from './helpers/accuracy';

const windowArb = fc.oneof(
  fc.record({ type: fc.constant('tumbling' as const), sizeMs: fc.integer({ min: 1, max: 60 }) }),
  fc.integer({ min: 1, max: 30 }).chain((slideMs) =>
    fc.record({ type: fc.constant('sliding' as const), sizeMs: fc.integer({ min: slideMs, max: 80 }), slideMs: fc.constant(slideMs) }),
  ),
  fc.record({ type: fc.constant('session' as const), gapMs: fc.integer({ min: 1, max: 30 }) }),
);

const aggsArb = fc.array(fc.record({ window: windowArb, group: fc.constantFrom<string[]>([], ['k'], ['k', 'm.r']), value: fc.constantFrom('v', 'w') }), { minLength: 1, maxLength: 3 }).map((list) =>
  list.map((a, i): RefAggregation => ({ name: `agg${i}`, groupBy: a.group, value: a.value, window: a.window })),
);

/** One input line: mostly valid events with disorder, some late, invalid, malformed or blank. */
const lineArb = (base: number) =>
  fc.oneof(
    { weight: 20, arbitrary: fc.record({ dt: fc.integer({ min: -40, max: 12 }), k: fc.constantFrom('a', 'b', 'c', 'a:r=y', 'null', '50%', '%3A'), r: fc.constantFrom('x', 'y', 'y:r=x', ':', undefined), v: fc.oneof(fc.integer({ min: -50, max: 1000 }), fc.double({ min: -1e6, max: 1e6, noNaN: true }), fc.constant(0)), w: fc.option(fc.integer({ min: 0, max: 9 }), { nil: undefined }), iso: fc.boolean() }).map((e) => ({ kind: 'event' as const, ...e })) },
    { weight: 2, arbitrary: fc.record({ dt: fc.integer({ min: -400, max: -100 }), v: fc.integer({ min: 0, max: 9 }) }).map((e) => ({ kind: 'late' as const, ...e })) },
    { weight: 1, arbitrary: fc.constantFrom('{"timestamp": "soon", "v": 1, "w": 1}', '{"v": 2, "w": 2}', '{"timestamp": 10.5, "v": 1, "w": 1}', '{"timestamp": 1, "v": "9", "w": 1}', '{"timestamp": 1, "v": null, "w": true}').map((text) => ({ kind: 'raw' as const, text })) },
    { weight: 1, arbitrary: fc.constantFrom('{"timestamp": 1, ', 'not json', '[1,2,3]', '"str"', '42', 'null', '', '   ', '\t').map((text) => ({ kind: 'raw' as const, text })) },
  ).map((x) => ({ ...x, base }));

/** Turns the generated steps into lines with a clock that mostly moves forward. */
function render(steps: Array<{ kind: string; base: number; dt?: number; k?: string; r?: string | undefined; v?: number; w?: number | undefined; iso?: boolean; text?: string }>): string[] {
  let clock = 1_000;
  return steps.map((s) => {
    if (s.kind === 'raw') return s.text!;
    clock += 3;
    const ts = clock + s.dt!;
    const time = s.iso ? new Date(ts).toISOString() : ts;
    const ev: Record<string, unknown> = { timestamp: time, v: s.v, k: s.k };
    if (s.r !== undefined) ev['m'] = { r: s.r };
    if (s.w !== undefined) ev['w'] = s.w;
    return JSON.stringify(ev);
  });
}

function windowId(name: string, key: string, start: number, end: number): string {
  return `${name}|${key}|${start}|${end}`;
}

function lastPerWindow<T>(items: readonly T[], id: (t: T) => string): Map<string, T> {
  const m = new Map<string, T>();
  for (const x of items) m.set(id(x), x);
  return m;
}

function compareWindow(got: WindowResult, want: RefEmission): void {
  const vals = want.values;
  const n = vals.length;
  const sorted = [...vals].sort((a, b) => a - b);
  const sum = vals.reduce((a, b) => a + b, 0);
  const mean = sum / n;
  const sd = Math.sqrt(vals.reduce((a, x) => a + (x - mean) * (x - mean), 0) / n);
  const id = windowId(got.name, got.key, got.window.start, got.window.end);
  const r = got.results;
  assert.equal(r.count, n, `${id} count`);
  assert.equal(r.min, sorted[0], `${id} min`);
  assert.equal(r.max, sorted[n - 1], `${id} max`);
  // The reference sums naively; allow for its rounding on large cancelling values.
  const scale = vals.reduce((a, x) => a + Math.abs(x), 0);
  assert.ok(Math.abs(r.sum - sum) <= 1e-9 * Math.max(Math.abs(sum), 1e-9) + 1e-12 * scale, `${id} sum ${r.sum} vs ${sum}`);
  assert.ok(Math.abs(r.avg - mean) <= 1e-9 * Math.max(Math.abs(mean), 1e-9) + (1e-12 * scale) / n, `${id} avg`);
  assert.ok(Math.abs(r.stddev - sd) <= 1e-6 * Math.max(sd, 1e-9) + 1e-9 * (scale / n), `${id} stddev ${r.stddev} vs ${sd}`);
  for (const [q, v] of [[0.5, r.p50], [0.95, r.p95], [0.99, r.p99]] as const) assert.ok(quantileOk(sorted, q, v), `${id} p${q * 100}: ${v} not within 1% of ${sorted.join(',')}`);
  assert.equal(got.late, want.late, `${id} late flag`);
  assert.deepEqual(got.group, want.group, `${id} group`);
}

/** Runs `lines` through the real pipeline and the reference; every final window, firing, dead letter and late count must agree. */
function checkAgainstReference(lines: string[], eventTime: { field: string; maxOutOfOrdernessMs: number; allowedLatenessMs: number }, aggs: RefAggregation[], batchSize: number, decoder: 'scan' | 'json'): void {
  const want = runReference(lines, eventTime, aggs);
  const got = runLines(testConfig({ eventTime, aggregations: aggs }), lines, batchSize, decoder);

  const wantFinal = lastPerWindow(want.emissions, (e) => windowId(e.name, e.key, e.window.start, e.window.end));
  const gotFinal = lastPerWindow(got.results, (r) => windowId(r.name, r.key, r.window.start, r.window.end));
  assert.deepEqual([...gotFinal.keys()].sort(), [...wantFinal.keys()].sort(), 'the same windows fired');
  for (const [id, g] of gotFinal) compareWindow(g, wantFinal.get(id)!);
  // Every emission, in order per window: same counts and late flags.
  const seq = (xs: Array<{ id: string; count: number; late: boolean }>) => xs.map((x) => `${x.id}#${x.count}#${x.late}`).sort();
  assert.deepEqual(
    seq(got.results.map((r) => ({ id: windowId(r.name, r.key, r.window.start, r.window.end), count: r.results.count, late: r.late }))),
    seq(want.emissions.map((e) => ({ id: windowId(e.name, e.key, e.window.start, e.window.end), count: e.values.length, late: e.late }))),
    'the same firings',
  );
  assert.deepEqual(
    got.deadLetters.map((d) => [Number(d.offset), d.reason, d.aggregation ?? null, d.original_event]),
    want.deadLetters.map((d) => [d.line, d.reason, d.aggregation ?? null, d.original_event]),
    'the same dead letters in the same order',
  );
  assert.deepEqual(got.late, aggs.map((a) => want.lateCounts[a.name] ?? 0), 'late counts');
}

for (const decoder of ['scan', 'json'] as const)
test(`pipeline (${decoder} decoder) == reference on random event sequences (final windows, dead letters, late counts)`, () => {
  fc.assert(
    fc.property(
      aggsArb,
      fc.integer({ min: 0, max: 40 }),
      fc.integer({ min: 0, max: 60 }),
      fc.array(lineArb(0), { minLength: 1, maxLength: 150 }),
      fc.integer({ min: 1, max: 64 }),
      (aggs, ooo, lateness, steps, batchSize) => {
        const lines = render(steps);
        const eventTime = { field: 'timestamp', maxOutOfOrdernessMs: ooo, allowedLatenessMs: lateness };
        checkAgainstReference(lines, eventTime, aggs, batchSize, decoder);
      },
    ),
    { numRuns: Number(process.env['WEIR_PROPERTY_RUNS'] ?? 300), seed: process.env['WEIR_PROPERTY_SEED'] ? Number(process.env['WEIR_PROPERTY_SEED']) : undefined },
  );
});

// The core caches each key's sliding-window slots in arrays that grow with the key
// ids (64 at first): hundreds of keys, out of order and some late, cross every growth.
test('many keys: tumbling and sliding windows (K = 1, 2, 3, 4, 6 and uneven) with 300 keys == reference', () => {
  let a = 11;
  const rnd = (): number => ((a = (Math.imul(a, 1103515245) + 12345) >>> 0) / 4294967296);
  const lines: string[] = [];
  for (let i = 0; i < 6000; i++) {
    const late = rnd() < 0.02;
    const ts = i * 3 - Math.floor(rnd() * (late ? 400 : 60));
    // Mostly positive, some negative and some zero: every store of the sketch.
    const r = rnd();
    const v = r < 0.05 ? 0 : (r < 0.15 ? -1 : 1) * Math.round(rnd() * 1e4) / 100;
    lines.push(JSON.stringify({ timestamp: ts, v, k: `k${Math.floor(rnd() * 300)}` }));
  }
  // The sliding kernel has one unrolled copy per K = size / slide up to 4, a loop
  // for larger K, and no cache for sizes that are not a multiple of the slide.
  const aggs: RefAggregation[] = [
    { name: 'tum', groupBy: ['k'], value: 'v', window: { type: 'tumbling', sizeMs: 500 } },
    ...[1, 2, 3, 4, 6].map((k): RefAggregation => ({ name: `sl-${k}`, groupBy: ['k'], value: 'v', window: { type: 'sliding', sizeMs: 100 * k, slideMs: 100 } })),
    { name: 'sl-odd', groupBy: ['k'], value: 'v', window: { type: 'sliding', sizeMs: 250, slideMs: 100 } },
  ];
  const eventTime = { field: 'timestamp', maxOutOfOrdernessMs: 50, allowedLatenessMs: 150 };
  for (const batchSize of [7, 4096]) checkAgainstReference(lines, eventTime, aggs, batchSize, 'scan');
  // Every value went into its window's sketch exactly once: its bucket counts add up
  // to the window's count (a lost or doubled count could hide inside the 1% of a
  // quantile). Read from the checkpoint serialization (assembly/layout.ts).
  const op = new WindowOperator(testConfig({ eventTime, aggregations: aggs }), { clock: () => 0 });
  for (let i = 0; i < lines.length; i += 4096) op.process(batchOfLines(lines.slice(i, i + 4096), 0, i));
  let windows = 0;
  for (const [key, value] of op.snapshot()) {
    const core = Buffer.from(decodeStateValue(key, value).core);
    const count = core.readDoubleLE(4);
    const { total, end } = sketchTotal(core);
    assert.equal(end, core.length, `${key}: the serialization ends with its sketch`);
    assert.equal(total, count, `${key}: sketch counts add up to ${total}, the window holds ${count} values`);
    windows++;
  }
  assert.ok(windows > 300, `${windows} live windows checked`);
});

/**
 * The sum of a serialized sketch's counts (format 2, assembly/layout.ts): zeros, then
 * per store its first index, n (top bit: sparse) and n u32 counts, or sparse, (empty
 * buckets skipped, count) LEB128 pairs up to bucket n - 1. Also where it ends.
 */
function sketchTotal(core: Buffer): { total: number; end: number } {
  assert.equal(core.readUInt32LE(0), 2, 'serialization format 2');
  let o = 60, total = core.readUInt32LE(o);
  o += 4;
  const varint = (): number => {
    let v = 0;
    for (let shift = 0; ; shift += 7) {
      const b = core[o++]!;
      v += (b & 0x7f) * 2 ** shift;
      if (b < 0x80) return v;
    }
  };
  for (let store = 0; store < 2; store++) {
    const nf = core.readUInt32LE(o + 4);
    const n = nf & 0x7fffffff;
    o += 8;
    if ((nf & 0x80000000) === 0) {
      for (let j = 0; j < n; j++) total += core.readUInt32LE(o + 4 * j);
      o += 4 * n;
      continue;
    }
    for (let j = varint(); ; j += 1 + varint()) {
      total += varint();
      assert.ok(j < n, `bucket ${j} of ${n}`);
      if (j === n - 1) break;
    }
  }
  return { total, end: o };
}
