// Doubles as JSON text, exactly as JavaScript prints them, and whole result lines.
//
// `writeNumber` gives the bytes of `JSON.stringify(x)` for any double: ECMAScript's
// Number::toString (https://tc39.es/ecma262/#sec-numeric-types-number-tostring) with
// the shortest digits that read back as x, the closest of them to x (ties to an even
// last digit), as V8 prints them; NaN and ±Infinity as `null`, -0 as `0`. The digits
// come from Ryu (Ulf Adams, "Ryū: fast float-to-string conversion", PLDI 2018),
// reference https://github.com/ulfjack/ryu/blob/master/ryu/d2s.c, with its 128-bit
// products built from 32-bit halves (WebAssembly has no 64×64→128 multiply).
// AssemblyScript's own f64.toString is Grisu2, which is not always shortest.
//
// Every writer stores whole 8- or 16-byte words and may write up to ENCODE_SLACK bytes
// past the end it returns: output regions carry that much spare room.
import { POW5, POW5_INV, DIGIT_PAIRS } from './dtoa-tables';
import {
  RES_FLAGS, RES_START, RES_END, RES_COUNT, RES_SUM, RES_MIN, RES_MAX, RES_AVG, RES_STDDEV,
  RES_P50, RES_P95, RES_P99, RES_BYTES, RES_LATE,
} from './layout';
import { ldf, ldu, stu, stb } from './mem';

/** Bytes an output region needs past its last line (whole-word stores). */
export const ENCODE_SLACK: usize = 64;
/** Most bytes `writeNumber` returns: `-1.2345678901234567e-308`. */
export const NUMBER_MAX: usize = 24;

/** 10^i as u64, i in [0, 20). */
const POW10: usize = memory.data<u64>([
  1, 10, 100, 1000, 10000, 100000, 1000000, 10000000, 100000000, 1000000000, 10000000000,
  100000000000, 1000000000000, 10000000000000, 100000000000000, 1000000000000000,
  10000000000000000, 100000000000000000, 1000000000000000000, 10000000000000000000,
]);

const MANTISSA_BITS: u32 = 52;
const BIAS: i32 = 1023;
const POW5_BITS: i32 = 125; // the width of the POW5 and POW5_INV entries

// ─── Small integer helpers (Ryu's d2s_intrinsics.h) ──────────────────────────

// @ts-ignore: decorator
@inline function pow5bits(e: i32): i32 { return ((e * 1217359) >>> 19) + 1; } // bit length of 5^e, e in [0, 3528]
// @ts-ignore: decorator
@inline function log10Pow2(e: i32): i32 { return (e * 78913) >>> 18; } // floor(log10(2^e)), e in [0, 1650]
// @ts-ignore: decorator
@inline function log10Pow5(e: i32): i32 { return (e * 732923) >>> 20; } // floor(log10(5^e)), e in [0, 2620]

function pow5Factor(v: u64): u32 {
  let n: u32 = 0;
  while (true) {
    const q = v / 5;
    if (v - q * 5 != 0) return n;
    v = q;
    n++;
  }
  return n;
}
// @ts-ignore: decorator
@inline function multipleOfPow5(v: u64, p: u32): bool { return pow5Factor(v) >= p; }
// @ts-ignore: decorator
@inline function multipleOfPow2(v: u64, p: u32): bool { return (v & ((<u64>1 << p) - 1)) == 0; }

/** High word of the last umul128. */
let mulHi: u64 = 0;

/** The low 64 bits of a × b; the high 64 in mulHi. */
// @ts-ignore: decorator
@inline function umul128(a: u64, b: u64): u64 {
  const aLo = a & 0xffffffff, aHi = a >> 32, bLo = b & 0xffffffff, bHi = b >> 32;
  const b00 = aLo * bLo, b01 = aLo * bHi, b10 = aHi * bLo, b11 = aHi * bHi;
  const mid1 = b10 + (b00 >> 32);
  const mid2 = b01 + (mid1 & 0xffffffff);
  mulHi = b11 + (mid1 >> 32) + (mid2 >> 32);
  return (mid2 << 32) | (b00 & 0xffffffff);
}

// @ts-ignore: decorator
@inline function shr128(lo: u64, hi: u64, dist: u32): u64 { return (hi << (64 - dist)) | (lo >> dist); } // 0 < dist < 64

