// Window assignment, watermarks, lateness and sessions through the real pipeline,
// each expectation worked out by hand from docs/semantics.md.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { runLines, testConfig, finals } from './helpers/run';

const ev = (ts: number | string, v: number, key = 'k', extra: Record<string, unknown> = {}) => JSON.stringify({ timestamp: ts, v, k: key, ...extra });

function cfgFor(window: Record<string, unknown>, ooo = 0, lateness = 0) {
  return testConfig({
    eventTime: { maxOutOfOrdernessMs: ooo, allowedLatenessMs: lateness },
    aggregations: [{ name: 'a', groupBy: ['k'], value: 'v', window }],
  });
}

/** Final windows as "start-end:count" strings, sorted. */
function windowsOf(lines: string[], window: Record<string, unknown>, ooo = 0, lateness = 0, batchSize = 4096): string[] {
  const { results } = runLines(cfgFor(window, ooo, lateness), lines, batchSize);
  return [...finals(results).values()].map((r) => `${r.window.start}-${r.window.end}:${r.results.count}`).sort();
}

test('tumbling: ts = 0, size - 1 and size at the edges of [start, end)', () => {
  assert.deepEqual(windowsOf([ev(0, 1), ev(9, 1), ev(10, 1)], { type: 'tumbling', sizeMs: 10 }), ['0-10:2', '10-20:1']);
});

test('tumbling: negative event times floor to the window below', () => {
  assert.deepEqual(windowsOf([ev(-1, 1), ev(-10, 1), ev(-11, 1)], { type: 'tumbling', sizeMs: 10 }, 100), ['-10-0:2', '-20--10:1']);
});

test('sliding: every start = k * slide with start <= ts < start + size', () => {
  // size 10, slide 5: ts 4 is in [-5,5) and [0,10); ts 5 in [0,10) and [5,15).
  assert.deepEqual(windowsOf([ev(4, 1), ev(5, 1)], { type: 'sliding', sizeMs: 10, slideMs: 5 }), ['-5-5:1', '0-10:2', '5-15:1']);
  // size 10, slide 4: ts 9 is in [0,10), [4,14), [8,18).
  assert.deepEqual(windowsOf([ev(9, 1)], { type: 'sliding', sizeMs: 10, slideMs: 4 }), ['0-10:1', '4-14:1', '8-18:1']);
  // size = slide: sliding is tumbling.
  assert.deepEqual(windowsOf([ev(9, 1), ev(10, 1)], { type: 'sliding', sizeMs: 10, slideMs: 10 }), ['0-10:1', '10-20:1']);
});

test('watermark: out-of-order events within maxOutOfOrderness are on time', () => {
  // ooo 5: after ts 12, W = 7 < 10, so ts 3 still lands in [0,10) on time.
  const { results } = runLines(cfgFor({ type: 'tumbling', sizeMs: 10 }, 5), [ev(1, 1), ev(12, 1), ev(3, 1)]);
  const w0 = results.filter((r) => r.window.start === 0);
  assert.equal(w0.length, 1);
  assert.equal(w0[0]!.results.count, 2);
  assert.equal(w0[0]!.late, false);
});

test('lateness: W = end is late but allowed (fires again, late: true); W = end + lateness is too late', () => {
  const cfg = cfgFor({ type: 'tumbling', sizeMs: 10 }, 0, 5);
  // After ts 10, W = 10 = end of [0,10): the window fires; ts 2 is late but allowed.
  let r = runLines(cfg, [ev(1, 1), ev(10, 1), ev(2, 1)]);
  const w0 = r.results.filter((x) => x.window.start === 0);
  assert.deepEqual(w0.map((x) => [x.results.count, x.late]), [[1, false], [2, true]]);
  assert.equal(r.deadLetters.length, 0);
  // After ts 15, W = 15 = end + lateness: [0,10) is purged and ts 2 is dead-lettered late.
  r = runLines(cfg, [ev(1, 1), ev(15, 1), ev(2, 1)]);
  assert.deepEqual(r.results.filter((x) => x.window.start === 0).map((x) => x.results.count), [1]);
  assert.equal(r.deadLetters.length, 1);
  assert.equal(r.deadLetters[0]!.reason, 'late');
  assert.equal(r.deadLetters[0]!.aggregation, 'a');
  assert.equal(r.deadLetters[0]!.offset, '2');
  assert.equal(r.late[0], 1);
  // W = 14 < end + lateness: still allowed.
  r = runLines(cfg, [ev(1, 1), ev(14, 1), ev(2, 1)]);
  assert.equal(r.deadLetters.length, 0);
});

