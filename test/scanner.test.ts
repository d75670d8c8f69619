// The WASM record scanner must agree with JSON.parse (after Node's UTF-8
// decoding) on every record: status and every extracted path. Also: exact
// numbers, interning tables, ISO time parsing.
import { test } from 'node:test';
import { strict as assert } from 'node:assert';
import { rng } from './helpers/random';
import {
  FLAG_NUM_EXACT,
  FLAG_STR_ESCAPED,
  KIND_ARRAY,
  KIND_FALSE,
  KIND_MISSING,
  KIND_NULL,
  KIND_NUMBER,
  KIND_OBJECT,
  KIND_STRING,
  KIND_TRUE,
  RecordScanner,
  STATUS_BLANK,
  STATUS_MALFORMED,
  STATUS_OK,
  compilePathSpec,
  fieldValue,
  loadScanWasm,
  readBytes,
  writeBytes,
  type ScanExports,
} from './helpers/scanwasm';

const wasm: ScanExports = loadScanWasm();
const utf8 = (s: string): Uint8Array => new Uint8Array(Buffer.from(s, 'utf8'));

// ─── Reference: what the TypeScript side would get from JSON.parse ───────────

interface Expected {
  status: number;
  values: unknown[];
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function walk(root: unknown, p: string): unknown {
  let cur: unknown = root;
  for (const seg of p.split('.')) {
    if (!isPlainObject(cur) || !Object.prototype.hasOwnProperty.call(cur, seg)) return undefined;
    cur = cur[seg];
  }
  return cur;
}

function reference(bytes: Uint8Array, paths: string[]): Expected {
  const text = Buffer.from(bytes).toString('utf8');
  const missing = paths.map(() => undefined);
  if (/^[ \t\n\r]*$/.test(text)) return { status: STATUS_BLANK, values: missing };
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    return { status: STATUS_MALFORMED, values: missing };
  }
  if (!isPlainObject(v)) return { status: STATUS_MALFORMED, values: missing };
  return { status: STATUS_OK, values: paths.map((p) => walk(v, p)) };
}

function kindOf(v: unknown): number {
  if (v === undefined) return KIND_MISSING;
  if (v === null) return KIND_NULL;
  if (v === true) return KIND_TRUE;
  if (v === false) return KIND_FALSE;
  if (typeof v === 'number') return KIND_NUMBER;
  if (typeof v === 'string') return KIND_STRING;
  return Array.isArray(v) ? KIND_ARRAY : KIND_OBJECT;
}

/** Scans `records` in one call and checks each against the reference. Returns the scan. */
function checkAgainstReference(scanner: RecordScanner, paths: string[], records: Uint8Array[]): void {
  const res = scanner.scan(records);
  records.forEach((rec, i) => {
    const exp = reference(rec, paths);
    const what = (): string => `record ${i}: ${JSON.stringify(Buffer.from(rec).toString('latin1'))}`;
    assert.equal(res.status[i], exp.status, `status of ${what()}`);
    const row = res.fields[i];
    assert.ok(row);
    paths.forEach((p, k) => {
      const f = row[k];
      assert.ok(f);
      const want = exp.values[k];
      assert.equal(f.kind, kindOf(want), `kind of ${JSON.stringify(p)} in ${what()}`);
      if (f.kind === KIND_MISSING) {
        assert.equal(f.start, 0);
        assert.equal(f.end, 0);
        assert.equal(f.flags, 0);
        assert.ok(Number.isNaN(f.num));
        return;
      }
      const got = fieldValue(res.bytes, f);
      if (f.kind === KIND_OBJECT || f.kind === KIND_ARRAY) {
        assert.deepStrictEqual(got, want, `value of ${JSON.stringify(p)} in ${what()}`);
      } else {
        assert.ok(Object.is(got, want), `value of ${JSON.stringify(p)} in ${what()}: got ${String(got)}, want ${String(want)}`);
      }
      if (f.kind === KIND_STRING) {
        const body = res.bytes.subarray(f.start + 1, f.end - 1);
        assert.equal((f.flags & FLAG_STR_ESCAPED) !== 0, body.includes(0x5c), `STR_ESCAPED of ${what()}`);
      }
      if (f.kind !== KIND_NUMBER || !(f.flags & FLAG_NUM_EXACT)) assert.ok(Number.isNaN(f.num));
    });
  });
}

// ─── Seeded randomness ────────────────────────────────────────────────────────


