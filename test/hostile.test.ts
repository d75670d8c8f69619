// Hostile input: records built to break a parser (nesting thousands of levels deep,
// huge arrays, long strings, odd escapes, lone surrogates, NUL, invalid UTF-8) go
// through both decoders without ending the run: every record counts or is
// dead-lettered with a reason, and the two decoders agree.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { testConfig } from './helpers/run';
import { WindowOperator, type Output } from '../src/pipeline/operator';
import { jsonText } from '../src/pipeline/paths';
import type { DeadLetter, RecordBatch, WindowResult } from '../src/pipeline/types';

const cfg = testConfig({
  // No event is ever late: every record that is not dead-lettered must be counted.
  eventTime: { field: 'ts', maxOutOfOrdernessMs: 1e9, allowedLatenessMs: 0 },
  aggregations: [
    { name: 'a', groupBy: ['g', 'h.k'], value: 'v', window: { type: 'tumbling', sizeMs: 100 } },
    { name: 'b', groupBy: ['h'], value: 'w', window: { type: 'session', gapMs: 50 } },
  ],
});

interface Run {
  results: WindowResult[];
  deadLetters: DeadLetter[];
}

function batchOf(lines: readonly Buffer[], firstOffset: number): RecordBatch {
  const starts = new Uint32Array(lines.length), ends = new Uint32Array(lines.length);
  let pos = 0;
  lines.forEach((l, i) => {
    starts[i] = pos;
    ends[i] = pos + l.length;
    pos += l.length + 1;
  });
  return { buf: Buffer.concat(lines.flatMap((l) => [l, Buffer.from('\n')])), starts, ends, n: lines.length, partition: 3, firstOffset };
}

function run(lines: readonly Buffer[], batchSize: number, decoder: 'scan' | 'json'): Run {
  const op = new WindowOperator({ ...cfg, processing: { ...cfg.processing, batchSize } }, { clock: () => 0, decoder });
  const acc: Run = { results: [], deadLetters: [] };
  const take = (o: Output): void => {
    acc.results.push(...o.results.toObjects());
    acc.deadLetters.push(...o.deadLetters);
  };
  for (let i = 0; i < lines.length; i += batchSize) take(op.process(batchOf(lines.slice(i, i + batchSize), i)));
  take(op.finish());
  return acc;
}

const nest = (depth: number, open: string, close: string, inner: string): string => open.repeat(depth) + inner + close.repeat(depth);
const deep = fc.oneof(
  fc.integer({ min: 1, max: 20_000 }).map((d) => nest(d, '[', ']', '')),
  fc.integer({ min: 1, max: 20_000 }).map((d) => nest(d, '{"k":', '}', '1')),
  fc.integer({ min: 1, max: 10_000 }).map((d) => nest(d, '[{"k":', '}]', '"x"')),
  // Unbalanced: malformed, and still deep.
  fc.integer({ min: 1, max: 20_000 }).map((d) => '['.repeat(d)),
);
const huge = fc.oneof(
  fc.integer({ min: 0, max: 50_000 }).map((n) => `[${'0,'.repeat(n)}1]`),
  fc.integer({ min: 0, max: 5_000 }).map((n) => `{${Array.from({ length: n }, (_, i) => `"k${i}":${i}`).join(',')}}`),
);
const longString = fc.tuple(fc.integer({ min: 0, max: 50_000 }), fc.constantFrom('x', '\\n', '\\u00e9', '\\\\', '"', 'é')).map(([n, unit]) =>
  unit === '"' ? `"${'a'.repeat(n)}` /* unterminated */ : `"${unit.repeat(Math.ceil(n / unit.length))}"`,
);
const oddString = fc.constantFrom(
  '"\\u0000"', '"\\ud800"', '"\\udc00\\ud800"', '"a\\ud83d"', '"\\ud83d\\ude00"', '"\\/"', '"\\b\\f\\n\\r\\t"', '"\\u00E9"', '"\\x"', '"\\u12"', '"\\u12g4"',
  '"null"', '":="', '"%3A"', '"a\u0000b"', '"\u0001"', '"\u007f"', '"\u2028\u2029"', '"\\"', '"\\u0022"', '"' + '\\'.repeat(9) + '"',
);
const oddNumber = fc.constantFrom('1e400', '-1e400', '-0', '1e-400', '01', '1.', '.5', '-', '1e', '0x10', 'NaN', 'Infinity', '123456789012345678901234567890', '5e-324');
const plain = fc.oneof(fc.integer({ min: 0, max: 500 }).map(String), fc.constantFrom('"a"', '"b"', 'true', 'null', '{}', '[]'));
const hostile = fc.oneof(deep, huge, longString, oddString, oddNumber, plain);
const ts = fc.oneof({ weight: 4, arbitrary: fc.integer({ min: 0, max: 500 }).map(String) }, { weight: 1, arbitrary: hostile });
const val = fc.oneof({ weight: 3, arbitrary: fc.integer({ min: -5, max: 500 }).map(String) }, { weight: 1, arbitrary: hostile });
const grp = fc.oneof({ weight: 2, arbitrary: plain }, { weight: 1, arbitrary: hostile });