let vpOut: u64 = 0;
let vmOut: u64 = 0;

/** (4m·mul) >> j, with (4m+2)·mul >> j in vpOut and (4m-1-mmShift)·mul >> j in vmOut; mul is the 128-bit entry at `mul`. */
function mulShiftAll(m: u64, mul: usize, j: i32, mmShift: u32): u64 {
  const mul0 = load<u64>(mul), mul1 = load<u64>(mul, 8);
  m <<= 1;
  const lo = umul128(m, mul0);
  const tmp = mulHi;
  const mid = tmp + umul128(m, mul1);
  const hi = mulHi + <u64>(mid < tmp);

  const lo2 = lo + mul0;
  const mid2 = mid + mul1 + <u64>(lo2 < lo);
  const hi2 = hi + <u64>(mid2 < mid);
  vpOut = shr128(mid2, hi2, <u32>(j - 64 - 1));
  if (mmShift == 1) {
    const lo3 = lo - mul0;
    const mid3 = mid - mul1 - <u64>(lo3 > lo);
    const hi3 = hi - <u64>(mid3 > mid);
    vmOut = shr128(mid3, hi3, <u32>(j - 64 - 1));
  } else {
    const lo3 = lo + lo;
    const mid3 = mid + mid + <u64>(lo3 < lo);
    const hi3 = hi + hi + <u64>(mid3 < mid);
    const lo4 = lo3 - mul0;
    const mid4 = mid3 - mul1 - <u64>(lo4 > lo3);
    const hi4 = hi3 - <u64>(mid4 > mid3);
    vmOut = shr128(mid4, hi4, <u32>(j - 64));
  }
  return shr128(mid, hi, <u32>(j - 64 - 1));
}

/** Digits of v (1 for 0): from its bit length, then one comparison. */
// @ts-ignore: decorator
@inline function decimalLength17(v: u64): u32 {
  const t = (<u32>(64 - clz(v | 1)) * 1233) >> 12; // floor(log10(2^bits)), one less or exact
  return t + 1 - <u32>((v | 1) < load<u64>(POW10 + (<usize>t << 3)));
}

/** Decimal exponent of the last d2d: the value is its result × 10^d2dExp. */
let d2dExp: i32 = 0;

