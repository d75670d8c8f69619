// Checkpointable window state: change tracking (drainChanges), full snapshots and
// restore. The property: an operator restored from the drained state of another,
// at any batch boundary, goes on exactly as one that never stopped.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import type { RefAggregation } from './reference/reference';
import { testConfig } from './helpers/run';
import { rng } from './helpers/random';
import type { Config } from '../src/config';
import { WindowOperator, decodeStateValue, type Output, type StateChanges } from '../src/pipeline/operator';
import { batchOfLines } from '../src/sources/lines';
import { ChangeBatchWriter } from '../src/state/batch';
import type { WasmCore } from '../src/core/wasm';

const windowArb = fc.oneof(
  fc.record({ type: fc.constant('tumbling' as const), sizeMs: fc.integer({ min: 1, max: 60 }) }),
  fc.integer({ min: 1, max: 30 }).chain((slideMs) =>
    fc.record({ type: fc.constant('sliding' as const), sizeMs: fc.integer({ min: slideMs, max: 80 }), slideMs: fc.constant(slideMs) }),
  ),
  fc.record({ type: fc.constant('session' as const), gapMs: fc.integer({ min: 1, max: 30 }) }),
);

const aggsArb = fc
  .array(fc.record({ window: windowArb, group: fc.constantFrom<string[]>([], ['k'], ['k', 'm.r']), value: fc.constantFrom('v', 'w') }), { minLength: 1, maxLength: 3 })
  .map((list) => list.map((a, i): RefAggregation => ({ name: `agg${i}`, groupBy: a.group, value: a.value, window: a.window })));

/** Mostly valid events with disorder, some late, invalid, malformed or blank. */
const stepArb = fc.oneof(
  {
    weight: 20,
    arbitrary: fc
      .record({
        dt: fc.integer({ min: -40, max: 12 }),
        k: fc.constantFrom('a', 'ab', 'b', 'c'),
        r: fc.constantFrom('x', 'y:z', undefined),
        v: fc.oneof(fc.integer({ min: -50, max: 1000 }), fc.double({ min: -1e6, max: 1e6, noNaN: true }), fc.constant(0)),
        w: fc.option(fc.integer({ min: 0, max: 9 }), { nil: undefined }),
      })
      .map((e) => ({ kind: 'event' as const, ...e })),
  },
  { weight: 2, arbitrary: fc.record({ dt: fc.integer({ min: -400, max: -100 }), v: fc.integer({ min: 0, max: 9 }) }).map((e) => ({ kind: 'late' as const, ...e })) },
  { weight: 1, arbitrary: fc.constantFrom('{"timestamp": "soon", "v": 1, "w": 1}', '{"v": 2, "w": 2}', '{"timestamp": 1, "v": "9", "w": 1}', 'not json', '', '[1]').map((text) => ({ kind: 'raw' as const, text })) },
);

type Step = { kind: 'event' | 'late' | 'raw'; dt?: number; k?: string; r?: string | undefined; v?: number; w?: number | undefined; text?: string };

function render(steps: Step[]): string[] {
  let clock = 1_000;
  return steps.map((s) => {
    if (s.kind === 'raw') return s.text!;
    clock += 3;
    const ev: Record<string, unknown> = { timestamp: clock + s.dt!, v: s.v, k: s.k ?? 'a' };
    if (s.r !== undefined) ev['m'] = { r: s.r };
    if (s.w !== undefined) ev['w'] = s.w;
    return JSON.stringify(ev);
  });
}

function operator(cfg: Config, batchSize: number, decoder: 'scan' | 'json'): WindowOperator {
  return new WindowOperator({ ...cfg, processing: { ...cfg.processing, batchSize } }, { clock: () => 0, decoder });
}

/** An output in a comparable form: firings and purges within one step in any order, dead letters in order. */
function norm(o: Output): unknown {
  return {
    results: o.results.toObjects().map((r) => JSON.stringify(r)).sort(),
    deadLetters: o.deadLetters,
    gone: o.gone.map((g) => JSON.stringify(g)).sort(),
    late: o.late,
    records: o.records,
  };
}

/** Applies one drain to a store, checking it is consistent with what the store holds. */
function apply(store: Map<string, Buffer>, ch: StateChanges): void {
  const putKeys = new Set(ch.puts.map(([k]) => k));
  assert.equal(putKeys.size, ch.puts.length, 'no key put twice in one drain');
  for (const k of ch.deletes) {
    assert.ok(!putKeys.has(k), `${k} both put and deleted`);
    assert.ok(store.has(k), `delete of ${k}, which was never persisted`);
    store.delete(k);
  }
  for (const [k, v] of ch.puts) store.set(k, v);
}

function assertStoreIs(store: Map<string, Buffer>, op: WindowOperator, aggs: number, what: string): void {
  const snap = new Map(op.snapshot());
  assert.deepEqual([...store.keys()].sort(), [...snap.keys()].sort(), `${what}: the drained state keys are the live windows`);
  for (const [k, v] of snap) assert.ok(store.get(k)!.equals(v), `${what}: value of ${k}`);
  let open = 0;
  for (let a = 0; a < aggs; a++) open += op.openWindows(a);
  assert.equal(store.size, open, `${what}: one entry per open window`);
}

