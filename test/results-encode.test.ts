// Results and dead letters as bytes (src/pipeline/results.ts, assembly/dtoa.ts): byte
// for byte what JSON.stringify gives, for numbers from all of the f64 space, any
// strings, and the results the operator produces.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import fc from 'fast-check';
import { WasmCore, Layout } from '../src/core/wasm';
import { KeyRegistry } from '../src/pipeline/keys';
import { ResultBatch, ResultEncoder, deadLetterJson, encodeDeadLetters, resultPrefix } from '../src/pipeline/results';
import { stateKey, type DeadLetter, type WindowResult } from '../src/pipeline/types';
import { WindowOperator } from '../src/pipeline/operator';
import { loadConfig } from '../src/config';
import { batchOfLines } from '../src/sources/lines';
import { readFileSync } from 'node:fs';

const { RES, RES_BYTES, RES_LATE, ENCODE } = Layout;
const root = join(__dirname, '..', '..');

function newCore(): WasmCore {
  return new WasmCore(16, [{ kind: 0, sizeMs: 1000, slideMs: 1000, latenessMs: 0 }]);
}

/** Formats doubles with the core's formatter: one string per number. */
class Formatter {
  private readonly cap = 1 << 16;
  private readonly src: number;
  private readonly out: number;
  private readonly bounds: number;
  constructor(private readonly core: WasmCore) {
    this.src = core.alloc(this.cap * 8);
    this.out = core.alloc(this.cap * ENCODE.NUMBER_MAX + ENCODE.SLACK);
    this.bounds = core.alloc(this.cap * 4);
  }

  /** Calls check(i, text) for every number's text. */
  each(xs: Float64Array, check: (i: number, text: string) => void): void {
    for (let off = 0; off < xs.length; off += this.cap) {
      const n = Math.min(this.cap, xs.length - off);
      this.core.doubles().set(xs.subarray(off, off + n), this.src >>> 3);
      const total = this.core.formatDoubles(this.src, n, this.out, this.bounds);
      const bytes = Buffer.from(this.core.bytes().buffer, this.out, total);
      const ends = this.core.words();
      const b = this.bounds >>> 2;
      let s = 0;
      for (let i = 0; i < n; i++) {
        const e = ends[b + i]!;
        check(off + i, bytes.toString('latin1', s, e));
        s = e;
      }
    }
  }

  /** The first mismatches with JSON.stringify (at most 5), as "value: got / expected". */
  mismatches(xs: Float64Array): string[] {
    const bad: string[] = [];
    this.each(xs, (i, text) => {
      const x = xs[i]!;
      if (bad.length < 5 && text !== JSON.stringify(x)) bad.push(`${x}: ${text} / ${JSON.stringify(x)}`);
    });
    return bad;
  }
}

/** Doubles that the usual algorithms get wrong, and the edges of every printing form. */
function hardDoubles(): number[] {
  const xs = [
    0, -0, 1, -1, 0.1, 0.2, 0.1 + 0.2, 0.3, 812.4, 1 / 3, 2 / 3, 4.35, 1.5, 2.5, 123456.70000000001,
    5e-324, -5e-324, 1e-323, 2.2250738585072014e-308, 2.225073858507201e-308, 2.2250738585072009e-308,
    1.7976931348623157e308, -1.7976931348623157e308, 1.7976931348623155e308,
    NaN, Infinity, -Infinity, 2 ** 53, 2 ** 53 - 1, 2 ** 53 + 2, -(2 ** 53), 2 ** 54, 2 ** 60, 2 ** 63, 2 ** 64, 2 ** 70,
    9007199254740993, 1e15, 1e16, 1e17, 12345678901234567890, 9.5367431640625e-7, 5e-7, 1.5e-7, 123e-20,
    // Known hard cases for shortest printing (Ryu's and double-conversion's tests).
    9.0071992547409920e15, 2.109808898695963e16, 4.940656e-318, 1.18575755e-316, 2.989102097996e-312,
    9.0608011534336e15, 4.708356024711512e18, 9.409340012568248e18, 1.2345678e-7, 1.9430376160308388e16,
    -6.9741824662760956e19, 4.3816050601147837e18, 2.98023223876953125e-8, 1.8531501765868567e21,
    -3.347727380279489e33, 1.9400994884341945e25, 5.684341886080802e-14, 1.7800590868057611e-307,
    2.8480945388892178e-306, 2.446494580089078e-296, 4.8929891601781557e-296, 6.4e-322,
  ];
  // Powers of ten and their neighbours around the form thresholds (1e21, 1e-7) and everywhere.
  for (let e = -325; e <= 309; e++) {
    const p = Number(`1e${e}`);
    xs.push(p, -p, p * 1.5, Number(`9.999999999999999e${e}`), Number(`1.0000000000000002e${e}`));
  }
  const nb = new Float64Array(1), bits = new BigUint64Array(nb.buffer);
  for (const x of [1e21, 1e-6, 1e-7, 2 ** 53, 1e22, 1e23, 5e-324, 2.2250738585072014e-308]) {
    nb[0] = x;
    for (let d = -3n; d <= 3n; d++) {
      const nb2 = new Float64Array(1);
      new BigUint64Array(nb2.buffer)[0] = bits[0]! + d;
      xs.push(nb2[0]!);
    }
  }
  // Integers near 2^53, and every power of two.
  for (let d = -20; d <= 20; d++) xs.push(2 ** 53 + d * 2, 2 ** 53 - d);
  for (let e = -1074; e <= 1023; e++) xs.push(2 ** e);
  return xs;
}

