// Hand-computed cases for the reference implementation. Every expected value
// below is written out by hand from docs/semantics.md and the reference rules; the
// comments show the working (W = watermark before the event).

import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import {
  finalResults,
  parseEventTime,
  runReference,
  type RefAggregation,
  type RefEmission,
  type RefEventTime,
  type WindowSpec,
} from './reference';

// --- helpers ---------------------------------------------------------------

function eventTime(maxOutOfOrdernessMs: number, allowedLatenessMs: number): RefEventTime {
  return { field: 'timestamp', maxOutOfOrdernessMs, allowedLatenessMs };
}

function agg(name: string, window: WindowSpec, groupBy: string[] = [], value = 'v'): RefAggregation {
  return { name, groupBy, value, window };
}

/** A JSON line with a timestamp, a value `v`, and optional extra fields. */
function ev(timestamp: unknown, v: unknown, extra: Record<string, unknown> = {}): string {
  return JSON.stringify({ timestamp, v, ...extra });
}

/** An emission with no group-by fields. */
function em(name: string, start: number, end: number, values: number[], late = false): RefEmission {
  return { name, key: '', group: {}, window: { start, end }, late, values };
}

/** An emission with a key of one group-by field `field=value`. */
function emk(name: string, field: string, value: string, start: number, end: number, values: number[], late = false): RefEmission {
  return { name, key: `${field}=${value}`, group: { [field]: value }, window: { start, end }, late, values };
}

const tumbling10: WindowSpec = { type: 'tumbling', sizeMs: 10 };

// --- tumbling --------------------------------------------------------------

test('tumbling: edges ts = 0, size - 1, size, and firing when W reaches the end', () => {
  const lines = [ev(0, 1), ev(9, 2), ev(10, 3), ev(20, 4)];
  // line 0: W=-inf, [0,10) += 1
  // line 1: W=0,    [0,10) += 2
  // line 2: W=9,    [10,20) += 3
  // line 3: W=10 -> [0,10) fires [1,2] and is purged (lateness 0); [20,30) += 4
  // end:    [10,20) [3], [20,30) [4]
  const r = runReference(lines, eventTime(0, 0), [agg('a', tumbling10)]);
  assert.deepEqual(r.emissions, [em('a', 0, 10, [1, 2]), em('a', 10, 20, [3]), em('a', 20, 30, [4])]);
  assert.deepEqual(r.deadLetters, []);
  assert.deepEqual(r.lateCounts, { a: 0 });
});

test('tumbling: negative timestamps use floor, not truncation', () => {
  // -1 -> [-10,0); -10 -> [-10,0); -11 -> [-20,-10). ooo 1000 keeps all on time.
  const lines = [ev(-1, 1), ev(-10, 2), ev(-11, 3)];
  const r = runReference(lines, eventTime(1000, 0), [agg('a', tumbling10)]);
  assert.deepEqual(r.emissions, [em('a', -20, -10, [3]), em('a', -10, 0, [1, 2])]);
  assert.deepEqual(r.deadLetters, []);
});

test('tumbling: timestamp -0 is the instant 0', () => {
  const r = runReference(['{"timestamp":-0,"v":1}'], eventTime(0, 0), [agg('a', tumbling10)]);
  assert.deepEqual(r.emissions, [em('a', 0, 10, [1])]);
});

// --- sliding ---------------------------------------------------------------

test('sliding: membership edges (size 10, slide 5)', () => {
  // ts 0  -> starts -5, 0
  // ts 4  -> starts -5, 0
  // ts 5  -> starts 0, 5
  // ts -1 -> starts -10, -5
  const lines = [ev(0, 1), ev(4, 2), ev(5, 3), ev(-1, 4)];
  const r = runReference(lines, eventTime(1000, 0), [agg('s', { type: 'sliding', sizeMs: 10, slideMs: 5 })]);
  assert.deepEqual(r.emissions, [
    em('s', -10, 0, [4]),
    em('s', -5, 5, [1, 2, 4]),
    em('s', 0, 10, [1, 2, 3]),
    em('s', 5, 15, [3]),
  ]);
});