function assertEmpty(ch: StateChanges, what: string): void {
  assert.deepEqual({ puts: ch.puts.map(([k]) => k), deletes: ch.deletes }, { puts: [], deletes: [] }, what);
}

for (const decoder of ['scan', 'json'] as const)
  test(`restore from drained changes at any batch boundary == an uninterrupted run (${decoder} decoder)`, () => {
    fc.assert(
      fc.property(
        aggsArb,
        fc.integer({ min: 0, max: 40 }),
        fc.integer({ min: 0, max: 60 }),
        fc.array(stepArb, { minLength: 1, maxLength: 150 }),
        fc.integer({ min: 1, max: 24 }),
        fc.integer({ min: 0, max: 1000 }),
        fc.integer({ min: 0, max: 1000 }),
        fc.constantFrom('before' as const, 'after' as const, 'never' as const),
        fc.constantFrom('stored' as const, 'bytes' as const, 'store' as const),
        fc.integer(),
        (aggs, ooo, lateness, steps, batchSize, splitPick, trackPick, trackB, order, seed) => {
          const r = rng(seed);
          const lines = render(steps);
          const cfg = testConfig({ eventTime: { field: 'timestamp', maxOutOfOrdernessMs: ooo, allowedLatenessMs: lateness }, aggregations: aggs });
          const batches: Array<ReturnType<typeof batchOfLines>> = [];
          for (let i = 0; i < lines.length; i += batchSize) batches.push(batchOfLines(lines.slice(i, i + batchSize), 0, i));
          const split = splitPick % (batches.length + 1);
          const trackAt = trackPick % (split + 1); // A turns tracking on before batch trackAt (== split: after the last)

          // The uninterrupted run.
          const u = operator(cfg, batchSize, decoder);
          const want = batches.map((b) => norm(u.process(b)));
          const wantEnd = norm(u.finish());

          // A: part 1, draining at random points.
          const a = operator(cfg, batchSize, decoder);
          const store = new Map<string, Buffer>();
          for (let i = 0; i < split; i++) {
            if (i === trackAt) a.trackChanges();
            assert.deepEqual(norm(a.process(batches[i]!)), want[i], `A, batch ${i}: tracking changes nothing`);
            if (i >= trackAt && r() < 0.4) apply(store, a.drainChanges());
          }
          a.trackChanges();
          apply(store, a.drainChanges());
          assertEmpty(a.drainChanges(), 'a drain after no changes is empty');
          assertStoreIs(store, a, aggs.length, 'A');

          // B: restored from the store, part 2.
          const w = a.watermarks.current;
          const b = operator(cfg, batchSize, decoder);
          if (trackB === 'before') b.trackChanges();
          if (order === 'stored') b.restore(store, w);
          else restoreSorted(b, store, w, r, order === 'bytes' ? byBytes : byLengthAndBytes);
          b.watermarks.register(0, 0, a.watermarks.maxOf(0));
          b.watermarks.current = w;
          const storeB = new Map(store);
          if (trackB === 'after') b.trackChanges();
          if (trackB !== 'never') {
            assertEmpty(b.drainChanges(), 'restored windows are not changes');
            assertStoreIs(storeB, b, aggs.length, 'B restored');
          }
          for (let i = split; i < batches.length; i++) {
            assert.deepEqual(norm(b.process(batches[i]!)), want[i], `B, batch ${i} (restored before batch ${split})`);
            if (trackB !== 'never' && r() < 0.4) apply(storeB, b.drainChanges());
          }
          if (trackB !== 'never') {
            apply(storeB, b.drainChanges());
            assertStoreIs(storeB, b, aggs.length, 'B before finish');
          }
          assert.deepEqual(norm(b.finish()), wantEnd, 'B, end of input');
          if (trackB !== 'never') {
            apply(storeB, b.drainChanges());
            assert.equal(storeB.size, 0, 'every window purged at the end: every key deleted');
          }
        },
      ),
      { numRuns: Number(process.env['WEIR_PROPERTY_RUNS'] ?? 200), seed: process.env['WEIR_PROPERTY_SEED'] ? Number(process.env['WEIR_PROPERTY_SEED']) : undefined },
    );
  });

const byBytes = (x: string, y: string): number => Buffer.compare(Buffer.from(x), Buffer.from(y));
/** The order of a RocksDB store's keys: UTF-8 length, then bytes. */
const byLengthAndBytes = (x: string, y: string): number => Buffer.byteLength(x) - Buffer.byteLength(y) || byBytes(x, y);

/** Restores `store` in the order `compare` gives its keys, in batches cut at random. */
function restoreSorted(op: WindowOperator, store: Map<string, Buffer>, w: number, r: () => number, compare: (x: string, y: string) => number): void {
  const entries = [...store].sort(([x], [y]) => compare(x, y));
  for (let i = 0; i < entries.length || i === 0; ) {
    const n = 1 + Math.floor(r() * 4);
    const batch = new ChangeBatchWriter();
    for (const [key, value] of entries.slice(i, i + n)) batch.put(key, value);
    op.restoreBatch(batch.finish(), w);
    i += n;
  }
}

// ─── By hand ──────────────────────────────────────────────────────────────────

const ev = (ts: number, v: number, k = 'a') => JSON.stringify({ timestamp: ts, v, k });