class Gen {
  constructor(readonly rand: () => number) {}
  int(n: number): number {
    return Math.floor(this.rand() * n);
  }
  pick<T>(xs: readonly T[]): T {
    const x = xs[this.int(xs.length)];
    if (x === undefined) throw new Error('empty');
    return x;
  }
  chance(p: number): boolean {
    return this.rand() < p;
  }
}

// ─── (a) Hand-written cases ───────────────────────────────────────────────────

const EVENT_PATHS = ['timestamp', 'data.model', 'data.region', 'data.latency_ms', 'metadata.user_id'];

test('hand-written records agree with JSON.parse', () => {
  const paths = [
    ...EVENT_PATHS,
    'x', 'a', 'a.b', 'a.b.c', 'data', '', 'k.', 'é', '😀', 'x', 'n', 't', 'f', 'arr', 's', '__proto__',
  ];
  const scanner = new RecordScanner(wasm, paths);
  const cases: Array<string | Uint8Array> = [
    '{"id":"e-1","timestamp":1704110400000,"data":{"model":"claude-opus","region":"us","latency_ms":812.4,"tokens":512,"cost":0.0123},"metadata":{"user_id":"u-17","source":"observatory"}}',
    '{}',
    ' { } ',
    '{"x":1}',
    '{"x":-0}',
    '{"x":-0.0e5}',
    '{"x":0}',
    '{"x":1e308}',
    '{"x":1e309}',
    '{"x":-1e309}',
    '{"x":5e-324}',
    '{"x":2e-324}',
    '{"x":0.1}',
    '{"x":123456789012345678}',
    '{"x":1.7976931348623157e308}',
    '{"x":9007199254740993}',
    '{"x":9007199254740992}',
    '{"x":1E+2}',
    '{"x":1e-2}',
    '{"x":1e23}',
    '{"x":0.000001}',
    '{"x":1.00000000000000000000000000001}',
    '{"x":0e99999999999}',
    '{"x":1e-99999999999}',
    '{"x":123.456e-7}',
    '{"x":"s","n":null,"t":true,"f":false,"arr":[1,{"a":2},[]],"a":{"b":{"c":"deep"}}}',
    '{"x":1,"x":"s"}',
    '{"data":{"model":"a"},"data":{"region":"eu"}}',
    '{"data":{"model":"a"},"data":5}',
    '{"data":5,"data":{"model":"m"}}',
    '{"a":{"b":{"c":1},"b":{"d":2}}}',
    '{"a":{"b":{"c":1}},"a":{"b":{"c":2,"c":3}}}',
    '{"\\u0064ata":{"mo\\u0064el":"esc"}}',
    '{"d\\u0061ta":{"model":"x\\ny"}}',
    '{"data\\"":{"model":1},"data":{"model":2}}',
    '{"\\u00e9":1,"\\ud83d\\ude00":2}',
    '{"é":"raw","😀":"raw"}',
    '{"":"empty","k":{"":"k-empty"}}',
    '{"__proto__":{"a":1}}',
    '{"data":[{"model":"in-array"}]}',
    '{"data":"str","metadata":null}',
    '{"s":"a\\"b\\\\c\\/d\\b\\f\\n\\r\\t\\u0041\\uD800"}',
    '{"s":"x"}\r',
    '\t{"s":"x"}\r\n',
    '',
    '   ',
    ' \t\r ',
    '\r',
    '\ufeff{"x":1}',
    '[1,2]',
    '"str"',
    '123',
    'true',
    'false',
    'null',
    '{"x":01}',
    '{"x":+1}',
    '{"x":.5}',
    '{"x":5.}',
    '{"x":1e}',
    '{"x":1e+}',
    '{"x":-}',
    '{"x":-a}',
    '{"x":--1}',
    '{"x":0x10}',
    '{"x":NaN}',
    '{"x":Infinity}',
    '{"x":tru}',
    '{"x":nul}',
    '{"x":fals}',
    '{"x":True}',
    '{"x":1,}',
    '{"x":1',
    '{"x"}',
    '{"x":}',
    '{x:1}',
    "{'x':1}",
    '{"x":1}}',
    '{"x":1} {}',
    '{"x":[1,]}',
    '{"x":[,1]}',
    '{"x":[1 2]}',
    '{"x":"a\tb"}',
    '{"x":"a\u0001b"}',
    '{"x":"\\x"}',
    '{"x":"\\u12"}',
    '{"x":"\\u12G4"}',
    '{"x":"\\',
    '{"x":"abc',
    '{"x":1}\u00a0',
    '{"x":1}\u2028',
    '{,}',
    '{"a":1,,"b":2}',
    '{"a" : 1 , "x" :\t[ ] , "data" : { } }',
    '{"x":"\\u0000"}',
    '{"x":"a very long string body that needs more than sixteen bytes to scan \\" with escape"}',
  ];
  const records = cases.map((c) => (typeof c === 'string' ? utf8(c) : c));
  // Raw bytes: invalid UTF-8 inside a string is fine; outside it is an error.
  records.push(Uint8Array.from([...utf8('{"x":"'), 0xff, 0xc3, ...utf8('"}')]));
  records.push(Uint8Array.from([...utf8('{"x":1'), 0xff, ...utf8('}')]));
  records.push(Uint8Array.from([0xef, 0xbb, 0xbf, ...utf8('{}')]));
  records.push(Uint8Array.from([...utf8('{"'), 0xe9, ...utf8('":3}')]));
  checkAgainstReference(scanner, paths, records);

  // Spot checks of the field records themselves.
  const res = scanner.scan([utf8('{"timestamp":1704110400000,"data":{"model":"m\\n"},"x":[1]}')]);
  const row = res.fields[0];
  assert.ok(row);
  assert.deepEqual(row[0], { kind: KIND_NUMBER, flags: FLAG_NUM_EXACT, start: 13, end: 26, num: 1704110400000 });
  assert.equal(row[1]?.kind, KIND_STRING);
  assert.equal(row[1]?.flags, FLAG_STR_ESCAPED);
  assert.equal(Buffer.from(res.bytes.subarray(row[1]?.start, row[1]?.end)).toString(), '"m\\n"');
  assert.equal(row[9]?.kind, KIND_OBJECT);
  assert.equal(Buffer.from(res.bytes.subarray(row[9]?.start, row[9]?.end)).toString(), '{"model":"m\\n"}');
  assert.equal(row[5]?.kind, KIND_ARRAY);
  assert.equal(row[14]?.kind, KIND_ARRAY); // alias of path 5
  assert.deepEqual(row[14], row[5]);
});

