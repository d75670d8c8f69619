// Key lifetime: a key's id, registry entry, state header and raw ids in the core's
// intern table are released once it has no open window, so memory follows open
// windows, not every key ever seen. Releasing must change no result.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { runReference, type RefAggregation } from './reference/reference';
import { testConfig } from './helpers/run';
import { KEY_SWEEP_MIN, WindowOperator, type Output } from '../src/pipeline/operator';
import { batchOfLines } from '../src/sources/lines';
import type { Config } from '../src/config';

/** A PRNG for the inputs (deterministic). */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => (a = (Math.imul(a, 1103515245) + 12345) >>> 0) / 4294967296;
}

/**
 * Events whose keys churn: most keys live for a few events and are never seen again,
 * some come back long after their windows were purged, some are written with a JSON
 * escape (another raw spelling of the same key), a few events are late or invalid.
 */
function churn(n: number, seed: number): string[] {
  const r = rng(seed);
  const lines: string[] = [];
  for (let i = 0; i < n; i++) {
    const late = r() < 0.02;
    const ts = i * 10 - Math.floor(r() * (late ? 3000 : 40));
    const k = r() < 0.1 ? Math.floor((r() * i) / 4) : Math.floor(i / 4 + r() * 3);
    const key = r() < 0.1 ? `u\\u002d${k}` : `u-${k}`;
    const v = r() < 0.01 ? '"x"' : String(Math.round(r() * 10000) / 10);
    const region = ['x', 'y', 'z'][k % 3]!;
    lines.push(`{"timestamp":${ts},"v":${v},"k":"${key}","m":{"r":"${region}"}}`);
  }
  return lines;
}

const AGGS: RefAggregation[] = [
  { name: 'tum', groupBy: ['k'], value: 'v', window: { type: 'tumbling', sizeMs: 100 } },
  { name: 'sl', groupBy: ['k'], value: 'v', window: { type: 'sliding', sizeMs: 200, slideMs: 100 } },
  { name: 'ses', groupBy: ['k'], value: 'v', window: { type: 'session', gapMs: 30 } },
  { name: 'two', groupBy: ['m.r', 'k'], value: 'v', window: { type: 'tumbling', sizeMs: 300 } },
];
const EVENT_TIME = { field: 'timestamp', maxOutOfOrdernessMs: 50, allowedLatenessMs: 100 };

function operator(cfg: Config, batchSize: number, decoder: 'scan' | 'json', keySweepMin: number): WindowOperator {
  return new WindowOperator({ ...cfg, processing: { ...cfg.processing, batchSize } }, { clock: () => 0, decoder, keySweepMin });
}

/** Every output of a step, as plain data (results, dead letters, late counts, purged windows). */
function norm(o: Output): unknown {
  const lines: unknown[] = [];
  for (let i = 0; i < o.results.n; i++) lines.push(JSON.parse(o.results.textOf(i)));
  return JSON.parse(JSON.stringify({ ...o, results: lines })) as unknown;
}

/** The same, results and purged windows in no particular order (a restored operator fires in its own order). */
function sorted(o: unknown): unknown {
  const x = o as { results: unknown[]; gone: unknown[] };
  return { ...x, results: x.results.map((r) => JSON.stringify(r)).sort(), gone: x.gone.map((g) => JSON.stringify(g)).sort() };
}