function single(window: Record<string, unknown>, name = 'agg', lateness = 0): WindowOperator {
  const cfg = testConfig({ eventTime: { maxOutOfOrdernessMs: 0, allowedLatenessMs: lateness }, aggregations: [{ name, groupBy: ['k'], value: 'v', window }] });
  return new WindowOperator(cfg, { clock: () => 0 });
}

const keysOf = (ch: StateChanges) => ({ puts: ch.puts.map(([k]) => k).sort(), deletes: [...ch.deletes].sort() });

test('a session that grows or merges is put under its new key and its old keys are deleted', () => {
  const op = single({ type: 'session', gapMs: 10 }, 's', 100);
  op.trackChanges();
  op.process(batchOfLines([ev(0, 1), ev(25, 2)]));
  assert.deepEqual(keysOf(op.drainChanges()), { puts: ['s:k=a:0_10', 's:k=a:25_35'], deletes: [] });
  op.process(batchOfLines([ev(5, 3)]));
  assert.deepEqual(keysOf(op.drainChanges()), { puts: ['s:k=a:0_15'], deletes: ['s:k=a:0_10'] });
  // [15,25) touches [0,15) and [25,35): one session [0,35).
  op.process(batchOfLines([ev(15, 4)]));
  assert.deepEqual(keysOf(op.drainChanges()), { puts: ['s:k=a:0_35'], deletes: ['s:k=a:0_15', 's:k=a:25_35'] });
  assert.deepEqual(keysOf(op.drainChanges()), { puts: [], deletes: [] });
});

test('state keys write window bounds as JavaScript does: negative, 0, around 1e8, 15 digits', () => {
  // Sessions start and end at event times: each bound is one written by a change batch (changes.ts) digit by digit.
  const times = [-123_456_789_012, -5, 0, 7, 99_999_999, 100_000_000, 1_767_225_600_000, 99_999_999_999_999];
  for (const t of times) {
    // One operator per time: W never passes a window before the drain.
    const op = single({ type: 'session', gapMs: 1 }, 'sess');
    op.trackChanges();
    op.process(batchOfLines([ev(t, 1, 'ü')]));
    const { puts } = op.drainChanges();
    assert.equal(puts.length, 1, String(t));
    const [key, value] = puts[0]!;
    const st = decodeStateValue(key, value);
    assert.equal(st.start, t);
    assert.equal(key, `sess:k=${st.values[0]!}:${t}_${st.end}`);
  }
});

test('restore takes windows of any bounds and key: negative, beyond 15 digits, separators and non-ASCII in values', () => {
  // Windows with integer bounds of up to 15 digits are read from their key's bytes,
  // the others the long way: both must give back the same operator.
  const cfg = testConfig({
    eventTime: { maxOutOfOrdernessMs: 0, allowedLatenessMs: 0 },
    aggregations: [
      { name: 's', groupBy: ['k', 'm.r'], value: 'v', window: { type: 'session', gapMs: 2 } },
      { name: 't.1', groupBy: [], value: 'v', window: { type: 'tumbling', sizeMs: 10 } },
      { name: 'sl-1', groupBy: ['k'], value: 'v', window: { type: 'sliding', sizeMs: 20, slideMs: 10 } },
    ],
  });
  const times = [-123_456_789_012, -5, 0, 7, 99_999_999_999_999, 999_999_999_999_999, 1_234_567_890_123_456];
  const keys = ['a', 'x:y=z%', 'ü', ''];
  const line = (t: number, i: number) => JSON.stringify({ timestamp: t, v: i, k: keys[i % keys.length], m: { r: i % 3 === 0 ? 'r:1' : 'r' } });
  for (const t of times) {
    const a = new WindowOperator(cfg, { clock: () => 0 });
    a.trackChanges();
    a.process(batchOfLines([line(t, 0), line(t + 1, 1), line(t + 3, 2), line(t, 3)]));
    const { puts } = a.drainChanges();
    assert.ok(puts.length >= 6, `${t}: ${puts.length} windows`);
    const b = new WindowOperator(cfg, { clock: () => 0 });
    b.restore(puts, a.watermarks.current);
    b.watermarks.register(0, 0, a.watermarks.maxOf(0));
    b.watermarks.current = a.watermarks.current;
    for (let x = 0; x < 3; x++) assert.equal(b.openWindows(x), a.openWindows(x), `${t}: open windows of aggregation ${x}`);
    const later = batchOfLines([line(t + 2, 5), line(t + 30, 6)]);
    assert.deepEqual(norm(b.process(later)), norm(a.process(later)), `${t}: after the restore`);
    assert.deepEqual(norm(b.finish()), norm(a.finish()), `${t}: at the end`);
  }
});

test('a persisted window changed then purged is only deleted; one created and purged between drains is nowhere', () => {
  const op = single({ type: 'tumbling', sizeMs: 10 });
  op.trackChanges();
  op.process(batchOfLines([ev(0, 1)]));
  assert.deepEqual(keysOf(op.drainChanges()), { puts: ['agg:k=a:0_10'], deletes: [] });
  op.process(batchOfLines([ev(5, 2), ev(20, 3), ev(40, 4), ev(50, 5)]));
  // [0,10) changed, then purged; [20,30) and [40,50) born and purged; [50,60) open.
  assert.deepEqual(keysOf(op.drainChanges()), { puts: ['agg:k=a:50_60'], deletes: ['agg:k=a:0_10'] });
});