test('keys equal to U+FFFD or lone surrogates are matched as Node decodes the line', () => {
  const paths = ['\ufffd', 'a\ud800', '\udc00.b', 'x'];
  const scanner = new RecordScanner(wasm, paths);
  const records = [
    '{"\\ufffd":1}',
    '{"\ufffd":2}',
    '{"a\\ud800":3,"\\udc00":{"b":4}}',
    '{"a\\uD800":3,"\\uDC00":{"b":4}}',
  ].map(utf8);
  records.push(Uint8Array.from([...utf8('{"'), 0xff, ...utf8('":5}')])); // decodes to U+FFFD
  records.push(Uint8Array.from([...utf8('{"'), 0xed, 0xa0, 0x80, ...utf8('":6}')])); // 3 × U+FFFD
  records.push(Uint8Array.from([...utf8('{"a'), 0xed, 0xa0, 0x80, ...utf8('":7}')])); // not "a\ud800"
  records.push(Uint8Array.from([...utf8('{"'), 0xe2, 0x82, ...utf8('":8}')])); // one U+FFFD (maximal subpart)
  records.push(Uint8Array.from([...utf8('{"'), 0xf0, 0x9f, 0x98, ...utf8('":9,"x":0}')]));
  checkAgainstReference(scanner, paths, records);
});

test('deep nesting is handled without recursion', () => {
  const depth = 100_000;
  const deep = '{"a":' + '['.repeat(depth) + ']'.repeat(depth) + ',"x":' + '{"b":'.repeat(depth) + '1' + '}'.repeat(depth) + '}';
  const bad = '{"a":' + '['.repeat(depth) + ']'.repeat(depth - 1) + '}';
  const paths = ['a', 'x.b.b', 'x.b.b.b.b.b.b.b.b'];
  const scanner = new RecordScanner(wasm, paths);
  const res = scanner.scan([utf8(deep), utf8(bad)]);
  assert.equal(res.status[0], STATUS_OK);
  assert.equal(res.status[1], STATUS_MALFORMED);
  assert.equal(res.fields[0]?.[0]?.kind, KIND_ARRAY);
  assert.equal(res.fields[0]?.[1]?.kind, KIND_OBJECT);
  assert.equal(res.fields[0]?.[2]?.kind, KIND_OBJECT);
  checkAgainstReference(scanner, paths, [utf8(deep.slice(0, 20_000) + '}'.repeat(5)), utf8(bad)]);
});

test('no paths: validation only', () => {
  const scanner = new RecordScanner(wasm, []);
  const res = scanner.scan([utf8('{"a":1}'), utf8('{'), utf8(' ')]);
  assert.deepEqual([...res.status], [STATUS_OK, STATUS_MALFORMED, STATUS_BLANK]);
});

