// Doubles as JSON text, exactly as JavaScript prints them, and whole result lines.
//
// `writeNumber` gives the bytes of `JSON.stringify(x)` for any double: ECMAScript's
// Number::toString (https://tc39.es/ecma262/#sec-numeric-types-number-tostring) with
// the shortest digits that read back as x, the closest of them to x (ties to an even
// last digit), as V8 prints them; NaN and ±Infinity as `null`, -0 as `0`. The digits
// come from Dragonbox (Junekey Jeon, "Dragonbox: A New Floating-Point Binary-to-Decimal
// Conversion Algorithm", 2020; reference https://github.com/jk-jeon/dragonbox), with
// its 128-bit products built from 32-bit halves (WebAssembly has no 64×64→128
// multiply). Dragonbox needs one 64×128-bit product for most doubles, where Ryu needs
// two and a search for the digits to drop. AssemblyScript's own f64.toString is
// Grisu2, which is not always shortest.
//
// Every writer stores whole 8- or 16-byte words and may write up to ENCODE_SLACK bytes
// past the end it returns: output regions carry that much spare room.
import { POW10_128 } from './dtoa-tables';
import {
  RES_AGG, RES_KEY, RES_FLAGS, RES_START, RES_END, RES_COUNT, RES_SUM, RES_MIN, RES_MAX, RES_AVG, RES_STDDEV,
  RES_P50, RES_P95, RES_P99, RES_BYTES, RES_LATE,
  SNAP_AGG, SNAP_KEY, SNAP_LEN, SNAP_START, SNAP_END, SNAP_BODY, SNAP_HEADER,
} from './layout';
import { ldf, ldu, stu, stb } from './mem';

/** Bytes an output region needs past its last line (whole-word stores). */
export const ENCODE_SLACK: usize = 64;
/** Most bytes `writeNumber` returns: `-0.0000012345678901234567`. */
export const NUMBER_MAX: usize = 25;

/** 10^i as u64, i in [0, 20). */
const POW10: usize = memory.data<u64>([
  1, 10, 100, 1000, 10000, 100000, 1000000, 10000000, 100000000, 1000000000, 10000000000,
  100000000000, 1000000000000, 10000000000000, 100000000000000, 1000000000000000,
  10000000000000000, 100000000000000000, 1000000000000000000, 10000000000000000000,
]);

// ─── Shortest digits (Dragonbox) ─────────────────────────────────────────────
//
// A positive finite double is fc × 2^e. Every decimal in the interval of reals that
// round to it (its ends included when fc is even: reading rounds half to even) reads
// back as the same double. Dragonbox multiplies by a 128-bit approximation of 10^k
// chosen so that the interval is 100 to 1000 units of 10^-k wide, takes the largest
// multiple of 1000 units below its right end if the interval holds it (then drops its
// zeros: the shortest digits), else the unit closest to the double itself: which
// digit, and the ties, come from the fraction bits of the same products.

const KAPPA: i32 = 2;
const MIN_K: i32 = -292; // POW10_128 holds 10^MIN_K to 10^326

// Integer logarithms, exact over every exponent of a double (scripts/gen-dtoa-tables.js checks them).
// @ts-ignore: decorator
@inline function floorLog10Pow2(e: i32): i32 { return (e * 315653) >> 20; }
// @ts-ignore: decorator
@inline function floorLog2Pow10(k: i32): i32 { return (k * 1741647) >> 19; }
// @ts-ignore: decorator
@inline function floorLog10Pow2MinusLog10_4Over3(e: i32): i32 { return (e * 631305 - 261663) >> 21; }

/** The high 64 bits of a × b (the low 64 are a * b). */
// @ts-ignore: decorator
@inline function umulHi(a: u64, b: u64): u64 {
  const aLo = a & 0xffffffff, aHi = a >> 32, bLo = b & 0xffffffff, bHi = b >> 32;
  const b00 = aLo * bLo, b01 = aLo * bHi, b10 = aHi * bLo, b11 = aHi * bHi;
  const mid1 = b10 + (b00 >> 32);
  const mid2 = b01 + (mid1 & 0xffffffff);
  return b11 + (mid1 >> 32) + (mid2 >> 32);
}

/** Parity and integrality of x × 10^k × 2^beta (x = 2fc or 2fc - 1): from the low 128 bits of x × cache. */
let mulParity = false;
let mulIsInteger = false;
function computeMulParity(x: u64, hi: u64, lo: u64, beta: i32): void {
  const low = x * lo;
  const high = x * hi + umulHi(x, lo);
  mulParity = ((high >> <u64>(64 - beta)) & 1) != 0;
  mulIsInteger = ((high << <u64>beta) | (low >> <u64>(64 - beta))) == 0;
}