test('tracking turned on late: the first drain has every open window', () => {
  const op = single({ type: 'sliding', sizeMs: 10, slideMs: 5 });
  op.process(batchOfLines([ev(7, 1)]));
  op.trackChanges();
  assert.deepEqual(keysOf(op.drainChanges()), { puts: ['agg:k=a:0_10', 'agg:k=a:5_15'], deletes: [] });
});

test('restore: values carry the group values; a restored window fires once W passes its end, merged with new events', () => {
  const cfg = testConfig({ eventTime: { maxOutOfOrdernessMs: 0, allowedLatenessMs: 0 }, aggregations: [{ name: 'x', groupBy: ['k', 'm.k'], value: 'v', window: { type: 'tumbling', sizeMs: 10 } }] });
  const a = new WindowOperator(cfg, { clock: () => 0 });
  a.trackChanges();
  const line = (ts: number, v: number) => JSON.stringify({ timestamp: ts, v, k: 'p:q', m: { k: 'r' } });
  a.process(batchOfLines([line(1, 10), line(2, 20)]));
  const { puts } = a.drainChanges();
  assert.deepEqual(puts.map(([k]) => k), ['x:k=p%3Aq:k=r:0_10']);
  const b = new WindowOperator(cfg, { clock: () => 0 });
  b.restore(puts, a.watermarks.current);
  b.watermarks.register(0, 0, a.watermarks.maxOf(0));
  b.watermarks.current = a.watermarks.current;
  const out = b.process(batchOfLines([line(3, 30), line(12, 1)]));
  assert.equal(out.results.n, 1);
  const r = out.results.toObject(0);
  assert.deepEqual([r.key, r.group, r.window, r.results.count, r.results.sum], ['k=p%3Aq:k=r', { k: 'r' }, { start: 0, end: 10 }, 3, 60]);
});

test('restore: an unknown aggregation, a foreign value, a mismatched key or a fed operator is a clear error', () => {
  const a = single({ type: 'tumbling', sizeMs: 10 }, 'old');
  a.trackChanges();
  a.process(batchOfLines([ev(1, 1)]));
  const [[key, value]] = a.drainChanges().puts as [[string, Buffer]];
  assert.throws(() => single({ type: 'tumbling', sizeMs: 10 }, 'new').restore([[key, value]], -Infinity), (e: Error) => e.message.includes(key) && e.message.includes('no aggregation named "old"'));
  assert.throws(() => single({ type: 'tumbling', sizeMs: 10 }, 'old').restore([[key, Buffer.from('{}')]], -Infinity), (e: Error) => e.message.includes(key) && /not a window state/.test(e.message));
  assert.throws(() => single({ type: 'tumbling', sizeMs: 10 }, 'old').restore([['old:k=b:0_10', value]], -Infinity), /describes the window "old:k=a:0_10"/);
  for (const other of ['old:k=a:0_20', 'old:k=a:00_10', 'old:k=a:0_10.0', 'old:k=a:-0_10', 'older:k=a:0_10', 'old:k=a:0_10:', 'old:k=a'])
    assert.throws(() => single({ type: 'tumbling', sizeMs: 10 }, 'old').restore([[other, value]], -Infinity), /describes the window "old:k=a:0_10"/, other);
  assert.throws(() => single({ type: 'tumbling', sizeMs: 20 }, 'old').restore([[key, value]], -Infinity), /core rejected it/);
  const corrupt = Buffer.from(value);
  corrupt.writeUInt32LE(99, value.length - decodeStateValue(key, value).core.length); // the core's SER_VERSION
  assert.throws(() => single({ type: 'tumbling', sizeMs: 10 }, 'old').restore([[key, corrupt]], -Infinity), /core rejected it/);
  assert.throws(() => a.restore([[key, value]], -Infinity), /fresh operator/);
  assert.throws(() => single({ type: 'tumbling', sizeMs: 10 }).drainChanges(), /trackChanges/);
});

test('restore above the instance W (a partition taken over from an instance further on): fired windows fire again only with late events, as they would have there', () => {
  const cfg = testConfig({ eventTime: { maxOutOfOrdernessMs: 0, allowedLatenessMs: 100 }, aggregations: [{ name: 'x', groupBy: ['k'], value: 'v', window: { type: 'tumbling', sizeMs: 10 } }] });
  const a = new WindowOperator(cfg, { clock: () => 0 });
  a.trackChanges();
  assert.equal(a.process(batchOfLines([ev(1, 10), ev(25, 20)])).results.n, 1, '[0,10) fired at the first owner');
  const { puts } = a.drainChanges();
  // The new owner's W is 5: below the end of [0,10), which fired.
  const b = new WindowOperator(cfg, { clock: () => 0 });
  b.restore(puts, a.watermarks.current);
  b.watermarks.register(0, 0, a.watermarks.maxOf(0));
  b.watermarks.register(1, 0, 5);
  b.watermarks.current = 5;
  const fired = (o: Output) => Array.from({ length: o.results.n }, (_, i) => o.results.toObject(i)).map((r) => `${r.window.start}_${r.window.end} count ${r.results.count}${r.late ? ' late' : ''}`);
  // Moving W through 10 fires nothing again; a late event fires [0,10) again at once, as at the first owner.
  for (const events of [[ev(12, 1, 'b')], [ev(3, 30)], [ev(27, 2)]]) assert.deepEqual(fired(b.process(batchOfLines(events))), fired(a.process(batchOfLines(events))), events.join(' '));
  assert.deepEqual(fired(b.process(batchOfLines([ev(4, 5)]))), ['0_10 count 3 late']);
});