test('sliding: size not a multiple of slide (size 10, slide 4)', () => {
  // ts 9 -> starts 0, 4, 8 (start -4 ends at 6 <= 9)
  const r = runReference([ev(9, 1)], eventTime(0, 0), [agg('s', { type: 'sliding', sizeMs: 10, slideMs: 4 })]);
  assert.deepEqual(r.emissions, [em('s', 0, 10, [1]), em('s', 4, 14, [1]), em('s', 8, 18, [1])]);
});

test('sliding: size < slide leaves gaps; an event in a gap is simply dropped', () => {
  // size 5, slide 10: windows [0,5), [10,15), ... ts 7 is in none, ts 3 in [0,5).
  const r = runReference([ev(7, 1), ev(3, 2)], eventTime(100, 0), [agg('s', { type: 'sliding', sizeMs: 5, slideMs: 10 })]);
  assert.deepEqual(r.emissions, [em('s', 0, 5, [2])]);
  assert.deepEqual(r.deadLetters, []);
  assert.deepEqual(r.lateCounts, { s: 0 });
});

test('sliding: partially late event is counted but not dead-lettered', () => {
  // size 10, slide 5, ooo 0, lateness 0
  // line 0: ts 0,  W=-inf: [-5,5) += 1, [0,10) += 1
  // line 1: ts 10, W=0:    [5,15) += 2, [10,20) += 2
  // line 2: ts 7,  W=10:   [-5,5) fires [1], [0,10) fires [1]; both purged.
  //                        ts 7 is in [0,10) (too late) and [5,15) (on time, += 3)
  // end: [5,15) [2,3], [10,20) [2]
  const lines = [ev(0, 1), ev(10, 2), ev(7, 3)];
  const r = runReference(lines, eventTime(0, 0), [agg('s', { type: 'sliding', sizeMs: 10, slideMs: 5 })]);
  assert.deepEqual(r.emissions, [
    em('s', -5, 5, [1]),
    em('s', 0, 10, [1]),
    em('s', 5, 15, [2, 3]),
    em('s', 10, 20, [2]),
  ]);
  assert.deepEqual(r.deadLetters, []);
  assert.deepEqual(r.lateCounts, { s: 1 });
});

// --- watermark and lateness -----------------------------------------------

test('watermark: out-of-orderness holds W back; W follows the max, not the last', () => {
  // ooo 5, lateness 0, tumbling 10
  // line 0: ts 12, W=-inf: [10,20) += 1
  // line 1: ts 8,  W=7:    [0,10) += 2 (on time thanks to ooo)
  // line 2: ts 15, W=7:    [10,20) += 3
  // line 3: ts 14, W=10:   [0,10) fires [2], purged; [10,20) += 4
  // line 4: ts 9,  W=10:   [0,10) too late -> dead letter
  // end: [10,20) [1,3,4]
  const lines = [ev(12, 1), ev(8, 2), ev(15, 3), ev(14, 4), ev(9, 5)];
  const r = runReference(lines, eventTime(5, 0), [agg('a', tumbling10)]);
  assert.deepEqual(r.emissions, [em('a', 0, 10, [2]), em('a', 10, 20, [1, 3, 4])]);
  assert.deepEqual(r.deadLetters, [{ original_event: lines[4], reason: 'late', aggregation: 'a', line: 4 }]);
  assert.deepEqual(r.lateCounts, { a: 1 });
});

test('lateness: late-but-allowed event fires the window again with late: true', () => {
  // ooo 0, lateness 5, tumbling 10
  // line 0: ts 1,  W=-inf: [0,10) += 1
  // line 1: ts 12, W=1:    [10,20) += 2
  // line 2: ts 13, W=12:   [0,10) fires [1] (not purged: 15 > 12); [10,20) += 3
  // line 3: ts 4,  W=13:   10 <= 13 < 15: [0,10) += 4, fires [1,4] late
  // line 4: ts 16, W=13:   [10,20) += 5
  // line 5: ts 5,  W=16:   [0,10) purged (15 <= 16); too late -> dead letter
  // end: [10,20) [2,3,5]
  const lines = [ev(1, 1), ev(12, 2), ev(13, 3), ev(4, 4), ev(16, 5), ev(5, 6)];
  const r = runReference(lines, eventTime(0, 5), [agg('a', tumbling10)]);
  assert.deepEqual(r.emissions, [em('a', 0, 10, [1]), em('a', 0, 10, [1, 4], true), em('a', 10, 20, [2, 3, 5])]);
  assert.deepEqual(r.deadLetters, [{ original_event: lines[5], reason: 'late', aggregation: 'a', line: 5 }]);
  assert.deepEqual(r.lateCounts, { a: 1 });
  assert.deepEqual(finalResults(r.emissions), [em('a', 0, 10, [1, 4], true), em('a', 10, 20, [2, 3, 5])]);
});