/** Ryu's d2d: the shortest, closest decimal digits of a positive finite double. */
function d2d(ieeeMantissa: u64, ieeeExponent: u32): u64 {
  let e2: i32;
  let m2: u64;
  if (ieeeExponent == 0) {
    // 2 less, so that the bounds below have 2 more bits.
    e2 = 1 - BIAS - <i32>MANTISSA_BITS - 2;
    m2 = ieeeMantissa;
  } else {
    e2 = <i32>ieeeExponent - BIAS - <i32>MANTISSA_BITS - 2;
    m2 = (<u64>1 << MANTISSA_BITS) | ieeeMantissa;
  }
  const acceptBounds = (m2 & 1) == 0; // round-half-even reading: an even mantissa owns its interval's ends
  const mv = m2 << 2;
  const mmShift: u32 = ieeeMantissa != 0 || ieeeExponent <= 1 ? 1 : 0;

  let vr: u64, vp: u64, vm: u64;
  let e10: i32;
  let vmIsTrailingZeros = false;
  let vrIsTrailingZeros = false;
  if (e2 >= 0) {
    const q = log10Pow2(e2) - <i32>(e2 > 3);
    e10 = q;
    const k = POW5_BITS + pow5bits(q) - 1;
    const i = -e2 + q + k;
    vr = mulShiftAll(m2, POW5_INV + (<usize>q << 4), i, mmShift);
    vp = vpOut;
    vm = vmOut;
    if (q <= 21) {
      // At most one of mp, mv and mm is a multiple of 5.
      if (mv % 5 == 0) {
        vrIsTrailingZeros = multipleOfPow5(mv, q);
      } else if (acceptBounds) {
        vmIsTrailingZeros = multipleOfPow5(mv - 1 - mmShift, q);
      } else {
        vp -= <u64>multipleOfPow5(mv + 2, q);
      }
    }
  } else {
    const q = log10Pow5(-e2) - <i32>(-e2 > 1);
    e10 = q + e2;
    const i = -e2 - q;
    const k = pow5bits(i) - POW5_BITS;
    const j = q - k;
    vr = mulShiftAll(m2, POW5 + (<usize>i << 4), j, mmShift);
    vp = vpOut;
    vm = vmOut;
    if (q <= 1) {
      // mv = 4·m2 has at least two trailing zero bits.
      vrIsTrailingZeros = true;
      if (acceptBounds) {
        vmIsTrailingZeros = mmShift == 1; // mm = mv - 1 - mmShift
      } else {
        --vp; // mp = mv + 2
      }
    } else if (q < 63) {
      vrIsTrailingZeros = multipleOfPow2(mv, q);
    }
  }

  let removed: i32 = 0;
  let output: u64;
  if (vmIsTrailingZeros || vrIsTrailingZeros) {
    // The rare general case: the exact value may end in zeros (an exact tie).
    let lastRemovedDigit: u32 = 0;
    while (true) {
      const vpDiv10 = vp / 10, vmDiv10 = vm / 10;
      if (vpDiv10 <= vmDiv10) break;
      const vmMod10 = <u32>(vm - vmDiv10 * 10);
      const vrDiv10 = vr / 10;
      const vrMod10 = <u32>(vr - vrDiv10 * 10);
      vmIsTrailingZeros &= vmMod10 == 0;
      vrIsTrailingZeros &= lastRemovedDigit == 0;
      lastRemovedDigit = vrMod10;
      vr = vrDiv10;
      vp = vpDiv10;
      vm = vmDiv10;
      ++removed;
    }
    if (vmIsTrailingZeros) {
      while (true) {
        const vmDiv10 = vm / 10;
        const vmMod10 = <u32>(vm - vmDiv10 * 10);
        if (vmMod10 != 0) break;
        const vpDiv10 = vp / 10, vrDiv10 = vr / 10;
        const vrMod10 = <u32>(vr - vrDiv10 * 10);
        vrIsTrailingZeros &= lastRemovedDigit == 0;
        lastRemovedDigit = vrMod10;
        vr = vrDiv10;
        vp = vpDiv10;
        vm = vmDiv10;
        ++removed;
      }
    }
    if (vrIsTrailingZeros && lastRemovedDigit == 5 && (vr & 1) == 0) {
      lastRemovedDigit = 4; // exactly halfway: round to even
    }
    output = vr + <u64>((vr == vm && (!acceptBounds || !vmIsTrailingZeros)) || lastRemovedDigit >= 5);
  } else {
    output = removeDigits(vr, vp, vm);
    removed = removedOut;
  }
  d2dExp = e10 + removed;
  return output;
}

let removedOut: i32 = 0;

/**
 * The common case of d2d (no exact tie possible): drops the most trailing digits
 * that keep vp and vm apart and rounds vr half up at the last digit dropped; the
 * count in removedOut. The loop test floor(vp/10^r) > floor(vm/10^r) only turns
 * false as r grows, so steps of 8, 4, 2, 1 digits find the same r as one digit at
 * a time, in fewer steps for short results (812.4 drops 14 digits). Divisions are by
 * constants, which V8 compiles to multiplications (faster here than dividing by a
 * power of ten from a table, or by hand-written multiply-high).
 */