test('compilePathSpec layout', () => {
  const spec = compilePathSpec(['a.b', 'a', 'c', 'a.b']);
  const dv = new DataView(spec.buffer);
  const u = (o: number): number => dv.getUint32(o, true);
  assert.equal(u(0), 0x52494557);
  assert.equal(u(8), 4);
  const root = u(12);
  assert.equal(u(root), 2); // children a, c
  assert.equal(u(16), 1); // one alias
  assert.deepEqual([u(u(20)), u(u(20) + 4)], [3, 0]);
  const a = root + 24;
  assert.equal(Buffer.from(spec.subarray(u(a), u(a) + u(a + 4))).toString(), 'a');
  assert.equal(u(a + 8), 1);
  const sub = u(a + 12);
  assert.equal(u(sub), 1);
  assert.equal(u(sub + 8), 1); // desc: path 0
  assert.equal(u(u(sub + 12)), 0);
});

// ─── (b) Randomized differential test against JSON.parse ─────────────────────

const TOP_KEYS = ['timestamp', 'data', 'metadata', 'x', 'a', 'b', 'c', '', 'id', 'é', '😀', 'longer_key_name_for_simd_scan'];
const INNER_KEYS = ['model', 'region', 'latency_ms', 'user_id', 'a', 'b', 'c', 'x', '', 'tokens', 'é'];
const CONTAINER_KEYS = new Set(['data', 'metadata', 'a', 'b', 'c']);
const RAND_PATHS = [...EVENT_PATHS, 'x', 'a', 'a.b', 'a.b.c', 'data', 'b.a', '', 'é', '😀', 'c.c.c', 'x'];

function randNumberText(g: Gen): string {
  const digits = (n: number): string => {
    let s = '';
    for (let i = 0; i < n; i++) s += String(g.int(10));
    return s;
  };
  let s = g.chance(0.3) ? '-' : '';
  const intLen = g.pick([1, 1, 2, 3, 5, 10, 13, 16, 17, 19, 20, 25]);
  const int = digits(intLen).replace(/^0+(?=\d)/, '');
  s += g.chance(0.1) ? '0' : int.length > 1 && int[0] === '0' ? '1' + int.slice(1) : int;
  if (g.chance(0.5)) s += '.' + (g.chance(0.3) ? '000' : '') + digits(g.pick([1, 2, 3, 4, 6, 10, 15, 18, 22]));
  if (g.chance(0.3)) {
    s += g.pick(['e', 'E']) + g.pick(['', '+', '-']) + String(g.pick([0, 1, 2, 5, 10, 15, 22, 23, 30, 37, 100, 300, 308, 309, 320, 324, 400]));
  }
  return s;
}

function randStringBytes(g: Gen): number[] {
  const out: number[] = [0x22];
  const n = g.pick([0, 1, 3, 8, 15, 16, 17, 31, 40]);
  for (let i = 0; i < n; i++) {
    const r = g.int(20);
    if (r < 12) out.push(0x61 + g.int(26));
    else if (r === 12) out.push(...utf8(g.pick(['\\n', '\\"', '\\\\', '\\/', '\\u00e9', '\\ud83d\\ude00', '\\uDC00', '\\t', '\\b', '\\f', '\\r'])));
    else if (r === 13) out.push(...utf8(g.pick(['é', '😀', '中', '\u2028'])));
    else if (r === 14) out.push(g.pick([0x80, 0xff, 0xc3, 0xed, 0xf0, 0xe2]));
    else if (r === 15) out.push(0x20);
    else out.push(0x30 + g.int(10));
  }
  out.push(0x22);
  return out;
}

function randKeyBytes(g: Gen, k: string): number[] {
  if (g.chance(0.1) && k.length > 0) {
    // Escape one ASCII character of the key.
    const i = g.int(k.length);
    const c = k.charCodeAt(i);
    if (c < 0x80) {
      return [0x22, ...utf8(k.slice(0, i)), ...utf8('\\u' + c.toString(16).padStart(4, '0')), ...utf8(k.slice(i + 1)), 0x22];
    }
  }
  return [0x22, ...utf8(k), 0x22];
}

function ws(g: Gen): number[] {
  if (g.chance(0.8)) return [];
  return Array.from({ length: 1 + g.int(2) }, () => g.pick([0x20, 0x20, 0x09, 0x0a, 0x0d]));
}