test('sliding: an event too late for some windows is counted late but not dead-lettered', () => {
  // size 10, slide 5, lateness 0. After ts 12, W = 12: [0,10) is purged, [5,15) open.
  const r = runLines(cfgFor({ type: 'sliding', sizeMs: 10, slideMs: 5 }), [ev(1, 1), ev(12, 1), ev(7, 1)]);
  assert.equal(r.deadLetters.length, 0);
  assert.equal(r.late[0], 1);
  const f = [...finals(r.results).values()].map((x) => `${x.window.start}:${x.results.count}`).sort();
  assert.deepEqual(f, ['-5:1', '0:1', '10:1', '5:2']);
});

test('sessions: events within the gap merge; a bridging event merges two sessions', () => {
  const w = { type: 'session', gapMs: 10 };
  assert.deepEqual(windowsOf([ev(0, 1), ev(5, 1), ev(30, 1)], w, 100), ['0-15:2', '30-40:1']);
  // ts 10 proposes [10,20), which touches both [0,10) and [20,30): all three merge.
  assert.deepEqual(windowsOf([ev(0, 1), ev(20, 1), ev(10, 1)], w, 100), ['0-30:3']);
  // ts 12 proposes [12,22): it touches [20,30) only.
  assert.deepEqual(windowsOf([ev(0, 1), ev(20, 1), ev(12, 1)], w, 100), ['0-10:1', '12-30:2']);
  // Touching windows merge: [0,10) and [10,20).
  assert.deepEqual(windowsOf([ev(0, 1), ev(10, 1)], w, 100), ['0-20:2']);
  // Different keys never merge.
  assert.deepEqual(windowsOf([ev(0, 1, 'x'), ev(5, 1, 'y')], w, 100), ['0-10:1', '5-15:1']);
});

test('sessions: a fired session merged into a larger one is superseded by it', () => {
  // lateness 100: [0,10) fires when W reaches 10 (ts 10 with ooo 0 -> but ts 10 is same key and merges).
  const cfg = cfgFor({ type: 'session', gapMs: 10 }, 0, 100);
  const r = runLines(cfg, [ev(0, 1, 'x'), ev(20, 1, 'y'), ev(5, 1, 'x')]);
  // ts 20 (key y) moves W to 20: x's [0,10) fires with count 1. ts 5 (x) proposes [5,15):
  // merged [0,15), W 20 >= 15: late but allowed, fires again at once, late.
  const x = r.results.filter((o) => o.key === 'k=x');
  assert.deepEqual(x.map((o) => [o.window.start, o.window.end, o.results.count, o.late]), [[0, 10, 1, false], [0, 15, 2, true]]);
});

test('sessions: too late when the merged window is past allowed lateness', () => {
  const cfg = cfgFor({ type: 'session', gapMs: 10 }, 0, 5);
  const r = runLines(cfg, [ev(0, 1, 'x'), ev(100, 1, 'y'), ev(1, 1, 'x')]);
  assert.equal(r.deadLetters.length, 1);
  assert.equal(r.deadLetters[0]!.reason, 'late');
});