test('numbers: the hard cases and the edges of each form print as JSON.stringify prints them', () => {
  const f = new Formatter(newCore());
  assert.deepEqual(f.mismatches(Float64Array.from(hardDoubles())), []);
});

test('numbers: 10 million random doubles print as String(x)', () => {
  const f = new Formatter(newCore());
  const n = 10_000_000;
  const xs = new Float64Array(n);
  const u = new Uint32Array(xs.buffer);
  // A fixed seed, so that a failure reproduces: xorshift32.
  let s = 0x9e3779b9;
  const next = (): number => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return s >>> 0;
  };
  for (let i = 0; i < n; i++) {
    const kind = i & 3;
    if (kind <= 1) {
      // Any bit pattern: every exponent, subnormals, NaN and infinities included.
      u[2 * i] = next();
      u[2 * i + 1] = next();
    } else if (kind === 2) {
      // Short decimals like measured latencies: k digits after the point.
      const k = next() % 7;
      xs[i] = (next() % 10_000_000) / 10 ** k;
    } else {
      // Sums and ratios of those, as the results hold.
      xs[i] = ((next() % 100_000) / 10 + (next() % 100_000) / 10) / (1 + (next() % 97));
    }
  }
  let bad = 0;
  let first: string | undefined;
  f.each(xs, (i, text) => {
    const x = xs[i]!;
    if (text !== (Number.isFinite(x) ? String(x) : 'null') && bad++ === 0) first = `${x}: got ${text}`;
  });
  assert.equal(first, undefined);
});

test('numbers: every decimal with at most 3 digits after the point up to 1000, and samples up to 10^5 and past, print as String(x)', () => {
  // The short path for m / 1000 below 10^5 (writeMilli8): each length of the integer
  // part, each count of the fraction's zeros at the end, both signs, and the first
  // values past it (10^5 and up take writeDecimal).
  const f = new Formatter(newCore());
  const xs: number[] = [];
  for (let m = 1; m <= 1_000_000; m++) xs.push(m / 1000);
  let s = 12345;
  for (let i = 0; i < 200_000; i++) {
    s = (Math.imul(s, 1103515245) + 12345) >>> 0;
    const m = s % 100_000_000;
    xs.push(m / 1000, -m / 100, m / 10);
  }
  for (const x of [0.001, 0.01, 0.1, 0.5, 9.999, 10.001, 99.99, 100.5, 999.999, 1000.1, 9999.999, 10000.001, 12345.6, 99999.999, 100000.001, 100000.5, 123456.789]) xs.push(x, -x);
  assert.deepEqual(f.mismatches(Float64Array.from(xs)), []);
});

/** The double `steps` representable doubles away from x (negative: towards -Infinity for positive x). */
function neighbour(x: number, steps: number): number {
  const f = new Float64Array([x]);
  const b = new BigInt64Array(f.buffer);
  b[0] = b[0]! + BigInt(steps);
  return f[0]!;
}