/** Decimal exponent of the last toDecimal: the double is its result × 10^decExp. */
let decExp: i32 = 0;

/**
 * Dragonbox: the shortest decimal digits that read back as the positive finite double
 * with these bits, the closest of them to it (ties to even). The result may end in
 * zeros (the printer drops them).
 */
// @ts-ignore: decorator
@inline function toDecimal(bits: u64): u64 {
  const mant = bits & 0xfffffffffffff;
  const ebits = <i32>(bits >> 52);
  let twoFc = mant << 1;
  let e: i32;
  if (ebits != 0) {
    e = ebits - 1075;
    if (mant == 0) return shorterInterval(e);
    twoFc |= <u64>1 << 53;
  } else {
    e = -1074;
  }
  const even = (mant & 1) == 0;
  const minusK = floorLog10Pow2(e) - KAPPA;
  const beta = e + floorLog2Pow10(-minusK);
  const c = POW10_128 + (<usize>(-minusK - MIN_K) << 4);
  const hi = load<u64>(c), lo = load<u64>(c, 8);

  // The interval is deltai units wide, 10^kappa <= deltai < 10^(kappa+1); its right
  // end is zi units (the upper 128 bits of (2fc + 1) × 2^beta × cache).
  const deltai = <u32>(hi >> <u64>(63 - beta));
  const x = (twoFc | 1) << <u64>beta;
  const zLo = x * hi;
  let zi = umulHi(x, hi);
  // The low word's product adds less than x to zLo: it carries into zi only when zLo
  // is that close to 2^64 (rare).
  if (zLo > 0 - x) zi += <u64>(zLo + umulHi(x, lo) < zLo);

  // Step 2: the largest multiple of 10^(kappa+1) units at or below the right end, if
  // the interval holds it (the right end itself only when fc is even).
  let sig = zi / 1000;
  let r = <u32>(zi - sig * 1000);
  let big = r < deltai;
  if (r == deltai) {
    // On the left end: compare the fractional parts (rare).
    computeMulParity(twoFc - 1, hi, lo, beta);
    big = mulParity || (mulIsInteger && even);
  }
  // (Whether zi is exact, that is the rest of the product 0, matters only then: rare.)
  const excluded = r == 0 && !even && zLo + umulHi(x, lo) == 0;
  big &= !excluded;
  // Step 3 (from one unit below the right end when that is excluded): the unit
  // closest to the double, one digit more. Computed either way and chosen without a
  // branch: which step holds is a coin toss for most doubles.
  const sigBig = sig;
  sig = (sig - <u64>excluded) * 10;
  r = select<u32>(1000, r, excluded);
  let dist = r - (deltai >> 1) + 50;
  const approxYParity = ((dist ^ 50) & 1) != 0;
  // dist / 100, and whether it divides evenly (exact for dist <= 1000).
  dist *= 656;
  const divisible = (dist & 0xffff) < 656;
  dist >>= 16;
  sig += dist;
  if (divisible && !big) {
    // The double may lie exactly halfway, or just below: the fraction's parity decides (rare).
    computeMulParity(twoFc, hi, lo, beta);
    if (mulParity != approxYParity) sig--;
    else if (mulIsInteger && (sig & 1) != 0) sig--; // a tie: to even
  }
  decExp = minusK + KAPPA + <i32>big;
  return select<u64>(sigBig, sig, big);
}

/** toDecimal for a power of two (fc = 2^52): its interval reaches half as far below as above. */
function shorterInterval(e: i32): u64 {
  const minusK = floorLog10Pow2MinusLog10_4Over3(e);
  const beta = e + floorLog2Pow10(-minusK);
  const hi = load<u64>(POW10_128 + (<usize>(-minusK - MIN_K) << 4));
  let xi = (hi - (hi >> 54)) >> <u64>(11 - beta);
  const zi = (hi + (hi >> 53)) >> <u64>(11 - beta);
  // The left end is an integer only for e in [2, 3].
  if (e < 2 || e > 3) xi++;
  let sig = zi / 10;
  if (sig * 10 >= xi) {
    decExp = minusK + 1;
    return sig;
  }
  sig = ((hi >> <u64>(10 - beta)) + 1) >> 1; // round up
  if ((sig & 1) != 0 && e == -77) sig--; // the one tie: to even
  else if (sig < xi) sig++;
  decExp = minusK;
  return sig;
}

// ─── Printing ────────────────────────────────────────────────────────────────

/** Digits of v in [1, 10^17): from its bit length, then one comparison. */
// @ts-ignore: decorator
@inline function decimalLength17(v: u64): i32 {
  const t = (<u32>(64 - clz(v)) * 1233) >> 12; // floor(log10(2^bits)), one less or exact
  return <i32>(t + 1 - <u32>(v < load<u64>(POW10 + (<usize>t << 3))));
}