function randValue(g: Gen, depth: number): number[] {
  const r = g.int(depth > 3 ? 6 : 9);
  switch (r) {
    case 0:
    case 1:
      return utf8(randNumberText(g)).reduce<number[]>((a, b) => (a.push(b), a), []);
    case 2:
    case 3:
      return randStringBytes(g);
    case 4:
      return [...utf8(g.pick(['true', 'false', 'null']))];
    case 5:
      return [...utf8(String(g.int(100000)))];
    case 6:
    case 7:
      return randObject(g, depth + 1);
    default: {
      const out = [0x5b, ...ws(g)];
      const n = g.int(4);
      for (let i = 0; i < n; i++) {
        if (i) out.push(0x2c, ...ws(g));
        out.push(...randValue(g, depth + 1), ...ws(g));
      }
      out.push(0x5d);
      return out;
    }
  }
}

function randObject(g: Gen, depth: number): number[] {
  const out = [0x7b, ...ws(g)];
  const n = g.int(depth === 0 ? 7 : 4);
  for (let i = 0; i < n; i++) {
    if (i) out.push(0x2c, ...ws(g));
    const k = g.pick(depth === 0 ? TOP_KEYS : INNER_KEYS);
    const v = CONTAINER_KEYS.has(k) && depth < 4 && g.chance(0.6) ? randObject(g, depth + 1) : randValue(g, depth);
    out.push(...randKeyBytes(g, k), ...ws(g), 0x3a, ...ws(g), ...v, ...ws(g));
  }
  out.push(0x7d);
  return out;
}

const MUTATION_BYTES = [
  0x7b, 0x7d, 0x5b, 0x5d, 0x2c, 0x3a, 0x22, 0x5c, 0x30, 0x31, 0x2d, 0x2b, 0x2e, 0x65, 0x20, 0x09, 0x0d, 0x00,
  0x1f, 0x7f, 0x80, 0xff, 0x61, 0x74, 0x6e, 0x66, 0x75,
];

function mutate(g: Gen, rec: number[]): number[] {
  const out = rec.slice();
  const times = 1 + g.int(2);
  for (let t = 0; t < times; t++) {
    const i = g.int(out.length + 1);
    switch (g.int(5)) {
      case 0:
        out.length = i; // truncate
        break;
      case 1:
        out.splice(i, 0, g.pick(MUTATION_BYTES));
        break;
      case 2:
        out.splice(i, 1);
        break;
      case 3:
        if (i + 1 < out.length) {
          const a = out[i] ?? 0;
          out[i] = out[i + 1] ?? 0;
          out[i + 1] = a;
        }
        break;
      default:
        out[Math.min(i, out.length - 1)] = g.pick(MUTATION_BYTES);
    }
  }
  return out.filter((b) => b !== 0x0a); // a record holds no newline
}

function randRecord(g: Gen): Uint8Array {
  const r = g.int(20);
  let rec: number[];
  if (r < 11) rec = randObject(g, 0);
  else if (r < 18) rec = mutate(g, randObject(g, 0));
  else if (r === 18) rec = randValue(g, 2); // top level not an object (or an object)
  else rec = ws(g);
  if (g.chance(0.1)) rec = [...ws(g), ...rec, ...ws(g)];
  if (g.chance(0.05)) rec.push(0x0d);
  return Uint8Array.from(rec.filter((b) => b !== 0x0a));
}

test('randomized differential test against JSON.parse (24,000 records)', () => {
  const g = new Gen(rng(0x5eed));
  const scanner = new RecordScanner(wasm, RAND_PATHS);
  let ok = 0;
  let malformed = 0;
  const found: number[] = [];
  for (let batch = 0; batch < 48; batch++) {
    const records = Array.from({ length: 500 }, () => randRecord(g));
    checkAgainstReference(scanner, RAND_PATHS, records);
    for (const r of records) {
      const exp = reference(r, RAND_PATHS);
      if (exp.status === STATUS_OK) ok++;
      else if (exp.status === STATUS_MALFORMED) malformed++;
      exp.values.forEach((v, k) => {
        if (v !== undefined) found[k] = (found[k] ?? 0) + 1;
      });
    }
  }
  // The generator must exercise both sides, and find every path now and then.
  assert.ok(ok > 8000, `ok records: ${ok}`);
  assert.ok(malformed > 5000, `malformed records: ${malformed}`);
  RAND_PATHS.forEach((p, k) => assert.ok((found[k] ?? 0) > (p.split('.').length > 2 ? 15 : 100), `path ${p} found ${found[k] ?? 0} times (all: ${found.join(" ")})`));
});