test('a change set encoded while batches go on, keys coming and going, is the one encoded at its barrier', () => {
  // A checkpoint encodes its change set a slice at a time between batches. Here B does
  // that while A, fed the same batches, encodes each change set at once: their change
  // batches must be the same bytes. The core writes a window's bytes when the change set
  // is encoded or, copy on write, before the window next changes or goes; the batches in
  // between change, merge and purge windows of every kind. The keys churn and windows
  // close fast, so that key ids go idle and A's sweeps free them (and hand them to new
  // keys) between the barrier and the end of B's encoding. Now and then B gives a change
  // set up half encoded: the next one must still be A's.
  const cfg = testConfig({
    eventTime: { maxOutOfOrdernessMs: 5, allowedLatenessMs: 5 },
    aggregations: [
      { name: 't', groupBy: ['k'], value: 'v', window: { type: 'tumbling', sizeMs: 20 } },
      { name: 's', groupBy: ['k', 'm'], value: 'v', window: { type: 'session', gapMs: 15 } },
      { name: 'w', groupBy: ['m'], value: 'v', window: { type: 'sliding', sizeMs: 20, slideMs: 5 } },
    ],
  });
  const make = (): WindowOperator => {
    const op = new WindowOperator(cfg, { clock: () => 0, keySweepMin: 4 });
    op.trackChanges();
    return op;
  };
  const a = make(), b = make();
  const r = rng(7);
  let t = 0, offset = 0, freedBetween = 0;
  const step = (): void => {
    const lines: string[] = [];
    for (let i = 0; i < 1 + Math.floor(r() * 12); i++) {
      t += Math.floor(r() * 4);
      // Keys drift upwards: old ones go idle, new ones come.
      lines.push(JSON.stringify({ timestamp: t - Math.floor(r() * 8), k: `u${Math.floor(t / 10) + Math.floor(r() * 6)}`, m: r() < 0.5 ? 'x' : 'y:z', v: Math.floor(r() * 500) / 4 }));
    }
    const batch = batchOfLines(lines, 0, offset);
    offset += lines.length;
    const before = a.keyCounts(0).keys + a.keyCounts(1).keys;
    a.process(batch);
    b.process(batch);
    freedBetween += Math.max(0, before - a.keyCounts(0).keys - a.keyCounts(1).keys);
  };
  const bytes = (w: ChangeBatchWriter): Buffer => {
    const x = w.finish();
    return Buffer.from(x.buffer, 0, x.length);
  };
  let checked = 0, abandoned = 0;
  for (let round = 0; round < 80; round++) {
    for (let i = 0; i < 1 + Math.floor(r() * 4); i++) step();
    const now = a.takeChanges(), later = b.takeChanges();
    const wa = new ChangeBatchWriter(64);
    now.encode(wa, 0, now.size);
    assert.equal(later.size, now.size, `round ${round}: records`);
    const giveUp = round % 5 === 4 ? Math.floor(later.size / 8) : later.size;
    const wb = new ChangeBatchWriter(64);
    for (let from = 0; from < giveUp; ) {
      const to = Math.min(giveUp, from + 1 + Math.floor(r() * 5));
      later.encode(wb, from, to);
      from = to;
      step();
    }
    step();
    if (giveUp < later.size) {
      abandoned++;
      continue;
    }
    assert.ok(bytes(wb).equals(bytes(wa)), `round ${round}: the change batches differ`);
    checked += now.size;
  }
  assert.ok(checked > 500, `only ${checked} records compared`);
  assert.equal(abandoned, 16);
  assert.ok(freedBetween > 50, `keys freed while change sets were being encoded: ${freedBetween}`);
});

test('windows opened and purged between two checkpoints do not pile up in the change list; the change set still has every changed window', () => {
  // Tumbling windows of 1 ms, a key per event: each window opens and is purged a few
  // events later. Without compaction the list of changed slots would hold every window
  // of the interval (20,000 here), and the barrier would walk them all.
  const op = single({ type: 'tumbling', sizeMs: 1 });
  op.trackChanges();
  const core = (op as unknown as { core: WasmCore }).core;
  let longest = 0;
  for (let b = 0; b < 20; b++) {
    const lines = Array.from({ length: 1000 }, (_, i) => ev(b * 1000 + i, i, `k${(b * 1000 + i) % 5000}`));
    op.process(batchOfLines(lines));
    longest = Math.max(longest, core.changedSlots());
  }
  assert.ok(longest < 3000, `the change list grew to ${longest} entries`);
  // The windows open now (W passed the rest): exactly what the change set puts.
  const puts = op.takeChanges().materialize().puts.map(([k]) => k).sort();
  assert.deepEqual(puts, op.snapshot().map(([k]) => k).sort());
  assert.ok(puts.length > 0);
});