/** A double of any sign from its exponent field and a random mantissa: every binade equally, subnormals (e = 0) included. */
const anyBinade = fc
  .tuple(fc.boolean(), fc.integer({ min: 0, max: 2046 }), fc.bigInt({ min: 0n, max: (1n << 52n) - 1n }))
  .map(([neg, e, m]) => {
    const b = new BigUint64Array([(BigInt(neg ? 1 : 0) << 63n) | (BigInt(e) << 52n) | m]);
    return new Float64Array(b.buffer)[0]!;
  });

/** Decimals with few digits, as measurements are (the formatter's short path), and the doubles right next to them. */
const shortDecimal = fc
  .tuple(fc.integer({ min: 0, max: 6 }), fc.oneof(fc.integer({ min: 1, max: 99_999_999 }), fc.double({ min: 1, max: 1e15, noNaN: true }).map(Math.floor)), fc.integer({ min: -2, max: 2 }), fc.boolean())
  .map(([k, m, step, neg]) => neighbour((neg ? -m : m) / 10 ** k, step));

/** Integers past 2^53 (every one a multiple of a power of two) up to past 1e21, where the exponent form starts. */
const bigInteger = fc.tuple(fc.integer({ min: 53, max: 80 }), fc.bigInt({ min: 0n, max: (1n << 53n) - 1n })).map(([e, m]) => Number((1n << BigInt(e)) + (m << BigInt(e - 53))));

test('numbers: random doubles of every kind print as String(x), and -0, NaN and infinities as JSON.stringify', () => {
  const f = new Formatter(newCore());
  const kinds = fc.oneof(
    anyBinade,
    shortDecimal,
    bigInteger,
    fc.double(), // fast-check's own mix: -0, NaN, ±Infinity, the extremes, subnormals
    fc.integer({ min: -(2 ** 31), max: 2 ** 31 }),
    // Powers of two (their interval is narrower below) and their neighbours.
    fc.tuple(fc.integer({ min: -1074, max: 1023 }), fc.integer({ min: -1, max: 1 })).map(([e, d]) => neighbour(2 ** e, d)),
  );
  fc.assert(
    fc.property(fc.array(kinds, { minLength: 1000, maxLength: 1000 }), (xs) => {
      const bad = f.mismatches(Float64Array.from(xs));
      assert.deepEqual(bad, []);
    }),
    { numRuns: 300 },
  );
});

// ─── Results ────────────────────────────────────────────────────────────────

/** A string with anything JSON.stringify escapes: quotes, backslashes, control characters, lone surrogates. */
const nastyString = fc.oneof(
  fc.string({ unit: 'binary', maxLength: 12 }),
  fc.string({ unit: fc.constantFrom('"', '\\', '\n', '\u0000', '\u001f', '\u007f', '\u2028', '\ud800', '\udfff', '\ud83d\ude00', 'é', 'a', ':', '=', '0'), maxLength: 8 }),
  fc.constantFrom('', '0', '12', 'gpt-4o', '__proto__', 'toString'),
);

const anyDouble = fc.oneof(
  fc.double(),
  fc.integer({ min: -(2 ** 53), max: 2 ** 53 }),
  fc.constantFrom(0, -0, NaN, Infinity, -Infinity, 812.4, 0.1 + 0.2, 1e21, 1e-7, 5e-324, 1.7976931348623157e308, 2 ** 53 + 2),
  fc.integer({ min: 0, max: 10_000_000 }).map((v) => v / 10),
);

interface Fired {
  agg: number;
  values: string[];
  flags: number;
  nums: number[]; // start, end, count, sum, avg, min, max, p50, p95, p99, stddev
}

const firedArb = (aggs: number) =>
  fc.record({
    agg: fc.integer({ min: 0, max: aggs - 1 }),
    values: fc.array(nastyString, { minLength: 3, maxLength: 3 }),
    flags: fc.constantFrom(0, RES_LATE),
    nums: fc.array(anyDouble, { minLength: 11, maxLength: 11 }),
  });

const NUM_FIELDS = [RES.START, RES.END, RES.COUNT, RES.SUM, RES.AVG, RES.MIN, RES.MAX, RES.P50, RES.P95, RES.P99, RES.STDDEV];