/** The 8 ASCII digits of v < 10^8, leading zeros kept, the first in the lowest byte. */
// @ts-ignore: decorator
@inline function ascii8(v: u32): u64 {
  // Halves, quarters, then digits side by side in one word (SWAR): each step divides
  // every lane by a constant through a multiply and a shift (exact for these ranges).
  const hi = v / 10000;
  const x = <u64>hi | (<u64>(v - hi * 10000) << 32); // two 4-digit lanes of 32 bits
  const h = ((x * 10486) >> 20) & 0x0000007f0000007f; // lane / 100
  const y = h | ((x - h * 100) << 16); // four 2-digit lanes of 16 bits
  const t = ((y * 103) >> 10) & 0x000f000f000f000f; // lane / 10
  return (t | ((y - t * 10) << 8)) + 0x3030303030303030;
}

// SIMD constants, loaded from memory: V8 builds a v128 constant from general-purpose
// registers in three instructions, a load is one.
const SIMD_CONSTANTS: usize = memory.data<u8>([
  0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, // IOTA: i8x16 0..15
  0xf6, 0x28, 0, 0, 0xf6, 0x28, 0, 0, 0xf6, 0x28, 0, 0, 0xf6, 0x28, 0, 0, // i32x4 10486
  100, 0, 0, 0, 100, 0, 0, 0, 100, 0, 0, 0, 100, 0, 0, 0, // i32x4 100
  103, 0, 103, 0, 103, 0, 103, 0, 103, 0, 103, 0, 103, 0, 103, 0, // i16x8 103
  10, 0, 10, 0, 10, 0, 10, 0, 10, 0, 10, 0, 10, 0, 10, 0, // i16x8 10
  48, 48, 48, 48, 48, 48, 48, 48, 48, 48, 48, 48, 48, 48, 48, 48, // i8x16 '0'
], 16);
// @ts-ignore: decorator
@inline function IOTA(): v128 { return v128.load(SIMD_CONSTANTS); }
// @ts-ignore: decorator
@inline function I32X4_10486(): v128 { return v128.load(SIMD_CONSTANTS, 16); }
// @ts-ignore: decorator
@inline function I32X4_100(): v128 { return v128.load(SIMD_CONSTANTS, 32); }
// @ts-ignore: decorator
@inline function I16X8_103(): v128 { return v128.load(SIMD_CONSTANTS, 48); }
// @ts-ignore: decorator
@inline function I16X8_10(): v128 { return v128.load(SIMD_CONSTANTS, 64); }
// @ts-ignore: decorator
@inline function ASCII_ZEROS(): v128 { return v128.load(SIMD_CONSTANTS, 80); }
const ZEROS: u64 = 0x3030303030303030; // "00000000"

/** The 16 ASCII digits of hi8 × 10^8 + lo8 (each < 10^8), leading zeros kept, the first in lane 0. */
// @ts-ignore: decorator
@inline function digits16(hi8: u32, lo8: u32): v128 {
  // ascii8 on four lanes at once: 4-digit quarters in 32-bit lanes, then 2-digit
  // parts in 16-bit lanes, then digits in bytes.
  const a = hi8 / 10000, c = lo8 / 10000;
  let x = i32x4.splat(a);
  x = i32x4.replace_lane(x, 1, hi8 - a * 10000);
  x = i32x4.replace_lane(x, 2, c);
  x = i32x4.replace_lane(x, 3, lo8 - c * 10000);
  const h = i32x4.shr_u(i32x4.mul(x, I32X4_10486()), 20); // / 100
  const y = v128.or(h, i32x4.shl(i32x4.sub(x, i32x4.mul(h, I32X4_100())), 16));
  const t = i16x8.shr_u(i16x8.mul(y, I16X8_103()), 10); // / 10
  const z = v128.or(t, i16x8.shl(i16x8.sub(y, i16x8.mul(t, I16X8_10())), 8));
  return i8x16.add(z, ASCII_ZEROS());
}

/** The last len (<= 16) of 16 digits, moved to the front. */
// @ts-ignore: decorator
@inline function leftAligned(digits: v128, len: i32): v128 {
  return i8x16.swizzle(digits, i8x16.add(IOTA(), i8x16.splat(<i8>(16 - len))));
}