test('lateness: late-but-allowed event for a new key creates the window and fires it at once', () => {
  // ooo 0, lateness 10, tumbling 10, group by g
  // line 0: ts 0,  g=a, W=-inf: a[0,10) += 1
  // line 1: ts 12, g=a, W=0:    a[10,20) += 2
  // line 2: ts 3,  g=b, W=12:   a[0,10) fires [1]; b[0,10) is new, 10 <= 12 < 20: += 3, fires late
  // end: a[10,20) [2]; b[0,10) fired and unchanged -> nothing
  const lines = [ev(0, 1, { g: 'a' }), ev(12, 2, { g: 'a' }), ev(3, 3, { g: 'b' })];
  const r = runReference(lines, eventTime(0, 10), [agg('t', tumbling10, ['g'])]);
  assert.deepEqual(r.emissions, [
    emk('t', 'g', 'a', 0, 10, [1]),
    emk('t', 'g', 'b', 0, 10, [3], true),
    emk('t', 'g', 'a', 10, 20, [2]),
  ]);
  assert.deepEqual(r.deadLetters, []);
});

test('lateness: too-late event is dead-lettered and its window never sees it', () => {
  // ooo 0, lateness 0: line 1 has W=20, [0,10) ends at 10 <= 20 -> too late
  const lines = [ev(20, 1), ev(5, 2)];
  const r = runReference(lines, eventTime(0, 0), [agg('a', tumbling10)]);
  assert.deepEqual(r.emissions, [em('a', 20, 30, [1])]);
  assert.deepEqual(r.deadLetters, [{ original_event: lines[1], reason: 'late', aggregation: 'a', line: 1 }]);
  assert.deepEqual(r.lateCounts, { a: 1 });
});

// --- sessions --------------------------------------------------------------

test('session: bridging event merges two sessions; touching windows merge', () => {
  // gap 10, ooo 100 (nothing fires before the end), group by user
  // line 0: u ts 0  -> [0,10)
  // line 1: u ts 30 -> [30,40)
  // line 2: u ts 15 -> [15,25) (touches neither: 15 > 10, 25 < 30)
  // line 3: u ts 20 -> [20,30) overlaps [15,25), touches [30,40) -> [15,40) values [2,3,4]
  // line 4: u ts 5  -> [5,15) overlaps [0,10), touches [15,40) -> [0,40) values [1,2,3,4,5]
  // line 5: w ts 8  -> [8,18), other key
  const lines = [
    ev(0, 1, { user: 'u' }),
    ev(30, 2, { user: 'u' }),
    ev(15, 3, { user: 'u' }),
    ev(20, 4, { user: 'u' }),
    ev(5, 5, { user: 'u' }),
    ev(8, 6, { user: 'w' }),
  ];
  const r = runReference(lines, eventTime(100, 0), [agg('sess', { type: 'session', gapMs: 10 }, ['user'])]);
  assert.deepEqual(r.emissions, [emk('sess', 'user', 'w', 8, 18, [6]), emk('sess', 'user', 'u', 0, 40, [1, 2, 3, 4, 5])]);
  assert.deepEqual(r.deadLetters, []);
});