// ─── (c) Exact numbers ────────────────────────────────────────────────────────

test('NUM_EXACT values equal Number(text) bit for bit', () => {
  const g = new Gen(rng(42));
  const scanner = new RecordScanner(wasm, ['x']);
  let exact = 0;
  let total = 0;
  const bits = new DataView(new ArrayBuffer(16));
  for (let batch = 0; batch < 20; batch++) {
    const texts = Array.from({ length: 1000 }, () => {
      const r = g.int(4);
      if (r === 0) return String(g.int(2 ** 31) * (g.chance(0.5) ? -1 : 1));
      if (r === 1) return (g.rand() * 10 ** g.int(10)).toFixed(g.int(6));
      return randNumberText(g);
    });
    const res = scanner.scan(texts.map((t) => utf8(`{"x":${t}}`)));
    texts.forEach((t, i) => {
      assert.equal(res.status[i], STATUS_OK, t);
      const f = res.fields[i]?.[0];
      assert.ok(f);
      assert.equal(f.kind, KIND_NUMBER);
      total++;
      if (f.flags & FLAG_NUM_EXACT) {
        exact++;
        bits.setFloat64(0, f.num);
        bits.setFloat64(8, Number(t));
        assert.equal(bits.getBigUint64(0), bits.getBigUint64(8), `${t}: ${f.num} vs ${Number(t)}`);
      } else {
        assert.ok(Number.isNaN(f.num));
      }
    });
  }
  assert.ok(exact > total / 2, `exact ${exact} of ${total}`);
  // The common shapes of event numbers are all exact.
  const common = ['1704110400000', '812.4', '0.0123', '512', '-17.25', '0', '-0', '1e3', '2.5E-3', '9007199254740992'];
  const res = scanner.scan(common.map((t) => utf8(`{"x":${t}}`)));
  common.forEach((t, i) => {
    const f = res.fields[i]?.[0];
    assert.ok(f && f.flags & FLAG_NUM_EXACT, t);
    assert.ok(Object.is(f.num, Number(t)), t);
  });
});

// ─── (d) Interning ────────────────────────────────────────────────────────────

test('intern: dense, stable ids over 100,000 strings with repeats, against a Map', () => {
  const g = new Gen(rng(7));
  const pool: Uint8Array[] = [];
  for (let i = 0; i < 20_000; i++) {
    const len = g.pick([0, 1, 2, 3, 4, 5, 7, 8, 9, 12, 15, 16, 17, 24, 31, 40, 64, 100]);
    pool.push(Uint8Array.from({ length: len }, () => (g.chance(0.8) ? 0x61 + g.int(4) : g.int(256))));
  }
  pool.push(new Uint8Array(70_000).fill(0x41)); // larger than an arena chunk
  const tables = [wasm.internTableNew(), wasm.internTableNew()];
  const maps = [new Map<string, number>(), new Map<string, number>()];
  const buf = wasm.alloc(80_000);
  for (let i = 0; i < 100_000; i++) {
    // Skewed choice: many repeats of a few strings, and a long tail.
    const s = g.chance(0.5) ? pool[g.int(50)] : g.chance(0.001) ? pool[pool.length - 1] : pool[g.int(pool.length)];
    assert.ok(s);
    const which = g.int(2);
    const t = tables[which];
    const m = maps[which];
    assert.ok(t !== undefined && m);
    new Uint8Array(wasm.memory.buffer).set(s, buf);
    const id = wasm.intern(t, buf, s.length);
    const key = Buffer.from(s).toString('latin1');
    const want = m.get(key) ?? m.size;
    if (!m.has(key)) m.set(key, want);
    assert.equal(id, want);
  }
  tables.forEach((t, k) => {
    const m = maps[k];
    assert.ok(m);
    assert.equal(wasm.internCount(t), m.size);
    for (const [key, id] of m) {
      assert.equal(wasm.internLen(t, id), key.length);
      assert.equal(Buffer.from(readBytes(wasm, wasm.internBytes(t, id), key.length)).toString('latin1'), key);
    }
    assert.equal(wasm.internBytes(t, m.size), 0);
  });
  assert.ok((maps[0]?.size ?? 0) > 5000);
  tables.forEach((t) => wasm.internFree(t));
  wasm.free(buf);
  // A fresh table after frees starts at 0 again.
  const t = wasm.internTableNew();
  const p = writeBytes(wasm, utf8('model=claude-opus:region=us'));
  assert.equal(wasm.intern(t, p, 27), 0);
  assert.equal(wasm.intern(t, p, 26), 1);
  assert.equal(wasm.intern(t, p, 27), 0);
  assert.equal(wasm.intern(t, p, 0), 2);
  wasm.internFree(t);
  wasm.free(p);
});