function removeDigits(vr: u64, vp: u64, vm: u64): u64 {
  let removed: i32 = 0;
  let roundUp = false;
  // vp < 2^64 has at most 20 digits: two steps of 8 cover it.
  for (let s = 0; s < 2; s++) {
    const vpD = vp / 100000000, vmD = vm / 100000000;
    if (vpD <= vmD) break;
    const vrD = vr / 100000000;
    roundUp = vr - vrD * 100000000 >= 50000000;
    vr = vrD;
    vp = vpD;
    vm = vmD;
    removed += 8;
  }
  if (vp <= 0xffffffff) {
    // 32-bit from here on: cheaper divisions.
    let r = <u32>vr, p = <u32>vp, m = <u32>vm;
    {
      const pD = p / 10000, mD = m / 10000;
      if (pD > mD) {
        const rD = r / 10000;
        roundUp = r - rD * 10000 >= 5000;
        r = rD;
        p = pD;
        m = mD;
        removed += 4;
      }
    }
    {
      const pD = p / 100, mD = m / 100;
      if (pD > mD) {
        const rD = r / 100;
        roundUp = r - rD * 100 >= 50;
        r = rD;
        p = pD;
        m = mD;
        removed += 2;
      }
    }
    {
      const pD = p / 10, mD = m / 10;
      if (pD > mD) {
        const rD = r / 10;
        roundUp = r - rD * 10 >= 5;
        r = rD;
        m = mD;
        removed += 1;
      }
    }
    removedOut = removed;
    return <u64>r + <u64>(r == m || roundUp);
  }
  {
    const vpD = vp / 10000, vmD = vm / 10000;
    if (vpD > vmD) {
      const vrD = vr / 10000;
      roundUp = vr - vrD * 10000 >= 5000;
      vr = vrD;
      vp = vpD;
      vm = vmD;
      removed += 4;
    }
  }
  {
    const vpD = vp / 100, vmD = vm / 100;
    if (vpD > vmD) {
      const vrD = vr / 100;
      roundUp = vr - vrD * 100 >= 50;
      vr = vrD;
      vp = vpD;
      vm = vmD;
      removed += 2;
    }
  }
  {
    const vpD = vp / 10, vmD = vm / 10;
    if (vpD > vmD) {
      const vrD = vr / 10;
      roundUp = vr - vrD * 10 >= 5;
      vr = vrD;
      vm = vmD;
      removed += 1;
    }
  }
  removedOut = removed;
  return vr + <u64>(vr == vm || roundUp);
}

// ─── Printing ────────────────────────────────────────────────────────────────

// @ts-ignore: decorator
@inline function pair(v: u32): u16 { return load<u16>(DIGIT_PAIRS + (<usize>v << 1)); }

/** The 8 digits of v < 10^8 (leading zeros kept) at p. */
// @ts-ignore: decorator
@inline function write8(p: usize, v: u32): void {
  const hi = v / 10000, lo = v - hi * 10000;
  const a = hi / 100, c = lo / 100;
  store<u16>(p, pair(a));
  store<u16>(p, pair(hi - a * 100), 2);
  store<u16>(p, pair(c), 4);
  store<u16>(p, pair(lo - c * 100), 6);
}

/** The `len` decimal digits of v at [p, p + len). */
function writeDigits(p: usize, v: u64, len: u32): void {
  let end = p + len;
  while (v > 0xffffffff) {
    const q = v / 100000000;
    write8(end - 8, <u32>(v - q * 100000000));
    v = q;
    end -= 8;
  }
  let r = <u32>v;
  if (r >= 100000000) {
    const q = r / 100000000;
    write8(end - 8, r - q * 100000000);
    r = q;
    end -= 8;
  }
  while (r >= 100) {
    const q = r / 100;
    end -= 2;
    store<u16>(end, pair(r - q * 100));
    r = q;
  }
  if (r >= 10) store<u16>(end - 2, pair(r));
  else store<u8>(end - 1, <u8>(48 + r));
}

const ZEROS: u64 = 0x3030303030303030; // "00000000"

/**
 * JSON.stringify(x) at p: ECMAScript Number::toString for finite x (-0 as `0`), `null`
 * otherwise. Returns the end. Writes at most NUMBER_MAX bytes plus slack.
 */