test('session: fired sessions merged late-but-allowed fire at once and supersede their parts', () => {
  // gap 10, ooo 0, lateness 20
  // line 0: ts 0,  W=-inf: [0,10)
  // line 1: ts 11, W=0:    [11,21) (11 > 10: no touch)
  // line 2: ts 25, W=11:   [0,10) fires [1]; [25,35) (25 > 21)
  // line 3: ts 5,  W=25:   [11,21) fires [2]; [5,15) touches [0,10) and [11,21) -> [0,21);
  //                        21 <= 25 < 41: late but allowed, fires [1,2,4] late
  // end: [25,35) [3]
  const lines = [ev(0, 1), ev(11, 2), ev(25, 3), ev(5, 4)];
  const r = runReference(lines, eventTime(0, 20), [agg('s', { type: 'session', gapMs: 10 })]);
  assert.deepEqual(r.emissions, [
    em('s', 0, 10, [1]),
    em('s', 11, 21, [2]),
    em('s', 0, 21, [1, 2, 4], true),
    em('s', 25, 35, [3]),
  ]);
  assert.deepEqual(r.deadLetters, []);
  assert.deepEqual(finalResults(r.emissions), [em('s', 0, 21, [1, 2, 4], true), em('s', 25, 35, [3])]);
});

test('session: a fired session extended past W becomes a new window that fires later', () => {
  // gap 10, ooo 0, lateness 20
  // line 0: ts 0,  W=-inf: [0,10)
  // line 1: ts 12, W=0:    [12,22)
  // line 2: ts 8,  W=12:   [0,10) fires [1]; [8,18) joins [0,10) and [12,22) -> [0,22), on time
  // end: [0,22) [1,2,3], never fired -> late false
  const lines = [ev(0, 1), ev(12, 2), ev(8, 3)];
  const r = runReference(lines, eventTime(0, 20), [agg('s', { type: 'session', gapMs: 10 })]);
  assert.deepEqual(r.emissions, [em('s', 0, 10, [1]), em('s', 0, 22, [1, 2, 3])]);
  assert.deepEqual(finalResults(r.emissions), [em('s', 0, 22, [1, 2, 3])]);
});

test('session: too-late events are dead-lettered and merge with nothing', () => {
  // gap 10, ooo 0, lateness 0
  // line 0: ts 0,  W=-inf: [0,10)
  // line 1: ts 50, W=0:    [50,60)
  // line 2: ts 8,  W=50:   [0,10) fires [1], purged; [8,18) ends 18 <= 50: too late
  // line 3: ts 30, W=50:   [30,40) too late
  // line 4: ts 45, W=50:   [45,55) touches [50,60) -> [45,60), on time
  // end: [45,60) [2,5]
  const lines = [ev(0, 1), ev(50, 2), ev(8, 3), ev(30, 4), ev(45, 5)];
  const r = runReference(lines, eventTime(0, 0), [agg('s', { type: 'session', gapMs: 10 })]);
  assert.deepEqual(r.emissions, [em('s', 0, 10, [1]), em('s', 45, 60, [2, 5])]);
  assert.deepEqual(r.deadLetters, [
    { original_event: lines[2], reason: 'late', aggregation: 's', line: 2 },
    { original_event: lines[3], reason: 'late', aggregation: 's', line: 3 },
  ]);
  assert.deepEqual(r.lateCounts, { s: 2 });
});

// --- invalid and malformed input ------------------------------------------

test('invalid timestamp: dead letter for every aggregation, W does not move', () => {
  // Two aggregations on the same events. Line 0 sets W to 5 for line 7; if the
  // 1e20 on line 5 had moved W, line 7 would be too late.
  const lines = [
    '{"timestamp":5,"v":1}',
    '{"timestamp":"garbage","v":1}',
    '{"timestamp":1.5,"v":1}',
    '{"v":1}',
    '{"timestamp":true,"v":1}',
    '{"timestamp":1e20,"v":1}',
    '{"timestamp":"1000","v":1}',
    '{"timestamp":7,"v":2}',
  ];
  const r = runReference(lines, eventTime(0, 0), [agg('a', tumbling10), agg('b', tumbling10)]);
  assert.deepEqual(r.emissions, [em('a', 0, 10, [1, 2]), em('b', 0, 10, [1, 2])]);
  const expected = [];
  for (const line of [1, 2, 3, 4, 5, 6]) {
    expected.push({ original_event: lines[line], reason: 'invalid', aggregation: 'a', line });
    expected.push({ original_event: lines[line], reason: 'invalid', aggregation: 'b', line });
  }
  assert.deepEqual(r.deadLetters, expected);
  assert.deepEqual(r.lateCounts, { a: 0, b: 0 });
});