for (const decoder of ['scan', 'json'] as const)
  test(`${decoder} decoder: 20,000 events over ~5,500 keys, released when their windows are purged: outputs identical to keeping every key, results == reference, keys bounded by open windows`, () => {
    const lines = churn(20_000, 5);
    const cfg = testConfig({ eventTime: EVENT_TIME, aggregations: AGGS });
    const batchSize = 500;
    const sweepMin = 64;
    const keep = operator(cfg, batchSize, decoder, Infinity);
    const swept = operator(cfg, batchSize, decoder, sweepMin);
    const outputs: Output[] = [];
    const maxOpen = AGGS.map(() => 0);
    const seen = AGGS.map(() => 0);
    for (let i = 0; i < lines.length; i += batchSize) {
      const batch = batchOfLines(lines.slice(i, i + batchSize), 0, i);
      const want = keep.process(batch);
      const got = swept.process(batch);
      assert.deepEqual(norm(got), norm(want), `batch at line ${i}`);
      outputs.push(got);
      AGGS.forEach((_, a) => {
        maxOpen[a] = Math.max(maxOpen[a]!, swept.openWindows(a));
        seen[a] = keep.keyCounts(a).keys;
        const c = swept.keyCounts(a);
        // Keys with open windows, those idle at one sweep only (kept a round), and the new ones
        // until the next sweep (about half those with open windows), plus one batch's.
        const bound = 2 * maxOpen[a] + 2 * Math.max(sweepMin, maxOpen[a] >>> 1) + batchSize;
        assert.ok(c.keys <= bound && c.ids <= bound, `${AGGS[a]!.name} at line ${i}: ${c.keys} keys, ids below ${c.ids}; bound ${bound}`);
        if (decoder === 'scan') assert.ok(c.rawKeys <= bound + c.keys, `${AGGS[a]!.name}: ${c.rawKeys} raw ids`);
      });
    }
    const endWant = keep.finish();
    const endGot = swept.finish();
    assert.deepEqual(norm(endGot), norm(endWant), 'end of input');
    outputs.push(endGot);
    AGGS.forEach((agg, a) => {
      // Without releases, every key ever seen stays.
      assert.ok(seen[a]! > 2 * (2 * maxOpen[a]! + 2 * Math.max(sweepMin, maxOpen[a]! >>> 1) + batchSize), `${agg.name}: ${seen[a]} keys seen, ${maxOpen[a]} windows open at most: too few keys to show a bound`);
    });

    // And against the plain reference: the same final windows, firings and dead letters.
    const ref = runReference(lines, EVENT_TIME, AGGS);
    const results = outputs.flatMap((o) => o.results.toObjects());
    const id = (x: { name: string; key: string; window: { start: number; end: number } }) => `${x.name}|${x.key}|${x.window.start}|${x.window.end}`;
    assert.deepEqual(
      results.map((x) => `${id(x)}#${x.results.count}#${x.late}`).sort(),
      ref.emissions.map((e) => `${id(e)}#${e.values.length}#${e.late}`).sort(),
      'the same firings',
    );
    const finalGot = new Map(results.map((x) => [id(x), x]));
    const finalRef = new Map(ref.emissions.map((e) => [id(e), e]));
    for (const [wid, e] of finalRef) {
      const g = finalGot.get(wid);
      assert.ok(g !== undefined, wid);
      const sum = e.values.reduce((s, v) => s + v, 0);
      assert.equal(g.results.count, e.values.length, wid);
      assert.equal(g.results.min, Math.min(...e.values), wid);
      assert.equal(g.results.max, Math.max(...e.values), wid);
      assert.ok(Math.abs(g.results.sum - sum) <= 1e-9 * Math.max(1, Math.abs(sum)), wid);
      assert.deepEqual(g.group, e.group, wid);
    }
    assert.deepEqual(
      outputs.flatMap((o) => o.deadLetters).map((d) => [Number(d.offset), d.reason, d.aggregation ?? null]),
      ref.deadLetters.map((d) => [d.line, d.reason, d.aggregation ?? null]),
      'the same dead letters',
    );
  });

test('the default threshold: a few thousand keys are never swept (no pass over the slots for small key sets)', () => {
  const lines = churn(8000, 9);
  const op = new WindowOperator(testConfig({ eventTime: EVENT_TIME, aggregations: AGGS.slice(0, 1) }), { clock: () => 0 });
  for (let i = 0; i < lines.length; i += 4096) op.process(batchOfLines(lines.slice(i, i + 4096), 0, i));
  const c = op.keyCounts(0);
  assert.ok(c.keys < KEY_SWEEP_MIN && c.keys > 1000, `${c.keys} keys`);
});