test('intern: removed strings free their ids, which later new strings get again; the rest keep theirs (against a Map)', () => {
  const g = new Gen(rng(11));
  const t = wasm.internTableNew();
  const buf = wasm.alloc(256);
  const m = new Map<string, number>();
  const bound = () => wasm.internCount(t);
  let maxLive = 0;
  const put = (key: string): number => {
    const bytes = Buffer.from(key, 'latin1');
    new Uint8Array(wasm.memory.buffer).set(bytes, buf);
    return wasm.intern(t, buf, bytes.length);
  };
  for (let round = 0; round < 40_000; round++) {
    if (m.size > 0 && g.chance(0.45)) {
      // Remove a random live string (many share probe runs: the table stays near 70% load).
      const keys = [...m.keys()];
      const key = keys[g.int(keys.length)]!;
      assert.equal(wasm.internRemove(t, m.get(key)!), 1);
      assert.equal(wasm.internRemove(t, m.get(key)!), 0, 'removing twice does nothing');
      m.delete(key);
      continue;
    }
    const key = `k${g.int(3000)}${g.chance(0.1) ? 'x'.repeat(g.int(40)) : ''}`;
    wasm.internFreshReset(t);
    const id = put(key);
    const had = m.get(key);
    if (had !== undefined) {
      assert.equal(id, had, `${key} keeps its id`);
      assert.equal(wasm.internFreshCount(t), 0);
    } else {
      assert.ok(![...m.values()].includes(id), `${key} got id ${id}, which is in use`);
      assert.equal(wasm.internFreshCount(t), 1);
      assert.equal(new Uint32Array(wasm.memory.buffer, wasm.internFresh(t), 1)[0], id);
      m.set(key, id);
    }
    maxLive = Math.max(maxLive, m.size);
    assert.equal(wasm.internLive(t), m.size);
  }
  // Ids are reused: their bound follows the most strings alive at once, not every string ever interned.
  assert.ok(bound() <= maxLive, `ids below ${bound()}, at most ${maxLive} alive`);
  for (const [key, id] of m) {
    assert.equal(put(key), id);
    assert.equal(Buffer.from(readBytes(wasm, wasm.internBytes(t, id), key.length)).toString('latin1'), key);
  }
  wasm.internFree(t);
  wasm.free(buf);
});

// ─── (e) ISO timestamps ───────────────────────────────────────────────────────

const ISO_RE = /^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(\.\d{1,9})?([Zz]|[+-]\d{2}:?\d{2})?$/;

function refIsoMs(s: string): number {
  const m = ISO_RE.exec(s);
  if (!m) return NaN;
  const [y, mo, d, h, mi, se] = [m[1], m[2], m[3], m[4], m[5], m[6]].map(Number) as [number, number, number, number, number, number];
  const leap = (y % 4 === 0 && y % 100 !== 0) || y % 400 === 0;
  const dim = [31, leap ? 29 : 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31][mo - 1];
  if (dim === undefined || d < 1 || d > dim || h > 23 || mi > 59 || se > 59) return NaN;
  const ms = m[7] ? Number((m[7].slice(1) + '00').slice(0, 3)) : 0;
  let off = 0;
  const z = m[8];
  if (z && z !== 'Z' && z !== 'z') {
    const oh = Number(z.slice(1, 3));
    const om = Number(z.slice(-2));
    if (oh > 23 || om > 59) return NaN;
    off = (z[0] === '-' ? -1 : 1) * (oh * 60 + om);
  }
  const dt = new Date(0);
  dt.setUTCFullYear(y, mo - 1, d);
  dt.setUTCHours(h, mi, se, ms);
  return dt.getTime() - off * 60000;
}

function parseIso(s: string): number {
  const b = utf8(s);
  const p = writeBytes(wasm, b);
  const v = wasm.parseIsoMs(p, b.length);
  wasm.free(p);
  return v;
}