test('a sketch is stored sparse when that is shorter: a few values far apart take bytes per value, not per bucket between them', () => {
  const valueOf = (values: number[]): Buffer => {
    const op = single({ type: 'tumbling', sizeMs: 10 });
    const lines = values.map((v, i) => ev(i % 10, v));
    for (let i = 0; i < lines.length; i += 4096) op.process(batchOfLines(lines.slice(i, i + 4096), 0, i));
    const [[, value]] = op.snapshot() as [[string, Buffer]];
    return value;
  };
  const core = (value: Buffer): Buffer => Buffer.from(decodeStateValue('agg:k=a:0_10', value).core);
  // 1 and 4,000 are 11.97 octaves apart: 767 buckets of 64 per octave, 3 occupied.
  const few = core(valueOf([1, 2, 4000]));
  assert.equal(few.readUInt32LE(0), 2, 'serialization format 2');
  assert.ok(few.length < 60 + 4 + 8 + 20 + 8, `${few.length} bytes for three values`);
  // Every bucket of a range occupied once: two bytes each (no gap, a count below 128).
  const range = Array.from({ length: 64 }, (_, i) => 64 + i);
  assert.equal(core(valueOf(range)).length, 60 + 4 + 8 + 64 * 2 + 8);
  // Counts of 2^14 take 3 bytes, and a bucket 4 sparse: dense is no longer, and chosen.
  const heavy = Array.from({ length: 1 << 15 }, (_, i) => 100 + (i & 1));
  assert.equal(core(valueOf(heavy)).length, 60 + 4 + 8 + 2 * 4 + 8, 'dense: four bytes per bucket');
  // All come back as they went: restored, serialized again, the same bytes.
  for (const values of [[1, 2, 4000], range, heavy, [-3, 0, 5e-300, 7e300, -1e-200, 0.5, 0.5, 12]]) {
    const value = valueOf(values);
    const b = single({ type: 'tumbling', sizeMs: 10 });
    b.restore([['agg:k=a:0_10', value]], -Infinity);
    assert.ok(b.snapshot()[0]![1].equals(value), `values ${values.slice(0, 8).join(', ')}`);
  }
});

test('sparse stores made by hand: counts up to 2^32 - 1 restore; a malformed one is refused, not read past its bytes', () => {
  // A real window's value, its positive store replaced: lo, n | SPARSE, then (gap, count) varints.
  const a = single({ type: 'tumbling', sizeMs: 10 });
  a.process(batchOfLines([ev(1, 5)]));
  const [[key, value]] = a.snapshot() as [[string, Buffer]];
  const core = Buffer.from(decodeStateValue(key, value).core);
  const head = value.subarray(0, value.length - core.length);
  const varint = (v: number): number[] => {
    const out: number[] = [];
    for (; v >= 0x80; v = Math.floor(v / 128)) out.push((v % 128) | 0x80);
    return [...out, v];
  };
  const withPos = (lo: number, nf: number, bytes: number[]): Buffer => {
    const store = Buffer.alloc(8 + bytes.length);
    store.writeInt32LE(lo, 0);
    store.writeUInt32LE(nf >>> 0, 4);
    Buffer.from(bytes).copy(store, 8);
    // accumulators and zeros as they were, the new positive store, an empty negative one
    return Buffer.concat([head, core.subarray(0, 64), store, Buffer.alloc(8)]);
  };
  const restore = (v: Buffer): Buffer => {
    const b = single({ type: 'tumbling', sizeMs: 10 });
    b.restore([[key, v]], -Infinity);
    return Buffer.from(decodeStateValue(key, b.snapshot()[0]![1]).core);
  };
  const SPARSE = 0x80000000;
  // Buckets 0 and 3 of 4: counts 2^32 - 1 (a 5-byte varint) and 7; written back as they came (8 bytes, dense 16).
  const given = withPos(4000, SPARSE | 4, [...varint(0), ...varint(0xffffffff), ...varint(2), ...varint(7)]);
  assert.ok(restore(given).equals(given.subarray(head.length)), 'sparse, the same bytes');
  // Both buckets of 2 at 2^32 - 1: 12 bytes sparse, 8 dense; written back dense, same counts.
  const back = restore(withPos(4000, SPARSE | 2, [...varint(0), ...varint(0xffffffff), ...varint(0), ...varint(0xffffffff)]));
  assert.equal(back.readUInt32LE(64 + 4), 2, 'dense, 2 buckets');
  assert.deepEqual([back.readInt32LE(64), back.readUInt32LE(64 + 8), back.readUInt32LE(64 + 12)], [4000, 0xffffffff, 0xffffffff]);
  const refused = (bytes: number[], nf: number, why: string): void => {
    assert.throws(() => restore(withPos(4000, nf, bytes)), /core rejected it/, why);
  };
  refused([0, 1, 5, 1], SPARSE | 4, 'a bucket past n');
  refused([0, 1, 0, 1], SPARSE | 4, 'ends before bucket n - 1');
  refused([0, 0x80, 0x80], SPARSE | 1, 'a varint cut short');
  refused([0, 0xff, 0xff, 0xff, 0xff, 0x1f], SPARSE | 1, 'a varint past 32 bits');
  refused([0, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01], SPARSE | 1, 'a varint of six bytes');
  refused([], SPARSE, 'sparse and empty');
  refused([0, 1], SPARSE | (1 << 19), 'a range past the buckets a double has');
});