/** Writes result records as the core writes them; returns the region. */
function writeRecords(core: WasmCore, regs: KeyRegistry[], fired: readonly Fired[]): { count: number; base: number } {
  const base = core.alloc(Math.max(1, fired.length) * RES_BYTES);
  const ids = fired.map((f) => regs[f.agg]!.idOf(f.values.slice(0, regs[f.agg]!.fields.length)));
  const u32 = core.words(), f64 = core.doubles();
  fired.forEach((f, k) => {
    const w = (base >>> 2) + k * (RES_BYTES / 4), d = (base >>> 3) + k * (RES_BYTES / 8);
    u32[w + RES.AGG / 4] = f.agg;
    u32[w + RES.KEY / 4] = ids[k]!;
    u32[w + RES.FLAGS / 4] = f.flags;
    u32[w + RES.SID / 4] = 0;
    NUM_FIELDS.forEach((off, j) => (f64[d + off / 8] = f.nums[j]!));
  });
  return { count: fired.length, base };
}

/** What the operator builds today for a record. */
function expected(names: readonly string[], regs: KeyRegistry[], f: Fired, emittedAt: number): WindowResult {
  const reg = regs[f.agg]!;
  const id = reg.idOf(f.values.slice(0, reg.fields.length));
  const [start, end, count, sum, avg, min, max, p50, p95, p99, stddev] = f.nums as [number, number, number, number, number, number, number, number, number, number, number];
  return {
    name: names[f.agg]!,
    key: reg.keys[id]!,
    group: reg.groupOf(id),
    window: { start, end },
    results: { count, sum, avg, min, max, p50, p95, p99, stddev },
    late: (f.flags & RES_LATE) !== 0,
    emittedAt,
  };
}

test('results: every line is JSON.stringify of the same WindowResult, for any names, group values and numbers', () => {
  const core = newCore();
  fc.assert(
    fc.property(
      fc.array(nastyString, { minLength: 1, maxLength: 3 }),
      // Group-by paths: field names may repeat or look like array indices ("0"), which reorders an object's keys.
      fc.array(fc.array(fc.constantFrom('data.model', 'region', 'x.0', '12', 'a.b.model', 'k\u0000"', '\ud800'), { maxLength: 3 }), { minLength: 3, maxLength: 3 }),
      fc.array(firedArb(3), { maxLength: 40 }),
      anyDouble,
      fc.boolean(),
      (names3, groupBys, firedRaw, emittedAt, oneWindow) => {
        const names = [0, 1, 2].map((i) => names3[i % names3.length]! + (i >= names3.length ? String(i) : ''));
        const regs = groupBys.map((g) => new KeyRegistry(g));
        const enc = new ResultEncoder(core, names, regs);
        // One firing of a tumbling window: every record has the same bounds (the encoder reuses their text).
        const fired = oneWindow ? firedRaw.map((f) => ({ ...f, nums: [firedRaw[0]!.nums[0]!, firedRaw[0]!.nums[1]!, ...f.nums.slice(2)] })) : firedRaw;
        const batch = enc.encode(writeRecords(core, regs, fired), emittedAt);
        assert.equal(batch.n, fired.length);
        const want = fired.map((f) => expected(names, regs, f, emittedAt));
        assert.equal(batch.json.toString('utf8'), want.map((r) => JSON.stringify(r) + '\n').join(''));
        want.forEach((r, i) => {
          assert.ok(batch.lineOf(i).equals(Buffer.from(JSON.stringify(r))));
          assert.equal(batch.textOf(i), JSON.stringify(r));
          assert.equal(batch.stateKeyOf(i), stateKey(r.name, r.key, r.window.start, r.window.end));
          assert.equal(batch.nameOf(i), r.name);
          assert.equal(batch.aggregationOf(i), fired[i]!.agg);
          assert.deepEqual(batch.windowOf(i), r.window);
          assert.equal(batch.isLate(i), r.late);
          assert.equal(JSON.stringify(batch.toObject(i)), JSON.stringify(r));
          assert.deepEqual(batch.toObject(i), r);
        });
      },
    ),
    { numRuns: 300 },
  );
});