/** Bytes that are not valid UTF-8 (a lone surrogate as WTF-8, a stray continuation byte, a cut sequence, 0xff), or NUL. */
const rawBytes = fc.constantFrom([0xed, 0xa0, 0x80], [0x80], [0xe2, 0x82], [0xff], [0x00], [0xc0, 0xaf]).map((b) => Buffer.from(b));

const lineArb: fc.Arbitrary<Buffer> = fc.oneof(
  { weight: 6, arbitrary: fc.record({ ts, v: val, w: val, g: grp, k: grp, h: grp }).map((r) => Buffer.from(`{"ts":${r.ts},"v":${r.v},"w":${r.w},"g":${r.g},"h":{"k":${r.k}},"hh":${r.h}}`)) },
  { weight: 1, arbitrary: fc.record({ ts, v: val, h: grp }).map((r) => Buffer.from(`{"ts":${r.ts},"v":${r.v},"w":1,"h":${r.h}}`)) },
  // A whole line that is hostile (not an object, or cut short).
  { weight: 1, arbitrary: hostile.map((t) => Buffer.from(t)) },
  { weight: 1, arbitrary: fc.tuple(fc.record({ ts, v: val, g: grp }), fc.nat()).map(([r, cut]) => {
    const s = `{"ts":${r.ts},"v":${r.v},"w":2,"g":${r.g}}`;
    return Buffer.from(s.slice(0, cut % (s.length + 1)));
  }) },
  // Invalid UTF-8 or NUL inside a string, or outside one.
  { weight: 1, arbitrary: fc.tuple(rawBytes, fc.boolean()).map(([b, inside]) =>
    inside ? Buffer.concat([Buffer.from('{"ts":1,"v":1,"w":1,"g":"'), b, Buffer.from('","h":"'), b, Buffer.from('"}')]) : Buffer.concat([Buffer.from('{"ts":1,"v":1,'), b, Buffer.from('"w":1}')]),
  ) },
  { weight: 1, arbitrary: fc.constantFrom('', '   ', '\t\r').map((t) => Buffer.from(t)) },
);

function isBlank(line: Buffer): boolean {
  return /^[ \t\r\n]*$/.test(line.toString('latin1'));
}

/** Every non-blank record of `lines` counts in aggregation `name` or is dead-lettered for it, never both, never twice. */
function assertAccounted(lines: readonly Buffer[], r: Run, name: string): void {
  const finals = new Map<string, number>();
  for (const x of r.results) if (x.name === name) finals.set(`${x.key}|${x.window.start}|${x.window.end}`, x.results.count);
  // A session that fired and then merged is superseded by the larger window: count each
  // event once by taking only windows no other final window of the same key contains.
  const counted = [...finals.entries()]
    .filter(([id]) => {
      const [key, s, e] = id.split('|');
      return ![...finals.keys()].some((o) => {
        const [k2, s2, e2] = o.split('|');
        return o !== id && k2 === key && Number(s2) <= Number(s) && Number(e) <= Number(e2);
      });
    })
    .reduce((n, [, c]) => n + c, 0);
  const dead = new Set<string>();
  for (const d of r.deadLetters) {
    assert.ok(d.reason.length > 0 && d.error.length > 0, 'a dead letter has a reason and an error');
    assert.equal(d.partition, 3);
    if (d.reason === 'malformed' || d.aggregation === name) {
      assert.ok(!dead.has(d.offset), `record ${d.offset} dead-lettered twice for ${name}`);
      dead.add(d.offset);
      assert.ok(!isBlank(lines[Number(d.offset)]!), 'a blank line is skipped, not dead-lettered');
    }
  }
  const nonBlank = lines.filter((l) => !isBlank(l)).length;
  assert.equal(counted + dead.size, nonBlank, `aggregation ${name}: ${counted} counted + ${dead.size} dead-lettered of ${nonBlank} records`);
}