/** The digits of t in [1, 2^53) at p; returns the end. */
// @ts-ignore: decorator
@inline function writeInteger(p: usize, t: u64): usize {
  const len = decimalLength17(t); // <= 16
  if (len <= 8) {
    // Left-aligned: the leading zeros shifted out of the word.
    store<u64>(p, ascii8(<u32>t) >> (<u64>(8 - len) << 3));
    return p + <usize>len;
  }
  const hi8 = <u32>(t / 100000000); // < 10^8 as t < 10^16
  v128.store(p, leftAligned(digits16(hi8, <u32>(t - <u64>hi8 * 100000000)), len));
  return p + <usize>len;
}

/** An integer's n - len zeros after its len digits at p (n <= 21: 24 bytes cover them); returns the end. */
// @ts-ignore: decorator
@inline function padZeros(p: usize, len: i32, n: i32): usize {
  const z = p + <usize>len;
  store<u64>(z, ZEROS);
  store<u64>(z, ZEROS, 8);
  store<u64>(z, ZEROS, 16);
  return p + <usize>n;
}

/** writeDecimal for sig < 10^8 (len digits), in one word. */
function writeDecimal8(p: usize, sig: u32, len: i32, exp10: i32): usize {
  const w = ascii8(sig);
  const zeros = <i32>(clz(w ^ ZEROS) >> 3); // '0' digits at the end (the last digit is the high byte)
  const k = len - zeros;
  const d = w >> (<u64>(8 - len) << 3); // left-aligned
  const n = exp10 + len; // the decimal point's place after the first digit
  if (k <= n && n <= 21) {
    // An integer: the digits, then n - len zeros.
    store<u64>(p, d);
    return padZeros(p, len, n);
  }
  if (0 < n && n <= 21) {
    // ddd.ddd (n < k <= 8): the point goes in at byte n, pushing the 8th digit out of the word.
    const low = (<u64>1 << (<u64>n << 3)) - 1;
    store<u64>(p, (d & low) | (<u64>46 << (<u64>n << 3)) | ((d & ~low) << 8));
    stb(p + 8, <u8>(d >> 56));
    return p + <usize>k + 1;
  }
  if (-6 < n && n <= 0) {
    // 0.000ddd
    store<u64>(p, 0x3030303030302e30); // "0.000000"
    const q = p + 2 + <usize>(-n);
    store<u64>(q, d);
    return q + <usize>k;
  }
  // d.ddde±x
  let e = p + 1;
  if (k > 1) {
    store<u64>(p, (d & 0xff) | 0x2e00 | ((d & ~0xff) << 8));
    stb(p + 8, <u8>(d >> 56));
    e = p + 1 + <usize>k;
  } else {
    stb(p, <u8>d);
  }
  return writeExponent(e, n - 1);
}

/** `e+x` or `e-x` at p; returns the end. */
function writeExponent(p: usize, x10: i32): usize {
  if (x10 < 0) {
    store<u16>(p, 0x2d65); // "e-"
    x10 = -x10;
  } else {
    store<u16>(p, 0x2b65); // "e+"
  }
  p += 2;
  // At most 3 digits: the last bytes of its 8 ASCII digits.
  const a = ascii8(<u32>x10);
  if (x10 >= 100) {
    store<u32>(p, <u32>(a >> 40));
    return p + 3;
  }
  if (x10 >= 10) {
    store<u16>(p, <u16>(a >> 48));
    return p + 2;
  }
  stb(p, <u8>(a >> 56));
  return p + 1;
}

/** Number::toString of sig × 10^exp10, sig in [1, 10^17), at p; returns the end. */
function writeDecimal(p: usize, sig: u64, exp10: i32): usize {
  return decimalText(p, sig, exp10);
}

/**
 * The shortest digits of a positive finite double (its bits) at p; returns the end.
 * Dragonbox and the printer in one function: the numbers that need the full algorithm
 * (2 to 3 per result line) pay one call, not two.
 */
function writeShortest(p: usize, abits: u64): usize {
  const sig = toDecimal(abits);
  return decimalText(p, sig, decExp);
}