test('invalid value: dead letter for that aggregation only; the event still moves W', () => {
  // a reads data.latency, b reads data.tokens; ooo 0, lateness 0, tumbling 10
  // line 0: ts 5:  a[0,10) += 1, b[0,10) += 1
  // line 1: ts 25: a invalid ("x"); b[20,30) += 2. W becomes 25.
  // line 2: ts 7,  W=25: a[0,10) fires [1], b[0,10) fires [1]; both too late
  // line 3: ts 26: a invalid (1e400 is Infinity); b += 4
  // line 4: ts 27: a invalid (missing); b += 5
  // line 5: ts 28: a invalid (null); b += 6
  // line 6: ts 29: a invalid (data is an array, so data.latency is missing); b invalid (same)
  // end: b[20,30) [2,4,5,6]
  const lines = [
    '{"timestamp":5,"data":{"latency":1,"tokens":1}}',
    '{"timestamp":25,"data":{"latency":"x","tokens":2}}',
    '{"timestamp":7,"data":{"latency":3,"tokens":3}}',
    '{"timestamp":26,"data":{"latency":1e400,"tokens":4}}',
    '{"timestamp":27,"data":{"tokens":5}}',
    '{"timestamp":28,"data":{"latency":null,"tokens":6}}',
    '{"timestamp":29,"data":[{"latency":7,"tokens":7}]}',
  ];
  const aggs = [agg('a', tumbling10, [], 'data.latency'), agg('b', tumbling10, [], 'data.tokens')];
  const r = runReference(lines, eventTime(0, 0), aggs);
  assert.deepEqual(r.emissions, [em('a', 0, 10, [1]), em('b', 0, 10, [1]), em('b', 20, 30, [2, 4, 5, 6])]);
  assert.deepEqual(r.deadLetters, [
    { original_event: lines[1], reason: 'invalid', aggregation: 'a', line: 1 },
    { original_event: lines[2], reason: 'late', aggregation: 'a', line: 2 },
    { original_event: lines[2], reason: 'late', aggregation: 'b', line: 2 },
    { original_event: lines[3], reason: 'invalid', aggregation: 'a', line: 3 },
    { original_event: lines[4], reason: 'invalid', aggregation: 'a', line: 4 },
    { original_event: lines[5], reason: 'invalid', aggregation: 'a', line: 5 },
    { original_event: lines[6], reason: 'invalid', aggregation: 'a', line: 6 },
    { original_event: lines[6], reason: 'invalid', aggregation: 'b', line: 6 },
  ]);
  assert.deepEqual(r.lateCounts, { a: 1, b: 1 });
});

test('malformed and blank lines: blank lines are skipped but counted in line numbers', () => {
  const lines = ['', '{bad', '   ', '[1]', '  {"timestamp":5,"v":1}\t', 'null', '"str"', '42', '\t', 'true'];
  const r = runReference(lines, eventTime(0, 0), [agg('a', tumbling10)]);
  assert.deepEqual(r.emissions, [em('a', 0, 10, [1])]);
  assert.deepEqual(r.deadLetters, [
    { original_event: '{bad', reason: 'malformed', line: 1 },
    { original_event: '[1]', reason: 'malformed', line: 3 },
    { original_event: 'null', reason: 'malformed', line: 5 },
    { original_event: '"str"', reason: 'malformed', line: 6 },
    { original_event: '42', reason: 'malformed', line: 7 },
    { original_event: 'true', reason: 'malformed', line: 9 },
  ]);
  for (const dl of r.deadLetters) assert.equal('aggregation' in dl, false);
});

// --- timestamps ------------------------------------------------------------