test('parseIsoMs: hand-written cases', () => {
  const cases: Array<[string, number]> = [
    ['2025-01-01T12:34:56Z', Date.UTC(2025, 0, 1, 12, 34, 56)],
    ['2025-01-01T12:34:56.789+02:00', Date.UTC(2025, 0, 1, 10, 34, 56, 789)],
    ['2025-01-01t12:34:56.7899z', Date.UTC(2025, 0, 1, 12, 34, 56, 789)],
    ['2025-01-01 12:34:56.7-0530', Date.UTC(2025, 0, 1, 18, 4, 56, 700)],
    ['2024-02-29T00:00:00', Date.UTC(2024, 1, 29)],
    ['2000-02-29T23:59:59.999999999+23:59', Date.UTC(2000, 1, 29, 23, 59, 59, 999) - (23 * 60 + 59) * 60000],
    ['1970-01-01T00:00:00Z', 0],
    ['1969-12-31T23:59:59.999Z', -1],
    ['0000-01-01T00:00:00Z', -62167219200000],
    ['9999-12-31T23:59:59Z', 253402300799000],
    ['0050-03-01T00:00:00Z', -60584198400000],
    ['2023-02-29T00:00:00Z', NaN],
    ['1900-02-29T00:00:00Z', NaN],
    ['2025-04-31T00:00:00Z', NaN],
    ['2025-13-01T00:00:00Z', NaN],
    ['2025-00-01T00:00:00Z', NaN],
    ['2025-01-00T00:00:00Z', NaN],
    ['2025-01-01T24:00:00Z', NaN],
    ['2025-01-01T00:60:00Z', NaN],
    ['2025-01-01T00:00:60Z', NaN],
    ['2025-01-01T00:00:00.Z', NaN],
    ['2025-01-01T00:00:00.1234567890Z', NaN],
    ['2025-01-01T00:00:00+24:00', NaN],
    ['2025-01-01T00:00:00+00:60', NaN],
    ['2025-01-01T00:00:00+0:00', NaN],
    ['2025-01-01T00:00:00+00:0', NaN],
    ['2025-01-01T00:00:00+00', NaN],
    ['2025-01-01T00:00:00ZZ', NaN],
    ['2025-01-01T00:00:00 ', NaN],
    ['2025-01-01X00:00:00Z', NaN],
    ['2025-1-01T00:00:00Z', NaN],
    ['+2025-01-01T00:00:00Z', NaN],
    ['2025-01-01', NaN],
    ['', NaN],
  ];
  for (const [s, want] of cases) {
    assert.ok(Object.is(parseIso(s), want), `${s}: got ${parseIso(s)}, want ${want}`);
    assert.ok(Object.is(refIsoMs(s), want), `reference ${s}`);
  }
});

test('parseIsoMs agrees with the regex rules on random timestamps', () => {
  const g = new Gen(rng(2025));
  const pad = (n: number, w: number): string => String(n).padStart(w, '0');
  let accepted = 0;
  const N = 20_000;
  for (let i = 0; i < N; i++) {
    const y = g.chance(0.1) ? g.int(10000) : 1900 + g.int(250);
    const mo = g.chance(0.05) ? g.int(14) : 1 + g.int(12);
    const d = g.chance(0.3) ? 28 + g.int(4) : g.chance(0.03) ? g.int(33) : 1 + g.int(28);
    const h = g.chance(0.03) ? 24 + g.int(2) : g.int(24);
    const mi = g.chance(0.03) ? 60 : g.int(60);
    const se = g.chance(0.03) ? 60 : g.int(60);
    let s = `${pad(y, 4)}-${pad(mo, 2)}-${pad(d, 2)}${g.pick(['T', 't', ' ', 'T', 'T'])}${pad(h, 2)}:${pad(mi, 2)}:${pad(se, 2)}`;
    if (g.chance(0.5)) s += '.' + Array.from({ length: g.pick([1, 2, 3, 4, 6, 9, 10]) }, () => g.int(10)).join('');
    const tz = g.int(6);
    if (tz === 1) s += g.pick(['Z', 'z']);
    else if (tz >= 2) {
      const oh = g.chance(0.05) ? 24 : g.int(24);
      const om = g.chance(0.05) ? 60 : g.pick([0, 30, 45, g.int(60)]);
      s += g.pick(['+', '-']) + pad(oh, 2) + (tz === 2 ? '' : ':') + pad(om, 2);
    }
    if (g.chance(0.1)) {
      // Mutate one character.
      const k = g.int(s.length + 1);
      s = s.slice(0, k) + g.pick(['', '0', '9', ':', '-', 'T', 'Z', '+', '.', ' ', 'x', 'ä']) + s.slice(k + (g.chance(0.5) ? 1 : 0));
    }
    const want = refIsoMs(s);
    if (!Number.isNaN(want)) accepted++;
    assert.ok(Object.is(parseIso(s), want), `${s}: got ${parseIso(s)}, want ${want}`);
  }
  assert.ok(accepted > N / 2, `accepted ${accepted}`);
});