/** writeDecimal, inlined where it is called. */
// @ts-ignore: decorator
@inline function decimalText(p: usize, sig: u64, exp10: i32): usize {
  const len = decimalLength17(sig);
  if (len <= 8) return writeDecimal8(p, <u32>sig, len, exp10);
  // The 17 digits with leading zeros: the first, then the other 16 in low16.
  const hi9 = sig / 100000000;
  const top = <u32>hi9 / 100000000;
  const low16 = digits16(<u32>hi9 - top * 100000000, <u32>(sig - hi9 * 100000000));
  // The digits left-aligned: the first 16 in d, the 17th (if any) in d16.
  // (For 17 digits the shift takes in a 0 byte at lane 0: the first digit goes there.)
  const d = v128.or(leftAligned(low16, len), i32x4.replace_lane(v128.splat<i32>(0), 0, select<i32>(48 + top, 0, len == 17)));
  const d16 = <u8>i8x16.extract_lane_u(low16, 15);
  // Significant digits: len less the zeros at the end (all in low16: the first digit is not 0).
  const zeros = i8x16.bitmask(i8x16.eq(low16, ASCII_ZEROS()));
  const k = len - <i32>clz(((~zeros) << 16) | 0x8000);
  const n = exp10 + len; // the decimal point's place after the first digit

  if (k <= n && n <= 21) {
    // An integer: the digits, then n - len zeros.
    v128.store(p, d);
    stb(p + 16, d16);
    return padZeros(p, len, n);
  }
  if (0 < n && n <= 21) {
    // ddd.ddd: n digits, the point, the other k - n.
    v128.store(p, d);
    stb(p + <usize>n, 46);
    v128.store(p + <usize>n + 1, i8x16.swizzle(d, i8x16.add(IOTA(), i8x16.splat(<i8>n))));
    stb(p + 17, d16);
    return p + <usize>k + 1;
  }
  if (-6 < n && n <= 0) {
    // 0.000ddd
    store<u64>(p, 0x3030303030302e30); // "0.000000"
    const q = p + 2 + <usize>(-n);
    v128.store(q, d);
    stb(q + 16, d16);
    return q + <usize>k;
  }
  // d.ddde±x
  stb(p, <u8>i8x16.extract_lane_u(d, 0));
  let e = p + 1;
  if (k > 1) {
    stb(p + 1, 46);
    v128.store(p + 2, i8x16.swizzle(d, i8x16.add(IOTA(), i8x16.splat(1))));
    stb(p + 17, d16);
    e = p + 1 + <usize>k;
  }
  return writeExponent(e, n - 1);
}

/**
 * m / 1000 at p, for m in [1, 10^8) not a multiple of 1000: the integer part (0 below 1),
 * the point, the fraction without its zeros at the end. Returns the end. (Numbers with at
 * most 3 decimals below 10^5, as measured values are: the whole of writeDecimal's job
 * for them, in one word and without a call.) m is never a multiple of 1000: an integer
 * reads as one before (formatNumber).
 */
// @ts-ignore: decorator
@inline function writeMilli8(p: usize, m: u32): usize {
  const w = ascii8(m); // 5 digits of the integer part (leading zeros kept), then 3 of the fraction
  const x = w ^ ZEROS; // a zero byte for each digit 0
  // The integer part's leading zeros, all but its last digit (0.5 keeps its 0).
  const lead = min<u64>(ctz(x) >> 3, 4);
  const n = <usize>(5 - lead); // its digits
  store<u64>(p, w >> (lead << 3));
  // Over the integer part's last digit and on: the point, then the fraction's 3 digits.
  store<u32>(p + n, (<u32>(w >> 32) & 0xffffff00) | 46);
  return p + n + 4 - <usize>(clz(x) >> 3); // less the fraction's zeros at the end
}

/**
 * JSON.stringify(x) at p: ECMAScript Number::toString for finite x (-0 as `0`), `null`
 * otherwise. Returns the end. Writes at most NUMBER_MAX bytes plus slack.
 */
export function writeNumber(p: usize, x: f64): usize {
  return formatNumber(p, x);
}

/** writeNumber, inlined where it is called. */
// @ts-ignore: decorator
@inline function formatNumber(p: usize, x: f64): usize {
  // Integer arithmetic on the bits throughout: a double's exponent says which of its
  // bits are fractional, and no check waits on a floating-point conversion.
  const bits = reinterpret<u64>(x);
  const abits = bits & 0x7fffffffffffffff;
  const ebits = <i32>(abits >> 52);
  if (ebits == 0x7ff) {
    store<u32>(p, 0x6c6c756e); // "null"
    return p + 4;
  }
  if (abits == 0) {
    stb(p, 48); // 0 and -0
    return p + 1;
  }
  if (bits != abits) {
    stb(p, 45); // '-'
    p++;
  }
  // |x| = fc / 2^s, fc < 2^53 (normal doubles).
  const fc = (abits & 0xfffffffffffff) | (<u64>1 << 52);
  const s = 1075 - ebits;
  if (<u32>s <= 52) {
    // Integers below 2^53: every digit is significant, no exponent form.
    if ((fc & ((<u64>1 << <u64>s) - 1)) == 0) return writeInteger(p, fc >> <u64>s);
  }
  if (<u32>(s - 10) <= 53) {
    // At most 3 decimals (measured values): m, the integer closest to 1000|x|, and
    // whether m / 1000 reads back as |x|, that is lies within half a unit in the last
    // place of it: |r| <= 500 for r = 1000 fc - m 2^s, exact in 64 bits as 1000 fc <
    // 2^63. No tie to break and no narrower interval to mind: r is a multiple of 8 (so
    // never ±500), and below a power of two (fc = 2^52, where the interval reaches only
    // half as far down) a multiple of 2^min(s, 52), so 0 if |r| <= 500. For s >= 10 any
    // such decimal is m / 1000 (the interval is narrower than a thousandth), and no
    // shorter decimal reads back as |x| (a decimal of at most 15 digits is the only
    // one of its length that reads back as its double).
    const d = fc * 1000;
    const m = (d + (<u64>1 << <u64>(s - 1))) >> <u64>s;
    const r = <i64>(d - (m << <u64>s));
    if (<u64>(r + 500) <= 1000 && m < 1000000000000000) {
      return m < 100000000 ? writeMilli8(p, <u32>m) : writeDecimal(p, m, -3);
    }
  }
  return writeShortest(p, abits);
}