test('ISO timestamps: values by hand', () => {
  // 2024-01-01T00:00:00Z = 1704067200 s; 2024 is a leap year, so
  // 2025-01-01T00:00:00Z = 1704067200 + 366 * 86400 = 1735689600 s.
  assert.equal(parseEventTime('2025-01-01T12:34:56Z'), 1735734896000); // + 45296 s
  assert.equal(parseEventTime('2025-01-01T12:34:56.789+02:00'), 1735727696789); // 10:34:56.789Z, + 38096 s
  assert.equal(parseEventTime('2025-01-01T14:34:56.789+0400'), 1735727696789);
  assert.equal(parseEventTime('2025-01-01 12:34:56Z'), 1735734896000);
  assert.equal(parseEventTime('2025-01-01t12:34:56z'), 1735734896000);
  assert.equal(parseEventTime('2024-02-29T00:00:00Z'), 1709164800000); // 1704067200 + 59 days
  assert.equal(parseEventTime('2000-02-29T00:00:00Z'), 951782400000); // 946684800 + 59 days
  assert.equal(parseEventTime('1970-01-01T00:00:00.7899Z'), 789);
  assert.equal(parseEventTime('1970-01-01T00:00:00.5'), 500); // no offset: UTC
  assert.equal(parseEventTime('1970-01-01T00:00:00.123456789Z'), 123);
  assert.equal(parseEventTime('1970-01-01T00:00:00-05:30'), 19800000);
  assert.equal(parseEventTime('1970-01-01T00:00:00+0530'), -19800000);
  assert.equal(parseEventTime('1969-12-31T23:59:59.999Z'), -1);
  assert.equal(parseEventTime('0000-01-01T00:00:00Z'), -62167219200000); // year 0, not 1900
  assert.equal(parseEventTime('2025-01-01T12:00:00-00:00'), 1735732800000);
  assert.equal(parseEventTime('2025-01-01T23:59:59+23:59'), 1735689659000); // 23:59:59 - 23:59 = 00:00:59Z
});

test('ISO timestamps: rejected forms', () => {
  for (const bad of [
    '2023-02-29T00:00:00Z', // not a leap year
    '2100-02-29T00:00:00Z', // not a leap year
    '2025-04-31T00:00:00Z',
    '2025-00-10T00:00:00Z',
    '2025-13-10T00:00:00Z',
    '2025-01-00T00:00:00Z',
    '2025-01-01T24:00:00Z',
    '2025-01-01T12:60:00Z',
    '2025-01-01T12:00:60Z',
    '2025-01-01T12:00:00+24:00',
    '2025-01-01T12:00:00+05:60',
    '2025-01-01T12:00:00+5:00',
    '2025-01-01T12:00:00.1234567890Z', // 10 fraction digits
    '2025-01-01T12:00:00.Z',
    '2025-01-01T12:00Z',
    '2025-01-01',
    ' 2025-01-01T12:00:00Z',
    '2025-01-01T12:00:00Z ',
    '2025-01-01X12:00:00Z',
    '1704067200000',
    '',
  ]) {
    assert.equal(parseEventTime(bad), undefined, bad);
  }
});

test('epoch-ms timestamps: integers within +-8.64e15 only', () => {
  assert.equal(parseEventTime(8640000000000000), 8640000000000000);
  assert.equal(parseEventTime(-8640000000000000), -8640000000000000);
  assert.equal(parseEventTime(8640000000000001), undefined);
  assert.equal(parseEventTime(1.5), undefined);
  assert.equal(parseEventTime(Infinity), undefined);
  assert.equal(parseEventTime(null), undefined);
  assert.equal(parseEventTime([1]), undefined);
  assert.equal(parseEventTime({ ms: 1 }), undefined);
});

test('ISO timestamp and epoch ms of the same instant are the same event time', () => {
  // 2025-01-01T12:34:56.789+02:00 = 1735727696789; tumbling 1000 -> [1735727696000, 1735727697000)
  // line 2 is 10:34:57Z = 1735727697000 (next window) and moves W to 1735727697000, so
  // line 3 (11:34:56.999+01:00 = 1735727696999) is too late for the first window.
  const lines = [
    '{"timestamp":"2025-01-01T12:34:56.789+02:00","v":1}',
    '{"timestamp":1735727696789,"v":2}',
    '{"timestamp":"2025-01-01T10:34:57Z","v":3}',
    '{"timestamp":"2025-01-01T11:34:56.999+01:00","v":4}',
  ];
  const r = runReference(lines, eventTime(0, 0), [agg('a', { type: 'tumbling', sizeMs: 1000 })]);
  assert.deepEqual(r.emissions, [em('a', 1735727696000, 1735727697000, [1, 2]), em('a', 1735727697000, 1735727698000, [3])]);
  assert.deepEqual(r.deadLetters, [{ original_event: lines[3], reason: 'late', aggregation: 'a', line: 3 }]);
});