test('state written in serialization format 1 (dense stores) restores: the same results as the run that wrote it', () => {
  // State of three aggregations (values wide apart, negative and zero) after the
  // first 300 lines, written by the build before format 2, and the lines.
  const fx = JSON.parse(readFileSync(join(__dirname, '..', '..', 'test', 'fixtures', 'state-format-1.json'), 'utf8')) as {
    watermark: number;
    maxEventTime: number;
    lines: string[];
    state: Array<[string, string]>;
  };
  const cfg = testConfig({
    eventTime: { maxOutOfOrdernessMs: 50, allowedLatenessMs: 100 },
    aggregations: [
      { name: 't', groupBy: ['k'], value: 'v', window: { type: 'tumbling', sizeMs: 1000 } },
      { name: 'w', groupBy: ['k'], value: 'v', window: { type: 'sliding', sizeMs: 2000, slideMs: 500 } },
      { name: 's', groupBy: ['k'], value: 'v', window: { type: 'session', gapMs: 300 } },
    ],
  });
  const state = fx.state.map(([k, v]): [string, Buffer] => [k, Buffer.from(v, 'base64')]);
  assert.ok(state.every(([k, v]) => Buffer.from(decodeStateValue(k, v).core).readUInt32LE(0) === 1), 'the fixture is format 1');
  const a = new WindowOperator(cfg, { clock: () => 0 });
  a.process(batchOfLines(fx.lines.slice(0, 300), 0, 0));
  assert.equal(a.watermarks.current, fx.watermark);
  const b = new WindowOperator(cfg, { clock: () => 0 });
  b.restore(state, fx.watermark);
  b.watermarks.register(0, 0, fx.maxEventTime);
  b.watermarks.current = fx.watermark;
  // The same windows, rewritten in format 2.
  const byKey = (xs: Array<[string, Buffer]>): string[] => xs.map(([k]) => k).sort();
  assert.deepEqual(byKey(b.snapshot()), byKey(a.snapshot()));
  for (const [k, v] of b.snapshot()) assert.ok(v.equals(new Map(a.snapshot()).get(k)!), k);
  const rest = batchOfLines(fx.lines.slice(300), 0, 300);
  const results = (o: Output): string[] => o.results.toObjects().map((r) => JSON.stringify(r)).sort();
  const want = results(a.process(rest)), got = results(b.process(rest));
  assert.ok(want.length > 20, `${want.length} results`);
  assert.deepEqual(got, want);
  assert.deepEqual(results(b.finish()), results(a.finish()));
});

test('a batch larger than processing.batchSize is refused, not written past the core\'s batch arrays', () => {
  const op = single({ type: 'tumbling', sizeMs: 10 });
  assert.throws(() => op.process(batchOfLines(Array.from({ length: 4097 }, (_, i) => ev(i, 1)))), /a batch of 4097 records: this operator takes at most processing.batchSize \(4096\)/);
  op.process(batchOfLines([ev(1, 2)]));
  assert.equal(op.snapshot().length, 1);
});

test('a change set cannot be encoded after the next take: the core has rewritten its records', () => {
  const op = single({ type: 'tumbling', sizeMs: 10 });
  op.trackChanges();
  op.process(batchOfLines([ev(0, 1)]));
  const first = op.takeChanges();
  op.process(batchOfLines([ev(1, 2)]));
  op.takeChanges();
  assert.throws(() => first.encode(new ChangeBatchWriter(), 0, first.size), /before the next take/);
});