test('invalid timestamp: one dead letter per aggregation, W does not move', () => {
  const cfg = testConfig({
    eventTime: { maxOutOfOrdernessMs: 0, allowedLatenessMs: 0 },
    aggregations: [
      { name: 'a', value: 'v', window: { type: 'tumbling', sizeMs: 10 } },
      { name: 'b', value: 'w', window: { type: 'tumbling', sizeMs: 10 } },
    ],
  });
  const r = runLines(cfg, [JSON.stringify({ timestamp: 1, v: 1, w: 1 }), JSON.stringify({ timestamp: 'yesterday', v: 1, w: 1 }), JSON.stringify({ timestamp: 5, v: 1 }), JSON.stringify({ timestamp: 2.5, v: 1, w: 1 })]);
  assert.deepEqual(r.deadLetters.map((d) => [d.offset, d.reason, d.aggregation]), [['1', 'invalid', 'a'], ['1', 'invalid', 'b'], ['2', 'invalid', 'b'], ['3', 'invalid', 'a'], ['3', 'invalid', 'b']]);
  assert.match(r.deadLetters[0]!.error, /timestamp/);
  assert.match(r.deadLetters[2]!.error, /'w' is missing/);
  const f = [...finals(r.results).values()].map((x) => `${x.name}:${x.results.count}`).sort();
  assert.deepEqual(f, ['a:2', 'b:1']);
});

test('malformed and blank lines: one malformed dead letter, blank lines skipped', () => {
  const r = runLines(cfgFor({ type: 'tumbling', sizeMs: 10 }), ['', '   ', '{"timestamp": 1, "v": 1', '[1,2]', 'null', ev(1, 2)]);
  assert.deepEqual(r.deadLetters.map((d) => [d.offset, d.reason, d.aggregation]), [['2', 'malformed', undefined], ['3', 'malformed', undefined], ['4', 'malformed', undefined]]);
  assert.equal(r.deadLetters[0]!.original_event, '{"timestamp": 1, "v": 1');
  assert.equal(r.results.length, 1);
});

test('ISO-8601 and epoch-ms forms of the same instant land in the same window', () => {
  const lines = [ev(1704110400000, 1), ev('2024-01-01T12:00:00Z', 2), ev('2024-01-01T14:00:00.000+02:00', 3), ev('2024-01-01T12:00:00.9999Z', 4)];
  const { results } = runLines(cfgFor({ type: 'tumbling', sizeMs: 1000 }), lines);
  assert.equal(results.length, 1);
  assert.equal(results[0]!.window.start, 1704110400000);
  assert.equal(results[0]!.results.count, 4);
});

test('group keys: field=value joined with ":", missing groups under null, numbers as strings', () => {
  const cfg = testConfig({
    aggregations: [{ name: 'a', groupBy: ['data.model', 'data.region'], value: 'v', window: { type: 'tumbling', sizeMs: 10 } }],
  });
  const r = runLines(cfg, [
    JSON.stringify({ timestamp: 1, v: 1, data: { model: 'm1', region: 'us' } }),
    JSON.stringify({ timestamp: 1, v: 1, data: { model: 'm1' } }),
    JSON.stringify({ timestamp: 1, v: 1, data: { model: 7, region: null } }),
  ]);
  assert.deepEqual(r.results.map((x) => x.key).sort(), ['model=7:region=null', 'model=m1:region=null', 'model=m1:region=us']);
  assert.deepEqual(r.results.find((x) => x.key === 'model=m1:region=us')!.group, { model: 'm1', region: 'us' });
});

test('splitting the input into batches of any size changes nothing', () => {
  const lines: string[] = [];
  for (let i = 0; i < 500; i++) lines.push(ev(((i * 7919) % 997) + Math.floor(i / 3), i % 13, `k${i % 5}`));
  for (const window of [{ type: 'tumbling', sizeMs: 50 }, { type: 'sliding', sizeMs: 60, slideMs: 20 }, { type: 'session', gapMs: 15 }]) {
    const whole = runLines(cfgFor(window, 30, 40), lines, 4096);
    for (const bs of [1, 7, 64]) {
      const split = runLines(cfgFor(window, 30, 40), lines, bs);
      assert.deepEqual(split.results, whole.results, `${window.type} batch ${bs}`);
      assert.deepEqual(split.deadLetters.map((d) => d.offset), whole.deadLetters.map((d) => d.offset));
    }
  }
});