test('timestamp at a dotted path', () => {
  const r = runReference(['{"meta":{"ts":"1970-01-01T00:00:00.015Z"},"v":1}'], { field: 'meta.ts', maxOutOfOrdernessMs: 0, allowedLatenessMs: 0 }, [
    agg('a', tumbling10),
  ]);
  assert.deepEqual(r.emissions, [em('a', 10, 20, [1])]);
});

// --- keys ------------------------------------------------------------------

test('duplicate JSON keys: the last one wins, as in JSON.parse', () => {
  const line = '{"timestamp":"bad","timestamp":15,"v":1,"v":7,"g":"x","g":"y"}';
  const r = runReference([line], eventTime(0, 0), [agg('a', tumbling10, ['g'])]);
  assert.deepEqual(r.emissions, [emk('a', 'g', 'y', 10, 20, [7])]);
  assert.deepEqual(r.deadLetters, []);
});

test('group keys: value strings, missing fields, own properties, paths through non-objects', () => {
  const line = JSON.stringify({
    timestamp: 1,
    v: 1,
    data: { model: 'claude:opus', n: 1.5, flag: true, nul: null, obj: { b: 1 }, arr: [1, 'x'], s: 'str' },
  });
  const groupBy = [
    'data.model',
    'data.n',
    'data.flag',
    'data.nul',
    'data.obj',
    'data.arr',
    'data.missing',
    'data.arr.0', // through an array: missing
    'data.s.length', // through a string: missing
    'data.toString', // inherited, not own: missing
  ];
  const r = runReference([line], eventTime(0, 0), [agg('a', tumbling10, groupBy)]);
  const expected: RefEmission = {
    name: 'a',
    key: 'model=claude%3Aopus:n=1.5:flag=true:nul=null:obj={"b"%3A1}:arr=[1,"x"]:missing=null:0=null:length=null:toString=null',
    group: {
      model: 'claude:opus',
      n: '1.5',
      flag: 'true',
      nul: 'null',
      obj: '{"b":1}',
      arr: '[1,"x"]',
      missing: 'null',
      '0': 'null',
      length: 'null',
      toString: 'null',
    },
    window: { start: 0, end: 10 },
    late: false,
    values: [1],
  };
  assert.deepEqual(r.emissions, [expected]);
});

test('several aggregations and keys firing in one step: by end, then config order, then key', () => {
  // Aggregations in config order b, a, c. Lines 0-1 fill [0,10) of b and a and [0,5) of c
  // for keys g=y and g=x. Line 3 sees W=20: ends 5 fire before ends 10; within an end,
  // b before a (config order), and g=x before g=y. At the end of input, [20,25) of c
  // (end 25) fires before [20,30) of b and a (end 30).
  const lines = [ev(1, 1, { g: 'y' }), ev(2, 2, { g: 'x' }), ev(20, 3, { g: 'x' }), ev(21, 4, { g: 'x' })];
  const aggs = [agg('b', tumbling10, ['g']), agg('a', tumbling10, ['g']), agg('c', { type: 'tumbling', sizeMs: 5 }, ['g'])];
  const r = runReference(lines, eventTime(0, 0), aggs);
  assert.deepEqual(r.emissions, [
    emk('c', 'g', 'x', 0, 5, [2]),
    emk('c', 'g', 'y', 0, 5, [1]),
    emk('b', 'g', 'x', 0, 10, [2]),
    emk('b', 'g', 'y', 0, 10, [1]),
    emk('a', 'g', 'x', 0, 10, [2]),
    emk('a', 'g', 'y', 0, 10, [1]),
    emk('c', 'g', 'x', 20, 25, [3, 4]),
    emk('b', 'g', 'x', 20, 30, [3, 4]),
    emk('a', 'g', 'x', 20, 30, [3, 4]),
  ]);
});

// --- finalResults ------------------------------------------------------------