// ─── A cache of printed numbers ──────────────────────────────────────────────
//
// Quantiles are sketch bucket values (at most a few hundred distinct ones per
// aggregation, each printed with up to 17 digits): across the results of a batch the
// same ones come back again and again. A direct-mapped cache of their text saves the
// digit generation.
//
//   tag  u64[CACHE_SLOTS]        the double's bits
//   text 32 B × CACHE_SLOTS      its JSON text (at most NUMBER_MAX bytes), then its length (u8, 0 = empty)
const CACHE_SLOTS: u32 = 4096;
const cacheTag: usize = memory.data(<i32>(CACHE_SLOTS << 3), 8);
const cacheText: usize = memory.data(<i32>(CACHE_SLOTS << 5), 16);

/** writeNumber through the cache. */
// @ts-ignore: decorator
@inline function writeNumberCached(p: usize, x: f64): usize {
  const bits = reinterpret<u64>(x);
  const h = <u32>((bits * 0x9e3779b97f4a7c15) >> 52); // 12 bits of a Fibonacci hash
  const t = cacheText + (<usize>h << 5);
  if (load<u64>(cacheTag + (<usize>h << 3)) == bits && load<u8>(t, 31) != 0) {
    v128.store(p, v128.load(t));
    v128.store(p, v128.load(t, 16), 16);
    return p + <usize>load<u8>(t, 31);
  }
  return writeNumberCaching(p, x, t, h);
}