test('results: keys from one byte to tens of kilobytes, alone and mixed in batches of 1,024, encode as JSON.stringify', () => {
  const core = newCore();
  const names = ['sessions', 'per_model'];
  const regs = [new KeyRegistry(['user']), new KeyRegistry(['model', 'region'])];
  const enc = new ResultEncoder(core, names, regs);
  const r = (() => {
    let x = 7;
    return (): number => ((x = (x * 1103515245 + 12345) >>> 0) / 2 ** 32);
  })();
  // Around where the encoder stops reserving for n of the longest prefix (512 bytes) and sums them instead.
  const lengths = [1, 12, 200, 300, 450, 480, 490, 500, 511, 512, 513, 520, 700, 2_000, 30_000];
  const fire = (len: number, i: number): Fired => {
    const agg = i % 2;
    const v = (c: string): string => c.repeat(len) + String(i);
    return { agg, values: agg === 0 ? [v('u')] : [v('m'), v('é')], flags: i % 7 === 0 ? RES_LATE : 0, nums: [1_767_225_600_000 + i, 1_767_225_660_000 + i, 3, 812.4 + i, 270.8, 12.5, 799.9, 256.5, 768.5, 792.5, 363.01] };
  };
  const check = (fired: Fired[]): void => {
    const batch = enc.encode(writeRecords(core, regs, fired), 1_767_225_700_000);
    const want = fired.map((f) => JSON.stringify(expected(names, regs, f, 1_767_225_700_000)) + '\n').join('');
    assert.equal(batch.json.toString('utf8'), want);
    batch.release();
  };
  // Short keys only, then keys up to just below the limit, 1,024 of each length in a batch.
  for (const len of lengths.filter((l) => l <= 500)) check(Array.from({ length: 1024 }, (_, i) => fire(len, i)));
  // Every length mixed, in random order, batch after batch (the longest seen is kilobytes from the first).
  for (let b = 0; b < 4; b++) check(Array.from({ length: 1024 }, (_, i) => fire(lengths[Math.floor(r() * lengths.length)]!, i + b * 1024)));
  // Then short keys again: the reservation stays large enough.
  check(Array.from({ length: 1024 }, (_, i) => fire(12, i)));
});

test('results: slice and concat keep every line, its bounds and its record', () => {
  const core = newCore();
  fc.assert(
    fc.property(fc.array(firedArb(1), { minLength: 1, maxLength: 30 }), fc.integer({ min: 0, max: 30 }), fc.integer({ min: 0, max: 30 }), (fired, a, b) => {
      const regs = [new KeyRegistry(['m', 'r'])];
      const enc = new ResultEncoder(core, ['agg'], regs);
      const batch = enc.encode(writeRecords(core, regs, fired), 7);
      const [from, to] = a <= b ? [a, b] : [b, a];
      const part = batch.slice(from, to);
      const lo = Math.min(from, batch.n), hi = Math.min(to, batch.n);
      assert.equal(part.n, hi - lo);
      assert.equal(part.json.toString(), Array.from({ length: hi - lo }, (_, i) => batch.textOf(lo + i) + '\n').join(''));
      for (let i = 0; i < part.n; i++) {
        assert.equal(part.textOf(i), batch.textOf(lo + i));
        assert.deepEqual(part.toObject(i), batch.toObject(lo + i));
        assert.equal(part.stateKeyOf(i), batch.stateKeyOf(lo + i));
      }
      // Dropping one record (a sink refused it) and joining the rest.
      const drop = from % batch.n;
      const rest = ResultBatch.concat([batch.slice(0, drop), batch.slice(drop + 1)]);
      assert.equal(rest.n, batch.n - 1);
      for (let i = 0; i < rest.n; i++) {
        const j = i < drop ? i : i + 1;
        assert.ok(rest.lineOf(i).equals(batch.lineOf(j)));
        assert.deepEqual(rest.toObject(i), batch.toObject(j));
      }
      assert.ok(ResultBatch.concat([batch.slice(0, from), batch.slice(from)]).json.equals(batch.json));
    }),
    { numRuns: 200 },
  );
});

