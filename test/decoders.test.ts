// The WASM byte scanner and the JSON.parse path must decode every line identically:
// the same results (bit for bit), the same dead letters, on awkward JSON.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { runLines, testConfig } from './helpers/run';

const cfg = testConfig({
  eventTime: { field: 'meta.ts', maxOutOfOrdernessMs: 50, allowedLatenessMs: 50 },
  aggregations: [
    { name: 'a', groupBy: ['g.k', 'g.n'], value: 'd.v', window: { type: 'tumbling', sizeMs: 100 } },
    { name: 'b', groupBy: ['g.k'], value: 'd.w', window: { type: 'session', gapMs: 30 } },
  ],
});

const numberText = fc.oneof(
  fc.integer({ min: -1000, max: 1000 }).map(String),
  fc.double({ noNaN: true, noDefaultInfinity: true }).map((x) => JSON.stringify(x)),
  fc.constantFrom('1e2', '1E+2', '-0', '0.1', '123456789012345678', '1.7976931348623157e308', '1e400', '5e-324', '0.30000000000000004', '1000000000000000000000', '2.5e-3', '9007199254740993'),
);
const stringText = fc.oneof(
  fc.string().map((s) => JSON.stringify(s)),
  fc.constantFrom('"\\u0061"', '"a\\nb"', '"\\ud83d\\ude00"', '"é"', '"null"', '"\\\\"'),
);
const valueText = fc.oneof(numberText, stringText, fc.constantFrom('true', 'false', 'null', '{}', '[1,2]', '{"x":[{}]}'));
const tsText = fc.oneof(
  fc.integer({ min: 0, max: 400 }).map(String),
  fc.integer({ min: 0, max: 400 }).map((ms) => JSON.stringify(new Date(ms).toISOString())),
  fc.constantFrom('"1970-01-01T00:00:00.1+00:00"', '"1970-01-01t00:00:00.250z"', '"1970-01-01T00:00:00\\u002e3Z"', '12.5', '1e2', '"bad"', 'null', '1.00e2'),
);
const key = fc.constantFrom('"meta"', '"g"', '"d"', '"\\u0064"', '"ts"', '"k"', '"n"', '"v"', '"w"', '"other"');

/** An object text with the fields in random order, duplicates and escaped keys allowed. */
const lineArb = fc.oneof(
  { weight: 8, arbitrary: fc.record({ ts: tsText, k: valueText, n: valueText, v: numberText, w: valueText, extra: fc.array(fc.tuple(key, valueText), { maxLength: 3 }), dupe: fc.boolean() }).map(
    (r) => `{"meta":{"ts":${r.ts}},"g":{"k":${r.k},"n":${r.n}},"d":{"v":${r.v},"w":${r.w}}${r.extra.map(([k, v]) => `,${k}:${v}`).join('')}${r.dupe ? `,"d":{"v":${r.v}}` : ''}}`,
  ) },
  { weight: 1, arbitrary: fc.oneof(fc.string(), valueText, fc.constantFrom('{"meta":{"ts":1}', '{"a":01}', '{"a":.5}', '\u00a0', '{"a":"\t"}', '{} x', ' {} ', '{"a":1,}')) },
);

test('scan decoder == JSON.parse decoder on awkward JSON', () => {
  fc.assert(
    fc.property(fc.array(lineArb, { minLength: 1, maxLength: 60 }), fc.integer({ min: 1, max: 20 }), (lines, batch) => {
      const scan = runLines(cfg, lines, batch, 'scan');
      const json = runLines(cfg, lines, batch, 'json');
      assert.deepEqual(scan.results, json.results);
      assert.deepEqual(scan.deadLetters, json.deadLetters);
      assert.deepEqual(scan.late, json.late);
    }),
    { numRuns: 400 },
  );
});

test('scan decoder: a value spelled plainly first and another way later is one key, in one batch or across batches', () => {
  // The registry skips its key-string lookup while every key came as a plain ASCII
  // string; the first other spelling must still find the plain key registered before it.
  const v = ['"a"', '"\\u0061"', '"true"', 'true', '"5"', '5.0', '5', '"null"', null, '"é"', '"\\u00e9"'];
  const lines = v.map((k, i) => `{"meta":{"ts":${i}},"g":{${k === null ? '' : `"k":${k},`}"n":1},"d":{"v":${i},"w":${i}}}`);
  for (const batch of [1, 2, 3, lines.length]) {
    const scan = runLines(cfg, lines, batch, 'scan');
    assert.deepEqual(scan.results, runLines(cfg, lines, batch, 'json').results);
    // One session per key: the spellings of a value add up in one window.
    const sessions = scan.results.filter((r) => r.name === 'b');
    assert.deepEqual(sessions.map((r) => [r.key, r.results.count]).sort(), [['k=5', 3], ['k=a', 2], ['k=null', 2], ['k=true', 2], ['k=é', 2]]);
  }
});