/** writeNumber, and the text into cache slot h (text at t). */
function writeNumberCaching(p: usize, x: f64, t: usize, h: u32): usize {
  const e = writeNumber(p, x);
  v128.store(t, v128.load(p));
  v128.store(t, v128.load(p, 16), 16);
  store<u8>(t, <u8>(e - p), 31);
  store<u64>(cacheTag + (<usize>h << 3), reinterpret<u64>(x));
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
//   {"name":…,"key":…,"group":{…},"window":{"start":   ← prefix, per (aggregation, key)
//   S,"end":E},"results":{"count":C,"sum":…,"avg":…,"min":…,"max":…,"p50":…,"p95":…,"p99":…,"stddev":…
//   },"late":false,"emittedAt":T}\n                      ← tail, the same for the whole batch
//
// A prefix is a head that is the same for every key of its aggregation
// (`{"name":"N","key":`), the key's own middle (its key and group: `"K","group":{"f":"v"`)
// and the tail `},"window":{"start":`, the same for every prefix. Only the middle is
// kept per key: ~45 bytes where the whole prefix was ~100, so that the blocks of many
// thousands of keys take half the cache they did, and the heads, read for every line,
// stay in it. TS writes, per aggregation, its head and a table of middles:
//   heads:    per aggregation │ ptr u32 │ len u32 │, its head, readable to len
//             rounded up to 32
//   prefixes: u32 per aggregation, the address of its table; per key id
//             │ ptr u32 │ len u32 │, its middle, readable to len rounded up to 32
// Line bounds (written here): u32 start[n], then u32 end[n], relative to `out`; line
// i is [start[i], end[i]) and a '\n' follows it at end[i].

// Literal pieces, each padded to a whole 16-byte word.
const LIT_WINDOW: usize = memory.data<u8>([
  125, 44, 34, 119, 105, 110, 100, 111, 119, 34, 58, 123, 34, 115, 116, 97, 114, 116, 34, 58, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
]); // },"window":{"start":   (20 bytes: the end of every prefix)
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

/**
 * The two tails of this batch's lines (late false / true), at 0 and 64; their lengths.
 * writeNumber may store up to ENCODE_SLACK bytes past the second one's end: the data
 * has that much room after them, or the writes would land in the next static data.
 */
const tails: usize = memory.data(128 + <i32>ENCODE_SLACK, 16);

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

let prefetched: u32 = 0;

/** Copies len bytes from src to p in 32-byte steps (up to 31 bytes more); returns p + len. */
// @ts-ignore: decorator
@inline function copy32(p: usize, src: usize, len: usize): usize {
  for (let o: usize = 0; o < len; o += 32) {
    v128.store(p + o, v128.load(src + o));
    v128.store(p + o, v128.load(src + o, 16), 16);
  }
  return p + len;
}

/** The (ptr, len) of record r's middle. */
// @ts-ignore: decorator
@inline function prefixRef(prefixes: usize, r: usize): usize {
  return <usize>ldu(prefixes + (<usize>ldu(r + RES_AGG) << 2)) + (<usize>ldu(r + RES_KEY) << 3);
}

/**
 * Writes the JSON line of each of n result records (RES_BYTES each from `res`) from
 * `out`, each followed by '\n', and their bounds (see above). `emittedAt` is the same
 * for every line. Returns the bytes written. `out` needs the prefixes' lengths plus
 * RESULT_LINE_MAX per record plus ENCODE_SLACK bytes.
 */
export function encodeResults(res: usize, n: u32, prefixes: usize, heads: usize, emittedAt: f64, out: usize, bounds: usize): u32 {
  const tailLen0 = makeTail(tails, LIT_LATE_FALSE, 27, emittedAt);
  const tailLen1 = makeTail(tails + 64, LIT_LATE_TRUE, 26, emittedAt);
  const ends = bounds + (<usize>n << 2);
  // The middles lie all over the heap, many out of the cache. Their first and last
  // bytes first, in a loop of nothing else: the misses overlap, where the line loop
  // would wait for each in turn (WebAssembly has no prefetch instruction). A middle
  // is mostly under 64 bytes, on one or two cache lines: those two bytes touch them
  // all, in fewer instructions than a loop over every line (a longer middle's inner
  // lines are then read in the line loop).
  let touched: u32 = 0;
  for (let i: u32 = 0; i < n; i++) {
    const ref = prefixRef(prefixes, res + <usize>i * RES_BYTES);
    const src = <usize>ldu(ref), len = <usize>ldu(ref + 4);
    touched += load<u8>(src) + load<u8>(src + len - 1);
  }
  prefetched = touched; // keeps the reads
  // Where the text from the start's value to the count's key of the last record with
  // other bounds than its predecessor's is (`S,"end":E},"results":{"count":`, at most
  // 2 × NUMBER_MAX + 28 bytes), and its bounds (as bits). The windows of one firing
  // share their bounds: their text is copied from there.
  let lastStart: u64 = 0, lastEnd: u64 = 0, bounded: usize = 0, boundedLen: usize = 0;
  let p = out;
  for (let i: u32 = 0; i < n; i++) {
    const r = res + <usize>i * RES_BYTES;
    stu(bounds + (<usize>i << 2), <u32>(p - out));
    const head = heads + (<usize>ldu(r + RES_AGG) << 3);
    p = copy32(p, <usize>ldu(head), <usize>ldu(head + 4));
    const ref = prefixRef(prefixes, r);
    p = copy32(p, <usize>ldu(ref), <usize>ldu(ref + 4));
    v128.store(p, v128.load(LIT_WINDOW));
    v128.store(p, v128.load(LIT_WINDOW, 16), 16);
    p += 20;
    const start = load<u64>(r + RES_START), end = load<u64>(r + RES_END);
    if (start == lastStart && end == lastEnd && i > 0) {
      v128.store(p, v128.load(bounded));
      v128.store(p, v128.load(bounded, 16), 16);
      v128.store(p, v128.load(bounded, 32), 32);
      v128.store(p, v128.load(bounded, 48), 48);
      v128.store(p, v128.load(bounded, 64), 64);
      p += boundedLen;
    } else {
      bounded = p;
      p = formatNumber(p, ldf(r + RES_START));
      p = lit(p, LIT_END, 7);
      p = formatNumber(p, ldf(r + RES_END));
      v128.store(p, v128.load(LIT_RESULTS));
      p = lit(p + 16, LIT_RESULTS + 16, 5);
      boundedLen = p - bounded;
      lastStart = start;
      lastEnd = end;
    }
    p = formatNumber(p, ldf(r + RES_COUNT));
    p = lit(p, LIT_SUM, 7);
    p = formatNumber(p, ldf(r + RES_SUM));
    p = lit(p, LIT_AVG, 7);
    p = formatNumber(p, ldf(r + RES_AVG));
    p = lit(p, LIT_MIN, 7);
    p = formatNumber(p, ldf(r + RES_MIN));
    p = lit(p, LIT_MAX, 7);
    p = formatNumber(p, ldf(r + RES_MAX));
    p = lit(p, LIT_P50, 7);
    p = writeNumberCached(p, ldf(r + RES_P50));
    p = lit(p, LIT_P95, 7);
    p = writeNumberCached(p, ldf(r + RES_P95));
    p = lit(p, LIT_P99, 7);
    p = writeNumberCached(p, ldf(r + RES_P99));
    p = lit(p, LIT_STDDEV, 10);
    p = formatNumber(p, ldf(r + RES_STDDEV));
    const late = (ldu(r + RES_FLAGS) & RES_LATE) != 0;
    const t = select<usize>(tails + 64, tails, late);
    v128.store(p, v128.load(t));
    v128.store(p, v128.load(t, 16), 16);
    v128.store(p, v128.load(t, 32), 32);
    v128.store(p, v128.load(t, 48), 48);
    p += select<usize>(tailLen1, tailLen0, late);
    stu(ends + (<usize>i << 2), <u32>(p - 1 - out)); // before the '\n'
  }
  return <u32>(p - out);
}

/** Most bytes of a line besides its prefix: 12 numbers, the literals, the tail. */
export const RESULT_LINE_MAX: usize = 12 * NUMBER_MAX + 7 + 21 + 7 * 7 + 10 + 27 + 2;

// ─── State records ───────────────────────────────────────────────────────────
//
// A checkpoint's puts as change-batch records (src/state/batch.ts), from the changes
// region's headers and bodies (layout.ts, snap records) and per-key parts that TS
// writes once per (aggregation, key id):
//   u32 keyLen | u32 valueLen + 1 | key = `name:key:` start `_` end | 0x00 | value
// where value = the key's state header, f64 start, f64 end, the window's body
// (src/pipeline/changes.ts, state value format).
// Key parts: per aggregation a table, per key id (ptr u32, key part length u32, header
// length u32), the key part (`name:key:`, UTF-8) then the header at ptr; the tables'
// addresses in `tables`, u32 per aggregation.

/**
 * Writes the records of snap records [first, last) (headers from `heads`, bodies from
 * `bodies`, every body written) from `out`; returns the bytes written. `out` needs, per
 * record, 8 + its key part and header + 2 × NUMBER_MAX + 18 + its body, and ENCODE_SLACK.
 */
export function encodeStatePuts(heads: usize, first: u32, last: u32, bodies: usize, tables: usize, out: usize): u32 {
  let p = out;
  for (let k = first; k < last; k++) {
    const r = heads + <usize>k * SNAP_HEADER;
    const e = <usize>ldu(tables + (<usize>ldu(r + SNAP_AGG) << 2)) + <usize>ldu(r + SNAP_KEY) * 12;
    const parts = <usize>ldu(e), keyLen = <usize>ldu(e + 4), headLen = <usize>ldu(e + 8);
    const start = ldf(r + SNAP_START), end = ldf(r + SNAP_END);
    const rec = p;
    p += 8;
    memory.copy(p, parts, keyLen);
    p = writeNumber(p + keyLen, start);
    stb(p, 95); // '_'
    p = writeNumber(p + 1, end);
    stu(rec, <u32>(p - rec - 8));
    stb(p, 0);
    const value = p + 1;
    memory.copy(value, parts + keyLen, headLen);
    p = value + headLen;
    store<f64>(p, start);
    store<f64>(p, end, 8);
    const len = <usize>ldu(r + SNAP_LEN);
    memory.copy(p + 16, bodies + <usize>ldu(r + SNAP_BODY), len);
    p += 16 + len;
    stu(rec + 4, <u32>(p - value + 1));
  }
  return <u32>(p - out);
}

/**
 * Writes n deletes as change-batch records from `out`; returns the bytes written. Each
 * is given at `recs` as (u32 aggregation, u32 key id, f64 start, f64 end), 24 bytes,
 * its key's parts in `tables` (see encodeStatePuts). `out` needs, per record, 8 + its
 * key part + 2 × NUMBER_MAX + 1, and ENCODE_SLACK.
 */
export function encodeStateDeletes(recs: usize, n: u32, tables: usize, out: usize): u32 {
  let p = out;
  for (let j: u32 = 0; j < n; j++) {
    const r = recs + <usize>j * 24;
    const e = <usize>ldu(tables + (<usize>ldu(r) << 2)) + <usize>ldu(r + 4) * 12;
    const keyLen = <usize>ldu(e + 4);
    const rec = p;
    memory.copy(p + 8, <usize>ldu(e), keyLen);
    p = writeNumber(p + 8 + keyLen, ldf(r + 8));
    stb(p, 95); // '_'
    p = writeNumber(p + 1, ldf(r + 16));
    stu(rec, <u32>(p - rec - 8));
    stu(rec + 4, 0);
  }
  return <u32>(p - out);
}