test('finalResults: last emission per window, sorted by name, key, start, end', () => {
  const emissions = [
    emk('b', 'k', '2', 10, 20, [1]),
    emk('b', 'k', '1', 10, 20, [2]),
    em('a', 10, 20, [3]),
    em('a', 0, 10, [4]),
    em('a', 0, 10, [4, 5], true),
    emk('b', 'k', '2', 10, 20, [1, 6], true),
  ];
  assert.deepEqual(finalResults(emissions), [
    em('a', 0, 10, [4, 5], true),
    em('a', 10, 20, [3]),
    emk('b', 'k', '1', 10, 20, [2]),
    emk('b', 'k', '2', 10, 20, [1, 6], true),
  ]);
});

test('finalResults: a window contained in a later-emitted one of the same name and key is superseded', () => {
  const emissions = [
    em('s', 0, 10, [1]), // contained in [0,30), emitted later: dropped
    em('s', 5, 12, [2]), // contained in [0,30), emitted later: dropped
    emk('s', 'k', 'other', 0, 10, [3]), // other key: kept
    em('t', 0, 10, [4]), // other name: kept
    em('s', 0, 30, [1, 2, 5]),
    em('s', 25, 40, [6]), // overlaps [0,30) without being contained: kept
    em('s', 40, 45, [7]), // contained in [0,50), emitted later: dropped
    em('s', 0, 50, [1, 2, 5, 6, 7]), // contains [0,30) and [25,40): they are dropped too
    em('s', 60, 70, [8]),
    em('s', 65, 70, [9]), // contained in [60,70) but emitted later: kept
  ];
  assert.deepEqual(finalResults(emissions), [
    em('s', 0, 50, [1, 2, 5, 6, 7]),
    em('s', 60, 70, [8]),
    em('s', 65, 70, [9]),
    emk('s', 'k', 'other', 0, 10, [3]),
    em('t', 0, 10, [4]),
  ]);
});

test('finalResults: a purged session later covered by another session is dropped too (containment rule, literally)', () => {
  // gap 10, ooo 0, lateness 20. This pins the literal containment rule; see the
  // OPEN POINT at finalResults in reference.ts.
  // line 0: ts 10, W=-inf: [10,20)
  // line 1: ts 21, W=10:   [21,31) (21 > 20: no touch)
  // line 2: ts 45, W=21:   [10,20) fires [1]; [45,55)
  // line 3: ts 12, W=45:   [21,31) fires [2]; [10,20) purged (40 <= 45);
  //                        [12,22) touches [21,31) -> [12,31), 31 <= 45 < 51: fires [2,4] late
  // line 4: ts 5,  W=45:   [5,15) touches [12,31) -> [5,31) (not the purged [10,20)): fires [2,4,5] late
  // end: [45,55) [3]
  const lines = [ev(10, 1), ev(21, 2), ev(45, 3), ev(12, 4), ev(5, 5)];
  const r = runReference(lines, eventTime(0, 20), [agg('s', { type: 'session', gapMs: 10 })]);
  assert.deepEqual(r.emissions, [
    em('s', 10, 20, [1]),
    em('s', 21, 31, [2]),
    em('s', 12, 31, [2, 4], true),
    em('s', 5, 31, [2, 4, 5], true),
    em('s', 45, 55, [3]),
  ]);
  assert.deepEqual(r.deadLetters, []);
  // [10,20) [1] never merged into [5,31), but [5,31) contains it and came later.
  assert.deepEqual(finalResults(r.emissions), [em('s', 5, 31, [2, 4, 5], true), em('s', 45, 55, [3])]);
});

// --- configuration -----------------------------------------------------------

test('configuration errors are thrown, not guessed at', () => {
  assert.throws(() => runReference([], eventTime(0, 0), [agg('a', tumbling10), agg('a', tumbling10)]));
  assert.throws(() => runReference([], eventTime(0, 0), [agg('a', { type: 'tumbling', sizeMs: 0 })]));
  assert.throws(() => runReference([], eventTime(-1, 0), [agg('a', tumbling10)]));
  assert.deepEqual(runReference([], eventTime(0, 0), [agg('a', tumbling10)]), { emissions: [], deadLetters: [], lateCounts: { a: 0 } });
});