test('hostile JSON through both decoders: no throw, every record counted or dead-lettered, both agree', () => {
  fc.assert(
    fc.property(fc.array(lineArb, { minLength: 1, maxLength: 12 }), fc.integer({ min: 1, max: 8 }), (lines, batch) => {
      const scan = run(lines, batch, 'scan');
      const json = run(lines, batch, 'json');
      assert.deepEqual(scan.results, json.results);
      assert.deepEqual(scan.deadLetters, json.deadLetters);
      assertAccounted(lines, scan, 'a');
      assertAccounted(lines, scan, 'b');
    }),
    { numRuns: 100 },
  );
});

test('a value 5,000 and 50,000 levels deep in a group-by, value or timestamp field is grouped or dead-lettered naming the field', () => {
  for (const depth of [5_000, 50_000]) {
    const arr = nest(depth, '[', ']', '');
    const obj = nest(depth, '{"k":', '}', '1');
    const lines = [
      `{"ts":1,"v":1,"w":1,"g":${arr},"h":{"k":"x"}}`,
      `{"ts":2,"v":${obj},"w":2,"g":"y"}`,
      `{"ts":${arr},"v":3,"w":3,"g":"z"}`,
      `{"ts":4,"v":4,"w":4,"g":"y","h":${obj}}`,
    ].map((l) => Buffer.from(l));
    for (const decoder of ['scan', 'json'] as const) {
      const r = run(lines, 4, decoder);
      const a = r.results.filter((x) => x.name === 'a');
      const deepKey = a.find((x) => x.group['g'] === arr);
      assert.ok(deepKey, `${decoder}: the deep array is a group value`);
      assert.equal(deepKey.key, `g=${arr}:k=x`);
      const b = r.results.filter((x) => x.name === 'b');
      assert.ok(b.some((x) => x.group['h'] === obj), `${decoder}: the deep object is a group value, as JSON text`);
      const errors = r.deadLetters.map((d) => `${d.offset} ${d.reason} ${d.aggregation} ${d.error}`);
      assert.equal(errors.length, 3, errors.join('\n').slice(0, 2000));
      assert.match(errors[0]!, /^1 invalid a value field 'v' is not a number: \{"k":\{"k":/);
      assert.ok(errors[0]!.length < 400, 'the message quotes a preview, not the whole value');
      assert.match(errors[1]!, /^2 invalid a timestamp field 'ts' is neither epoch milliseconds nor an ISO-8601 date-time: \[\[\[/);
      assert.match(errors[2]!, /^2 invalid b timestamp field 'ts' is/);
    }
  }
});

test('jsonText gives JSON.stringify\'s text for any JSON value', () => {
  fc.assert(
    fc.property(fc.jsonValue(), (v) => {
      assert.equal(jsonText(v), JSON.stringify(v));
    }),
    { numRuns: 500 },
  );
  const parsed: unknown = JSON.parse('{"b":1,"a":[1e400,-0,"\\ud800",{"__proto__":2,"1":3,"0":null}],"\\u0000":""}');
  assert.equal(jsonText(parsed), JSON.stringify(parsed));
});

test('weir run: a line nested 10,000 levels deep is a dead letter and the run completes', () => {
  const dir = mkdtempSync(join(tmpdir(), 'weir-hostile-'));
  const deepValue = nest(10_000, '[', ']', '');
  writeFileSync(join(dir, 'events.jsonl'), [`{"timestamp":1000,"data":{"model":${deepValue},"latency_ms":${deepValue}}}`, '{"timestamp":1000,"data":{"model":"m","latency_ms":5}}', ''].join('\n'));
  const config = join(dir, 'weir.yaml');
  writeFileSync(config, `
source: { type: file, path: ${join(dir, 'events.jsonl')} }
eventTime: { field: timestamp, maxOutOfOrdernessMs: 1s, allowedLatenessMs: 0 }
aggregations:
  - { name: latency, groupBy: [data.model], value: data.latency_ms, window: { type: tumbling, sizeMs: 10s } }
sinks: [ { type: file, path: ${join(dir, 'results.jsonl')} } ]
deadLetter: { type: file, path: ${join(dir, 'dlq.jsonl')} }
`);
  const r = spawnSync(process.execPath, [join(__dirname, '..', '..', 'bin', 'weir.js'), 'run', '--config', config, '--no-progress'], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  const dlq = readFileSync(join(dir, 'dlq.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as DeadLetter);
  assert.equal(dlq.length, 1);
  assert.equal(dlq[0]!.reason, 'invalid');
  assert.equal(dlq[0]!.offset, '0');
  assert.match(dlq[0]!.error, /value field 'data\.latency_ms' is not a number/);
  const results = readFileSync(join(dir, 'results.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as WindowResult);
  assert.deepEqual(results.map((x) => [x.key, x.results.count]), [['model=m', 1]]);
});