test('results: a batch keeps its bytes until its last holder releases it; released memory goes to later batches', () => {
  const core = newCore();
  fc.assert(
    fc.property(
      // Per step: the records, how many holders it gets besides its maker, and when each lets go (steps later).
      fc.array(fc.record({ fired: fc.array(firedArb(1), { minLength: 1, maxLength: 12 }), holds: fc.array(fc.integer({ min: 0, max: 6 }), { maxLength: 2 }) }), { minLength: 1, maxLength: 40 }),
      (steps) => {
        const regs = [new KeyRegistry(['m', 'r'])];
        // Slabs of 4 KiB: a few steps each, so that memory goes round many times.
        const enc = new ResultEncoder(core, ['agg'], regs, 4096);
        const live: Array<{ batch: ResultBatch; text: Buffer; releases: number[] }> = [];
        const seen = new Set<ArrayBufferLike>();
        let reused = false, freed = false;
        steps.forEach((step, t) => {
          const batch = enc.encode(writeRecords(core, regs, step.fired), t);
          if (seen.has(batch.json.buffer) && freed) reused = true;
          seen.add(batch.json.buffer);
          for (let h = 0; h < step.holds.length; h++) batch.retain();
          // The maker lets go now; each other holder that many steps later.
          live.push({ batch, text: Buffer.from(batch.json), releases: [t, ...step.holds.map((d) => t + d)] });
          for (const l of live) {
            // Every batch not yet released by all its holders still reads as it was written.
            assert.ok(l.batch.json.equals(l.text), `step ${t}: a held batch changed`);
            for (let k = l.releases.length - 1; k >= 0; k--)
              if (l.releases[k]! <= t) {
                l.batch.release();
                l.releases.splice(k, 1);
                freed = true;
              }
          }
          for (let k = live.length - 1; k >= 0; k--) if (live[k]!.releases.length === 0) live.splice(k, 1);
        });
        // With every batch released at once, a run of steps goes round the same slabs.
        if (steps.length === 40 && steps.every((s) => s.holds.length === 0)) assert.ok(reused, 'released slabs were not reused');
      },
    ),
    { numRuns: 300 },
  );
  // Released at once, batches go round the same few slabs; held, they never share one with a later batch's bytes.
  const regs = [new KeyRegistry(['m', 'r'])];
  const enc = new ResultEncoder(core, ['agg'], regs, 4096);
  const rec: Fired = { agg: 0, values: ['a', 'b', 'c'], flags: 0, nums: [0, 10, 1, 812.4, 812.4, 812.4, 812.4, 812.4, 812.4, 812.4, 0] };
  const buffers = new Set<ArrayBufferLike>();
  for (let t = 0; t < 200; t++) {
    const b = enc.encode(writeRecords(core, regs, [rec, rec, rec]), t);
    buffers.add(b.json.buffer);
    b.release();
  }
  assert.ok(buffers.size <= 2, `${buffers.size} slabs for batches released at once`);
  // Released 30 steps later (after their slab was full): the slabs those 30 fill, and a few more.
  buffers.clear();
  const pending: ResultBatch[] = [];
  for (let t = 0; t < 300; t++) {
    const b = enc.encode(writeRecords(core, regs, [rec, rec, rec]), t);
    buffers.add(b.json.buffer);
    pending.push(b);
    if (pending.length > 30) pending.shift()!.release();
  }
  assert.ok(buffers.size <= 16, `${buffers.size} slabs for batches released 30 steps later`);
  const kept = Array.from({ length: 200 }, (_, t) => enc.encode(writeRecords(core, regs, [rec, rec, rec]), t));
  kept.forEach((b, t) => assert.equal(b.textOf(2), JSON.stringify(expected(['agg'], regs, rec, t))));
});

test('results: a key id the registry releases and gives to another key is encoded with the new key; its old prefix goes', () => {
  const core = newCore();
  const reg = new KeyRegistry(['data.model']);
  const enc = new ResultEncoder(core, ['lat'], [reg]);
  const rec = (values: string[]): Fired => ({ agg: 0, values, flags: 0, nums: [0, 10, 1, 812.4, 812.4, 812.4, 812.4, 812.4, 812.4, 812.4, 0] });
  const first = enc.encode(writeRecords(core, [reg], [rec(['a']), rec(['x'])]), 1);
  assert.match(first.textOf(0), /"key":"model=a","group":\{"model":"a"\}/);
  const before = enc.memoryBytes();
  reg.release(reg.idOf(['a']));
  assert.ok(enc.memoryBytes() < before);
  // The registry hands the free id 0 to the next new key.
  assert.equal(reg.idOf(['b']), 0);
  const second = enc.encode(writeRecords(core, [reg], [rec(['b']), rec(['x'])]), 1);
  assert.match(second.textOf(0), /"key":"model=b","group":\{"model":"b"\}/);
  assert.match(second.textOf(1), /"key":"model=x","group":\{"model":"x"\}/);
  // The batch encoded before keeps its own key.
  assert.equal(first.keyOf(0), 'model=a');
  assert.equal(first.stateKeyOf(0), 'lat:model=a:0_10');
  assert.match(first.textOf(0), /"key":"model=a"/);
});