export function writeNumber(p: usize, x: f64): usize {
  const bits = reinterpret<u64>(x);
  const ieeeExponent = <u32>(bits >> MANTISSA_BITS) & 0x7ff;
  if (ieeeExponent == 0x7ff) {
    store<u32>(p, 0x6c6c756e); // "null"
    return p + 4;
  }
  let a = x;
  if (<i64>bits < 0) {
    if (bits << 1 == 0) {
      stb(p, 48); // -0
      return p + 1;
    }
    stb(p, 45); // '-'
    p++;
    a = -x;
  }
  // Integers below 2^53: every digit is significant, no exponent form.
  if (a < 9007199254740992.0) {
    const t = <u64>a;
    if (<f64>t == a) {
      const len = decimalLength17(t);
      writeDigits(p, t, len);
      return p + len;
    }
  }
  const out = d2d(bits & ((<u64>1 << MANTISSA_BITS) - 1), ieeeExponent);
  const k = <i32>decimalLength17(out); // digits
  const n = d2dExp + k; // the decimal point's position from the first digit
  if (k <= n && n <= 21) {
    // Digits, then n - k zeros.
    writeDigits(p, out, <u32>k);
    const z = p + <usize>k;
    store<u64>(z, ZEROS);
    store<u64>(z, ZEROS, 8);
    store<u64>(z, ZEROS, 16);
    return p + <usize>n;
  }
  if (0 < n && n <= 21) {
    // d.ddd: the fraction (at most 16 digits) moves right by one for the point.
    writeDigits(p, out, <u32>k);
    const f = p + <usize>n;
    v128.store(f + 1, v128.load(f));
    stb(f, 46);
    return p + <usize>k + 1;
  }
  if (-6 < n && n <= 0) {
    // 0.000ddd
    store<u64>(p, ZEROS);
    stb(p + 1, 46);
    const d = p + 2 + <usize>(-n);
    writeDigits(d, out, <u32>k);
    return d + <usize>k;
  }
  // d.ddde±x
  writeDigits(p + 1, out, <u32>k);
  stb(p, load<u8>(p + 1));
  let e = p + 1;
  if (k > 1) {
    stb(p + 1, 46);
    e = p + 1 + <usize>k;
  }
  let x10 = n - 1;
  if (x10 < 0) {
    store<u16>(e, 0x2d65); // "e-"
    x10 = -x10;
  } else {
    store<u16>(e, 0x2b65); // "e+"
  }
  e += 2;
  if (x10 >= 100) {
    const h = <u32>x10 / 100;
    stb(e, <u8>(48 + h));
    store<u16>(e + 1, pair(<u32>x10 - h * 100));
    return e + 3;
  }
  if (x10 >= 10) {
    store<u16>(e, pair(<u32>x10));
    return e + 2;
  }
  stb(e, <u8>(48 + x10));
  return e + 1;
}

// ─── A cache of printed numbers ──────────────────────────────────────────────
//
// Quantiles are sketch bucket values and minima and maxima are measured values:
// across the results of a batch the same few hundred doubles come back again and
// again. A direct-mapped cache of their text saves the digit generation.
//
//   tag  u64[CACHE_SLOTS]        the double's bits
//   text 32 B × CACHE_SLOTS      its JSON text (at most NUMBER_MAX bytes), then its length (u8, 0 = empty)
const CACHE_SLOTS: u32 = 4096;
const cacheTag: usize = memory.data(<i32>(CACHE_SLOTS << 3), 8);
const cacheText: usize = memory.data(<i32>(CACHE_SLOTS << 5), 16);

/** writeNumber through the cache. */
function writeNumberCached(p: usize, x: f64): usize {
  const bits = reinterpret<u64>(x);
  const h = <u32>((bits * 0x9e3779b97f4a7c15) >> 52); // 12 bits of a Fibonacci hash
  const t = cacheText + (<usize>h << 5);
  const len = <usize>load<u8>(t, 31);
  if (len != 0 && load<u64>(cacheTag + (<usize>h << 3)) == bits) {
    v128.store(p, v128.load(t));
    v128.store(p, v128.load(t, 16), 16);
    return p + len;
  }
  const e = writeNumber(p, x);
  v128.store(t, v128.load(p));
  v128.store(t, v128.load(p, 16), 16);
  store<u8>(t, <u8>(e - p), 31);
  store<u64>(cacheTag + (<usize>h << 3), bits);
  return e;
}

/**
 * Formats n doubles (f64[n] at src) back to back from `out`; bounds[i] (u32) is the
 * end of number i relative to out. Returns the bytes written.
 */
export function formatDoubles(src: usize, n: u32, out: usize, bounds: usize): u32 {
  let p = out;
  for (let i: u32 = 0; i < n; i++) {
    p = writeNumber(p, ldf(src + (<usize>i << 3)));
    stu(bounds + (<usize>i << 2), <u32>(p - out));
  }
  return <u32>(p - out);
}