/** Random lines over ~40 keys (some escaped), out of order, some late, invalid or malformed. */
const linesArb = fc
  .array(
    fc.oneof(
      { weight: 20, arbitrary: fc.record({ dt: fc.integer({ min: -40, max: 12 }), k: fc.integer({ min: 0, max: 40 }), esc: fc.boolean(), r: fc.constantFrom('x', 'y', undefined), v: fc.integer({ min: -50, max: 1000 }) }) },
      { weight: 1, arbitrary: fc.constantFrom('{"timestamp": "soon", "v": 1}', '{"timestamp": 1, "v": "9", "k": "a"}', 'not json', '[1]', '') },
    ),
    { minLength: 1, maxLength: 200 },
  )
  .map((steps) => {
    let clock = 1000;
    return steps.map((s) => {
      if (typeof s === 'string') return s;
      clock += 3;
      const k = s.esc ? `k\\u002d${s.k}` : `k-${s.k}`;
      return `{"timestamp":${clock + s.dt},"v":${s.v},"k":"${k}"${s.r === undefined ? '' : `,"m":{"r":"${s.r}"}`}}`;
    });
  });

const windowArb = fc.oneof(
  fc.record({ type: fc.constant('tumbling' as const), sizeMs: fc.integer({ min: 1, max: 40 }) }),
  fc.integer({ min: 1, max: 20 }).chain((slideMs) => fc.record({ type: fc.constant('sliding' as const), sizeMs: fc.integer({ min: slideMs, max: 60 }), slideMs: fc.constant(slideMs) })),
  fc.record({ type: fc.constant('session' as const), gapMs: fc.integer({ min: 1, max: 20 }) }),
);

for (const decoder of ['scan', 'json'] as const)
  test(`${decoder} decoder: releasing keys at every step changes no output, and a checkpoint taken between releases restores to the same results`, () => {
    fc.assert(
      fc.property(
        fc.array(fc.record({ window: windowArb, group: fc.constantFrom(['k'], ['m.r', 'k']) }), { minLength: 1, maxLength: 3 }),
        fc.integer({ min: 0, max: 30 }),
        fc.integer({ min: 0, max: 40 }),
        linesArb,
        fc.integer({ min: 1, max: 24 }),
        fc.integer({ min: 0, max: 1000 }),
        (list, ooo, lateness, lines, batchSize, splitPick) => {
          const aggs = list.map((a, i) => ({ name: `agg${i}`, groupBy: a.group, value: 'v', window: a.window }));
          const cfg = testConfig({ eventTime: { field: 'timestamp', maxOutOfOrdernessMs: ooo, allowedLatenessMs: lateness }, aggregations: aggs });
          const batches: Array<ReturnType<typeof batchOfLines>> = [];
          for (let i = 0; i < lines.length; i += batchSize) batches.push(batchOfLines(lines.slice(i, i + batchSize), 0, i));
          const split = splitPick % (batches.length + 1);
          const keep = operator(cfg, batchSize, decoder, Infinity);
          const want = batches.map((b) => norm(keep.process(b)));
          const wantEnd = norm(keep.finish());
          // Released whenever any key has no open window (the threshold at its lowest).
          const a = operator(cfg, batchSize, decoder, 1);
          a.trackChanges();
          const store = new Map<string, Buffer>();
          for (let i = 0; i < split; i++) {
            assert.deepEqual(norm(a.process(batches[i]!)), want[i], `batch ${i}`);
            const ch = a.drainChanges();
            for (const k of ch.deletes) store.delete(k);
            for (const [k, v] of ch.puts) store.set(k, v);
          }
          const b = operator(cfg, batchSize, decoder, 1);
          b.restore(store, a.watermarks.current);
          b.watermarks.register(0, 0, a.watermarks.maxOf(0));
          b.watermarks.current = a.watermarks.current;
          for (let i = split; i < batches.length; i++) assert.deepEqual(sorted(norm(b.process(batches[i]!))), sorted(want[i]), `batch ${i}, restored before batch ${split}`);
          assert.deepEqual(sorted(norm(b.finish())), sorted(wantEnd), 'end of input');
        },
      ),
      { numRuns: Number(process.env['WEIR_PROPERTY_RUNS'] ?? 200), seed: process.env['WEIR_PROPERTY_SEED'] ? Number(process.env['WEIR_PROPERTY_SEED']) : undefined },
    );
  });