test('restore into a reserved or a doubling slot pool, over stale memory: the same snapshots, changes, results and live keys as an operator that never stopped', () => {
  // The slot pool grows without zeroing: slots above the most ever handed out hold
  // whatever the heap had there, and every walk over the pool must stop below them.
  // Each restored operator first restores windows of other keys and purges them (their
  // slots are reused), then leaves a freed block of stale bytes for the pool to grow
  // into: every other slot over it reads as live, of aggregation 0 and key id 0.
  const cfg = testConfig({
    eventTime: { maxOutOfOrdernessMs: 20, allowedLatenessMs: 50 },
    processing: { batchSize: 1000 },
    aggregations: [
      { name: 't', groupBy: ['k'], value: 'v', window: { type: 'tumbling', sizeMs: 100 } },
      { name: 'w', groupBy: ['k'], value: 'v', window: { type: 'sliding', sizeMs: 200, slideMs: 100 } },
      { name: 's', groupBy: ['k'], value: 'v', window: { type: 'session', gapMs: 30 } },
    ],
  });
  const r = rng(23);
  /** n events from time `from`, `rate` per ms, with disorder, over `keys` keys named prefix + number. */
  const events = (from: number, n: number, rate: number, keys: number, prefix: string): string[] =>
    Array.from({ length: n }, (_, i) => ev(from + Math.floor(i / rate) - Math.floor(r() * 15), Math.floor(r() * 1000) / 8, `${prefix}${Math.floor(r() * keys)}`));
  const batches = (lines: string[], offset: number) =>
    Array.from({ length: Math.ceil(lines.length / 1000) }, (_, i) => batchOfLines(lines.slice(i * 1000, (i + 1) * 1000), 0, offset + i * 1000));
  const coreOf = (op: WindowOperator): WasmCore => (op as unknown as { core: WasmCore }).core;
  const sorted = (entries: Array<[string, Buffer]>): Array<[string, string]> => entries.map(([k, v]): [string, string] => [k, v.toString('hex')]).sort((x, y) => (x[0] < y[0] ? -1 : 1));
  const drained = (ch: StateChanges) => ({ puts: sorted(ch.puts), deletes: [...ch.deletes].sort() });
  const windowsOf = (op: WindowOperator): number => [0, 1, 2].reduce((n, a) => n + op.openWindows(a), 0);
  /** Per aggregation, the keys of the windows in a snapshot. */
  const keysIn = (snap: Array<[string, string]>): string[][] =>
    cfg.aggregations.map(({ name }) => [...new Set(snap.filter(([k]) => k.startsWith(`${name}:`)).map(([k]) => k.split(':')[1]!))].sort());
  /** Per aggregation, the keys the core marks as holding an open window (the key sweep's pass over the pool). */
  const markedKeys = (op: WindowOperator): string[][] =>
    cfg.aggregations.map((_, a) => {
      const reg = op.registries[a]!;
      const live = coreOf(op).liveKeys(a, reg.capacity);
      const keys: string[] = [];
      for (let id = 0; id < reg.capacity; id++) if (live[id] !== 0) keys.push(reg.keys[id]!);
      return keys.sort();
    });

  // The windows restored and purged first: many keys, early times.
  const j = new WindowOperator(cfg, { clock: () => 0 });
  j.trackChanges();
  for (const batch of batches(events(0, 6_000, 20, 900, 'j'), 0)) j.process(batch);
  const junk = j.drainChanges().puts;
  const junkW = j.watermarks.current;
  assert.ok(junk.length > 2_000, `${junk.length} windows to purge`);

  // The original: part 1, a drain (the checkpoint), then part 2 with drains, purges and new keys.
  const part1 = batches(events(100_000, 30_000, 40, 1_600, 'u'), 0);
  const part2 = batches([...events(100_750, 10_000, 40, 1_600, 'u'), ...events(101_000, 10_000, 40, 1_600, 'v')], 30_000);
  const a = new WindowOperator(cfg, { clock: () => 0 });
  a.trackChanges();
  for (const batch of part1) a.process(batch);
  const store = a.drainChanges().puts;
  const w = a.watermarks.current, max = a.watermarks.maxOf(0);
  const atSplit = sorted(a.snapshot());
  assert.equal(store.length, atSplit.length);
  assert.ok(store.length > junk.length, `${store.length} windows to restore`);
  const want: unknown[] = [];
  let wantLive: Array<[string, string]> = [];
  const wantDrain: Array<ReturnType<typeof drained>> = [];
  part2.forEach((batch, i) => {
    want.push(norm(a.process(batch)));
    if (i === 0) wantLive = sorted(a.snapshot());
    if (i % 5 === 0) wantDrain.push(drained(a.drainChanges()));
  });
  const wantEnd = norm(a.finish());
  const wantLast = drained(a.drainChanges());

  for (const reserve of [0, 1 << 16]) {
    const what = reserve ? `reserve(${reserve})` : 'no reserve';
    const b = new WindowOperator(cfg, { clock: () => 0 });
    b.restore(junk, junkW);
    b.advance(90_000);
    assert.equal(windowsOf(b), 0, `${what}: the windows restored first are purged`);
    const core = coreOf(b);
    const size = 16 << 20;
    const p = core.alloc(size);
    const words = core.words();
    // Heap blocks, the pool among them, are 16-byte aligned; slots are 120 bytes. Over
    // this pattern an even slot's flags, aggregation and key id are ~0, 0 and 0 (words
    // 3, 1 and 2 of 4), an odd slot's flags 0.
    for (let k = p >>> 2; k < (p + size) >>> 2; k++) words[k] = (k & 3) === 0 || (k & 3) === 3 ? 0xffffffff : 0;
    core.free(p);
    if (reserve) b.reserve(reserve);
    const cap = core.slotCapacity();
    b.restore(store, w);
    if (reserve) assert.equal(core.slotCapacity(), cap, `${what}: the restore did not grow the pool`);
    else assert.ok(core.slotCapacity() > cap, `${what}: the restore grew the pool`);
    b.watermarks.register(0, 0, max);
    b.watermarks.current = w;
    assert.deepEqual(sorted(b.snapshot()), atSplit, `${what}: restored`);
    assert.deepEqual(markedKeys(b), keysIn(atSplit), `${what}: keys with open windows, restored`);
    part2.forEach((batch, i) => {
      assert.deepEqual(norm(b.process(batch)), want[i], `${what}: batch ${i} after the restore`);
      if (i === 0) {
        assert.deepEqual(sorted(b.snapshot()), wantLive, `${what}: after batch 0`);
        assert.deepEqual(markedKeys(b), keysIn(wantLive), `${what}: keys with open windows after batch 0`);
        // Tracking turned on now lists every live window; the deletes are the original's
        // and every window purged before the restore.
        b.trackChanges();
        const deletes = [...wantDrain[0]!.deletes, ...junk.map(([k]) => k)].sort();
        assert.deepEqual(drained(b.drainChanges()), { puts: wantLive, deletes }, `${what}: the first drain`);
      } else if (i % 5 === 0) assert.deepEqual(drained(b.drainChanges()), wantDrain[i / 5], `${what}: the drain after batch ${i}`);
    });
    assert.deepEqual(norm(b.finish()), wantEnd, `${what}: end of input`);
    assert.deepEqual(drained(b.drainChanges()), wantLast, `${what}: the last drain`);
    assert.equal(windowsOf(b), 0);
    assert.deepEqual(markedKeys(b), [[], [], []], `${what}: no key has an open window at the end`);
  }
});