// ─── Result lines ────────────────────────────────────────────────────────────
//
// One line per result record (layout.ts, Result record), as JSON.stringify writes a
// WindowResult, then '\n':
//
//   {"name":…,"key":…,"group":{…},"window":{"start":   ← prefix, from TS per (aggregation, key)
//   S,"end":E},"results":{"count":C,"sum":…,"avg":…,"min":…,"max":…,"p50":…,"p95":…,"p99":…,"stddev":…
//   },"late":false,"emittedAt":T}\n                      ← tail, the same for the whole batch
//
// Prefix references (TS writes them, one per record):
//   ┌─────────┬─────────┐
//   │ ptr u32 │ len u32 │   the prefix bytes, in a block readable to len rounded up to 16
//   └─────────┴─────────┘
// Line bounds (written here): u32 start[n], then u32 end[n], relative to `out`; line
// i is [start[i], end[i]) and a '\n' follows it at end[i].

// Literal pieces, each padded to whole 16-byte words.
const LIT_END: usize = memory.data<u8>([44, 34, 101, 110, 100, 34, 58, 0, 0, 0, 0, 0, 0, 0, 0, 0]); // ,"end":
const LIT_RESULTS: usize = memory.data<u8>([
  125, 44, 34, 114, 101, 115, 117, 108, 116, 115, 34, 58, 123, 34, 99, 111, 117, 110, 116, 34, 58, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
]); // },"results":{"count":
const LIT_SUM: usize = memory.data<u8>([44, 34, 115, 117, 109, 34, 58, 0, 0, 0, 0, 0, 0, 0, 0, 0]); // ,"sum":
const LIT_AVG: usize = memory.data<u8>([44, 34, 97, 118, 103, 34, 58, 0, 0, 0, 0, 0, 0, 0, 0, 0]); // ,"avg":
const LIT_MIN: usize = memory.data<u8>([44, 34, 109, 105, 110, 34, 58, 0, 0, 0, 0, 0, 0, 0, 0, 0]); // ,"min":
const LIT_MAX: usize = memory.data<u8>([44, 34, 109, 97, 120, 34, 58, 0, 0, 0, 0, 0, 0, 0, 0, 0]); // ,"max":
const LIT_P50: usize = memory.data<u8>([44, 34, 112, 53, 48, 34, 58, 0, 0, 0, 0, 0, 0, 0, 0, 0]); // ,"p50":
const LIT_P95: usize = memory.data<u8>([44, 34, 112, 57, 53, 34, 58, 0, 0, 0, 0, 0, 0, 0, 0, 0]); // ,"p95":
const LIT_P99: usize = memory.data<u8>([44, 34, 112, 57, 57, 34, 58, 0, 0, 0, 0, 0, 0, 0, 0, 0]); // ,"p99":
const LIT_STDDEV: usize = memory.data<u8>([44, 34, 115, 116, 100, 100, 101, 118, 34, 58, 0, 0, 0, 0, 0, 0]); // ,"stddev":
const LIT_LATE_FALSE: usize = memory.data<u8>([
  125, 44, 34, 108, 97, 116, 101, 34, 58, 102, 97, 108, 115, 101, 44, 34, 101, 109, 105, 116, 116, 101, 100, 65, 116, 34, 58,
]); // },"late":false,"emittedAt":   (27 bytes)
const LIT_LATE_TRUE: usize = memory.data<u8>([
  125, 44, 34, 108, 97, 116, 101, 34, 58, 116, 114, 117, 101, 44, 34, 101, 109, 105, 116, 116, 101, 100, 65, 116, 34, 58,
]); // },"late":true,"emittedAt":    (26 bytes)

/** The two tails of this batch's lines (late false / true), at 0 and 128 (a number's slack included); their lengths. */
const tails: usize = memory.data(256, 16);
let tailLen0: usize = 0;
let tailLen1: usize = 0;

/** The last record's window bounds (as bits), and its text from the start's value to the count's key (at most 2 × 24 + 28 bytes). */
const NO_BOUNDS: u64 = 0x7ff8dead0000dead; // a NaN the core never writes
let lastStart: u64 = NO_BOUNDS;
let lastEnd: u64 = NO_BOUNDS;
const bounded: usize = memory.data(80, 16);
let boundedLen: usize = 0;

// @ts-ignore: decorator
@inline function lit(p: usize, src: usize, len: usize): usize {
  v128.store(p, v128.load(src));
  return p + len;
}

function makeTail(dst: usize, src: usize, len: usize, emittedAt: f64): usize {
  memory.copy(dst, src, len);
  const e = writeNumber(dst + len, emittedAt);
  store<u16>(e, 0x0a7d); // "}\n"
  return e + 2 - dst;
}