test('results: the prefix escapes like JSON.stringify, lone surrogates included', () => {
  const group = { model: 'a"\\\n\u0001\ud800x\udc00', '0': 'first' };
  const p = resultPrefix('n\u2028', 'k\udfff', group);
  assert.equal(p + '0}}', JSON.stringify({ name: 'n\u2028', key: 'k\udfff', group, window: { start: 0 } }));
});

test("results: the operator's results over examples/events.jsonl, encoded, are JSON.stringify of the results it returns", () => {
  const cfg = loadConfig(join(root, 'examples', 'weir.yaml'));
  const lines = readFileSync(join(root, 'examples', 'events.jsonl'), 'utf8').split('\n').filter((l) => l.length > 0);
  for (const batchSize of [97, 1024]) {
    let now = 1_767_225_600_000;
    const op = new WindowOperator({ ...cfg, processing: { ...cfg.processing, batchSize } }, { clock: () => now });
    // The encoder reads the core's result region before the operator clears it.
    const core = (op as unknown as { core: WasmCore }).core;
    const enc = new ResultEncoder(core, cfg.aggregations.map((a) => a.name), op.registries);
    const batches: ResultBatch[] = [];
    const reset = core.resetOutput.bind(core);
    core.resetOutput = () => {
      batches.push(enc.encode(core.results(), now));
      reset();
    };
    const results: WindowResult[] = [];
    for (let i = 0; i < lines.length; i += batchSize) {
      now += 1.5; // not an integer: emittedAt takes the formatter's general path too
      results.push(...op.process(batchOfLines(lines.slice(i, i + batchSize), 0, i)).results.toObjects());
    }
    now += 1000;
    results.push(...op.finish().results.toObjects());
    const all = ResultBatch.concat(batches);
    assert.ok(results.length > 100, `${results.length} results`);
    assert.equal(all.n, results.length);
    assert.equal(all.json.toString('utf8'), results.map((r) => JSON.stringify(r) + '\n').join(''));
    results.forEach((r, i) => {
      assert.deepEqual(all.toObject(i), r);
      assert.equal(all.stateKeyOf(i), stateKey(r.name, r.key, r.window.start, r.window.end));
    });
  }
});

// ─── Dead letters ───────────────────────────────────────────────────────────

test('dead letters: each line is JSON.stringify of the record, whatever original_event holds', () => {
  const dl = fc.record(
    {
      original_event: fc.oneof(fc.string({ unit: 'binary', maxLength: 60 }), nastyString),
      reason: fc.constantFrom('malformed', 'invalid', 'late', 'undeliverable'),
      error: nastyString,
      aggregation: nastyString,
      retry_count: fc.nat(10),
      timestamp: fc.constant('2026-01-01T00:00:00.000Z'),
      processor_instance: nastyString,
      partition: fc.integer({ min: -1, max: 100 }),
      offset: fc.oneof(fc.constant(''), fc.nat().map(String)),
      sink: nastyString,
    },
    { requiredKeys: ['original_event', 'reason', 'error', 'retry_count', 'timestamp', 'processor_instance', 'partition', 'offset'] },
  ) as fc.Arbitrary<DeadLetter>;
  fc.assert(
    fc.property(fc.array(dl, { maxLength: 20 }), (records) => {
      const enc = encodeDeadLetters(records);
      assert.equal(enc.json.toString('utf8'), records.map((d) => JSON.stringify(d) + '\n').join(''));
      records.forEach((d, i) => {
        assert.equal(deadLetterJson(d), JSON.stringify(d));
        assert.ok(enc.json.subarray(enc.lineStarts[i], enc.lineEnds[i]).equals(Buffer.from(JSON.stringify(d))));
      });
    }),
    { numRuns: 300 },
  );
});

test("dead letters: the operator's over examples/events.jsonl encode as JSON.stringify", () => {
  const cfg = loadConfig(join(root, 'examples', 'weir.yaml'));
  const lines = readFileSync(join(root, 'examples', 'events.jsonl'), 'utf8').split('\n');
  const op = new WindowOperator(cfg, { clock: () => 1_767_225_600_000 });
  const out = op.process(batchOfLines(lines.slice(0, cfg.processing.batchSize), 0, 0));
  assert.ok(out.deadLetters.length > 0);
  const enc = encodeDeadLetters(out.deadLetters);
  assert.equal(enc.json.toString('utf8'), out.deadLetters.map((d) => JSON.stringify(d) + '\n').join(''));
});