/**
 * Writes the JSON line of each of n result records (RES_BYTES each from `res`) from
 * `out`, each followed by '\n', and their bounds (see above). `emittedAt` is the same
 * for every line. Returns the bytes written. `out` needs the prefixes' lengths plus
 * RESULT_LINE_MAX per record plus ENCODE_SLACK bytes.
 */
export function encodeResults(res: usize, n: u32, refs: usize, emittedAt: f64, out: usize, bounds: usize): u32 {
  tailLen0 = makeTail(tails, LIT_LATE_FALSE, 27, emittedAt);
  tailLen1 = makeTail(tails + 128, LIT_LATE_TRUE, 26, emittedAt);
  lastStart = lastEnd = NO_BOUNDS;
  const ends = bounds + (<usize>n << 2);
  let p = out;
  for (let i: u32 = 0; i < n; i++) {
    const r = res + <usize>i * RES_BYTES;
    const ref = refs + (<usize>i << 3);
    const src = <usize>ldu(ref), len = <usize>ldu(ref + 4);
    stu(bounds + (<usize>i << 2), <u32>(p - out));
    for (let o: usize = 0; o < len; o += 16) v128.store(p + o, v128.load(src + o));
    p += len;
    // The windows of one firing share their bounds: `S,"end":E},"results":{"count":` is
    // written once and copied while they repeat.
    const start = load<u64>(r + RES_START), end = load<u64>(r + RES_END);
    if (start == lastStart && end == lastEnd) {
      v128.store(p, v128.load(bounded));
      v128.store(p, v128.load(bounded, 16), 16);
      v128.store(p, v128.load(bounded, 32), 32);
      v128.store(p, v128.load(bounded, 48), 48);
      v128.store(p, v128.load(bounded, 64), 64);
      p += boundedLen;
    } else {
      const b = p;
      p = writeNumber(p, ldf(r + RES_START));
      p = lit(p, LIT_END, 7);
      p = writeNumber(p, ldf(r + RES_END));
      v128.store(p, v128.load(LIT_RESULTS));
      p = lit(p + 16, LIT_RESULTS + 16, 5);
      boundedLen = p - b;
      memory.copy(bounded, b, boundedLen);
      lastStart = start;
      lastEnd = end;
    }
    p = writeNumber(p, ldf(r + RES_COUNT));
    p = lit(p, LIT_SUM, 7);
    p = writeNumber(p, ldf(r + RES_SUM));
    p = lit(p, LIT_AVG, 7);
    p = writeNumber(p, ldf(r + RES_AVG));
    // Minima, maxima and quantiles repeat across results: cached. Sums, means and
    // standard deviations hardly ever do.
    p = lit(p, LIT_MIN, 7);
    p = writeNumberCached(p, ldf(r + RES_MIN));
    p = lit(p, LIT_MAX, 7);
    p = writeNumberCached(p, ldf(r + RES_MAX));
    p = lit(p, LIT_P50, 7);
    p = writeNumberCached(p, ldf(r + RES_P50));
    p = lit(p, LIT_P95, 7);
    p = writeNumberCached(p, ldf(r + RES_P95));
    p = lit(p, LIT_P99, 7);
    p = writeNumberCached(p, ldf(r + RES_P99));
    p = lit(p, LIT_STDDEV, 10);
    p = writeNumber(p, ldf(r + RES_STDDEV));
    const t = (ldu(r + RES_FLAGS) & RES_LATE) != 0 ? tails + 128 : tails;
    const tl = t == tails ? tailLen0 : tailLen1;
    v128.store(p, v128.load(t));
    v128.store(p, v128.load(t, 16), 16);
    v128.store(p, v128.load(t, 32), 32);
    v128.store(p, v128.load(t, 48), 48);
    p += tl;
    stu(ends + (<usize>i << 2), <u32>(p - 1 - out)); // before the '\n'
  }
  return <u32>(p - out);
}

/** Most bytes of a line besides its prefix: 12 numbers, the literals, the tail. */
export const RESULT_LINE_MAX: usize = 12 * NUMBER_MAX + 7 + 21 + 7 * 7 + 10 + 27 + 2;
