// A mergeable relative-error quantile sketch (DDSketch-style), with log-linear buckets.
//
// A bucket is the top 6 mantissa bits plus the exponent of |x|: index = bits(|x|) >> 46.
// So each binary octave holds 64 buckets of equal width, and a bucket's midpoint is
// within 0.5/64 = 0.78% of every value in it: the 1% relative-error guarantee of a
// DDSketch with α = 0.0078, computed with one shift instead of a logarithm.
// (DDSketch: Masson, Rim, Lee, VLDB 2019; the same bucket idea as HdrHistogram.)
//
// Stores are dense u32 arrays over the range of indices actually seen, so memory is
// proportional to the spread of the data (a few hundred bytes for a typical latency
// window) and bounded by the double range (2112 octaves' worth: 528 KiB per sign)
// whatever the count. Subnormal magnitudes are scaled by 2^64 into indices below the
// normal range so that they keep the same accuracy. Zeros are counted apart.
//
// A sketch of a few values (a session of a user holds two or three) keeps up to four
// positive buckets and eight values inline, in its own header (layout.ts), and gets a
// bucket array only at its fifth bucket, ninth value or first negative value: no
// allocation, and no array to zero, grow, scan and free per window. Answers and
// serialized bytes are the same either way.
import { SK_ZEROS, SK_POS, SK_NEG, ST_PTR, ST_MIN, ST_CAP } from './layout';
import { ldu, stu, ldi, sti, zalloc, zeroSmall, copyWords } from './mem';

const SUBNORMAL_SHIFT: i32 = 4096; // 64 exponents × 64 buckets: where x·2^64 lands
const INITIAL_CAP: u32 = 16;
const TWO_64: f64 = 18446744073709551616.0;

/** Bucket index of a positive, finite magnitude. */
// @ts-ignore: decorator
@inline export function bucketIndex(m: f64): i32 {
  if (m >= 2.2250738585072014e-308) return <i32>(reinterpret<u64>(m) >> 46);
  return <i32>(reinterpret<u64>(m * TWO_64) >> 46) - SUBNORMAL_SHIFT;
}

/** The midpoint of a bucket: within 0.78% of every magnitude in it. */
export function bucketValue(index: i32): f64 {
  if (index >= 64) return reinterpret<f64>((<u64>index << 46) | (<u64>1 << 45));
  return reinterpret<f64>((<u64>(index + SUBNORMAL_SHIFT) << 46) | (<u64>1 << 45)) / TWO_64;
}

export function sketchInit(sk: usize): void {
  zeroSmall(sk, 28);
}

export function sketchFree(sk: usize): void {
  if (isInline(sk)) {
    zeroSmall(sk, 28);
    return;
  }
  let p = <usize>ldu(sk + SK_POS + ST_PTR);
  if (p) storeDrop(p, ldu(sk + SK_POS + ST_CAP));
  p = <usize>ldu(sk + SK_NEG + ST_PTR);
  if (p) storeDrop(p, ldu(sk + SK_NEG + ST_CAP));
  zeroSmall(sk, 28);
}

// Bucket arrays dropped and not yet handed out again, per size class (INITIAL_CAP << k
// buckets, k < CLASSES): lists linked through their first word, each holding at most
// SPARE_BYTES. With a window per key (sessions per user) a window's arrays are made
// and dropped with it, one of the first size and, once a second value lands further
// away, one of a larger class: the lists cost less than the allocator.
const CLASSES: u32 = 8;
const SPARE_BYTES: u32 = 4 << 20;
/** Per class: the list's first array (0: none), then the bytes the list holds. */
const SPARES = memory.data(<i32>CLASSES * 8);

/** The class of an array of `cap` buckets, CLASSES if it has none (not a class size). */
// @ts-ignore: decorator
@inline function classOf(cap: u32): u32 {
  const k = <u32>ctz(cap) - 4;
  return cap >= INITIAL_CAP && popcnt(cap) == 1 && k < CLASSES ? k : CLASSES;
}

/** The class size for at least `need` buckets: a power of two, INITIAL_CAP at least. */
// @ts-ignore: decorator
@inline function classCap(need: u32): u32 {
  return need <= INITIAL_CAP ? INITIAL_CAP : <u32>1 << (32 - clz(need - 1));
}

/** A zeroed bucket array of `cap` buckets. */
function storeNew(cap: u32): usize {
  const k = classOf(cap);
  const bytes = <usize>cap << 2;
  if (k < CLASSES) {
    const e = SPARES + (<usize>k << 3);
    const p = <usize>ldu(e);
    if (p != 0) {
      stu(e, ldu(p));
      stu(e + 4, ldu(e + 4) - <u32>bytes);
      if (k == 0) zeroSmall(p, bytes);
      else memory.fill(p, 0, bytes);
      return p;
    }
  }
  return zalloc(bytes);
}

function storeDrop(p: usize, cap: u32): void {
  const k = classOf(cap);
  const e = SPARES + (<usize>k << 3);
  if (k == CLASSES || ldu(e + 4) + (cap << 2) > SPARE_BYTES) heap.free(p);
  else {
    stu(p, ldu(e));
    stu(e, <u32>p);
    stu(e + 4, ldu(e + 4) + (cap << 2));
  }
}

/** Bytes of heap the sketch's stores hold (for the state-size metric). */
export function sketchHeapBytes(sk: usize): usize {
  return (<usize>ldu(sk + SK_POS + ST_CAP) + <usize>ldu(sk + SK_NEG + ST_CAP)) << 2;
}

/** Makes `st` cover [lo, hi] and returns the bucket array pointer. */
function storeEnsure(st: usize, lo: i32, hi: i32): usize {
  let p = <usize>ldu(st + ST_PTR);
  const cap = ldu(st + ST_CAP);
  if (p == 0) {
    const c = classCap(<u32>(hi - lo + 1));
    p = storeNew(c);
    stu(st + ST_PTR, <u32>p);
    // Centre the first bucket: the next values land on either side of it.
    sti(st + ST_MIN, lo - <i32>((c - <u32>(hi - lo + 1)) >> 1));
    stu(st + ST_CAP, c);
    return p;
  }
  const curLo = ldi(st + ST_MIN);
  const curHi = curLo + <i32>cap - 1;
  if (lo >= curLo && hi <= curHi) return p;
  const newLo = lo < curLo ? lo : curLo;
  const newHi = hi > curHi ? hi : curHi;
  const need = <u32>(newHi - newLo + 1);
  const c = classCap(max<u32>(need, cap << 1));
  // Spare room goes to the side that grew: data tends to keep spreading that way.
  const newMin = lo < curLo ? newHi - <i32>c + 1 : newLo;
  const q = storeNew(c);
  memory.copy(q + ((<usize>(curLo - newMin)) << 2), p, <usize>cap << 2);
  storeDrop(p, cap);
  stu(st + ST_PTR, <u32>q);
  sti(st + ST_MIN, newMin);
  stu(st + ST_CAP, c);
  return q;
}

// @ts-ignore: decorator
@inline function storeAdd(st: usize, index: i32, count: u32): void {
  let p = <usize>ldu(st + ST_PTR);
  let j = index - ldi(st + ST_MIN);
  if (p == 0 || <u32>j >= ldu(st + ST_CAP)) {
    p = storeEnsure(st, index, index);
    j = index - ldi(st + ST_MIN);
  }
  const b = p + (<usize>j << 2);
  store<u32>(b, load<u32>(b) + count);
}

// ─── Inline buckets ───────────────────────────────────────────────────────────
// Four words of the header (inlineAt), each 0 or one bucket: (index + INLINE_BIAS)
// << INLINE_COUNT_BITS | count. Indices of finite doubles lie in [-3264, 131071], so
// biased they take 18 bits. A window of more than INLINE_VALUES values moves them to a
// bucket array: the kernels' fast loops add to arrays only (sketchCounter), and each
// value added inline takes the general loop.
// Words fill in order: the first 0 ends the list.
const INLINE_BIAS: i32 = 4096;
const INLINE_COUNT_BITS: u32 = 14;
const INLINE_COUNT_MASK: u32 = (1 << INLINE_COUNT_BITS) - 1;
/** Values a sketch holds inline at most. */
const INLINE_VALUES: u32 = 8;
const INLINE_N: u32 = 4;
/** Serialized bytes of an inline sketch at most: zeros, the positive store sparse (4 buckets of at most 3 + 1 varint bytes), an empty negative store. */
const INLINE_SERIALIZED: usize = 4 + 8 + INLINE_N * 4 + 8;

/** The header word of inline bucket k (k < INLINE_N): pos ptr, pos min, neg ptr, neg min. */
// @ts-ignore: decorator
@inline function inlineAt(sk: usize, k: u32): usize {
  return sk + SK_POS + (<usize>(k >> 1) * (SK_NEG - SK_POS)) + (<usize>(k & 1) << 2);
}

// @ts-ignore: decorator
@inline function inlineIndex(e: u32): i32 {
  return <i32>(e >> INLINE_COUNT_BITS) - INLINE_BIAS;
}

/** Whether the sketch has no bucket array (inline or empty): both caps are 0. */
// @ts-ignore: decorator
@inline function noArrays(sk: usize): bool {
  return (ldu(sk + SK_POS + ST_CAP) | ldu(sk + SK_NEG + ST_CAP)) == 0;
}

/** Whether the sketch holds inline buckets. */
// @ts-ignore: decorator
@inline function isInline(sk: usize): bool {
  return noArrays(sk) && ldu(sk + SK_POS + ST_PTR) != 0;
}

/**
 * Adds `count` to positive bucket `index` of a sketch without arrays, inline; false,
 * with nothing changed, when that takes a fifth bucket or more than INLINE_VALUES
 * values in all.
 */
function inlineAdd(sk: usize, index: i32, count: u32): bool {
  const tag = <u32>(index + INLINE_BIAS);
  let total = count;
  let at: usize = 0; // the word of the bucket, or the first empty one
  for (let k: u32 = 0; k < INLINE_N; k++) {
    const w = inlineAt(sk, k);
    const e = ldu(w);
    if (e == 0) {
      if (at == 0) at = w;
      break;
    }
    total += e & INLINE_COUNT_MASK;
    if (e >> INLINE_COUNT_BITS == tag) at = w;
  }
  if (at == 0 || total > INLINE_VALUES) return false;
  const e = ldu(at);
  stu(at, e == 0 ? (tag << INLINE_COUNT_BITS) | count : e + count);
  return true;
}

/** The inline words in order of index, from sortInline(). */
const SORTED = memory.data(<i32>INLINE_N * 4);

/** Sorts an inline sketch's words by index into SORTED (insertion: at most four); how many. */
function sortInline(sk: usize): u32 {
  let n: u32 = 0;
  for (; n < INLINE_N; n++) {
    const x = ldu(inlineAt(sk, n));
    if (x == 0) break;
    let i = n;
    while (i > 0 && ldu(SORTED + (<usize>(i - 1) << 2)) > x) {
      stu(SORTED + (<usize>i << 2), ldu(SORTED + (<usize>(i - 1) << 2)));
      i--;
    }
    stu(SORTED + (<usize>i << 2), x);
  }
  return n;
}

/** The k-th word of SORTED. */
// @ts-ignore: decorator
@inline function sorted(k: u32): u32 {
  return ldu(SORTED + (<usize>k << 2));
}

/** Moves an inline sketch's buckets into a bucket array (a no-op for any other sketch). */
function toArrays(sk: usize): void {
  if (!isInline(sk)) return;
  const n = sortInline(sk);
  zeroSmall(sk + SK_POS, 24);
  const st = sk + SK_POS;
  const p = storeEnsure(st, inlineIndex(sorted(0)), inlineIndex(sorted(n - 1)));
  const min = ldi(st + ST_MIN);
  for (let k: u32 = 0; k < n; k++) {
    const b = p + (<usize>(inlineIndex(sorted(k)) - min) << 2);
    store<u32>(b, load<u32>(b) + (sorted(k) & INLINE_COUNT_MASK));
  }
}

/** Adds `count` to positive bucket `index`: inline while that can be, else to the bucket array. */
function addPositive(sk: usize, index: i32, count: u32): void {
  if (noArrays(sk)) {
    if (inlineAdd(sk, index, count)) return;
    toArrays(sk);
  }
  storeAdd(sk + SK_POS, index, count);
}

export function sketchAdd(sk: usize, x: f64): void {
  if (x > 0) addPositive(sk, bucketIndex(x), 1);
  else if (x < 0) {
    toArrays(sk);
    storeAdd(sk + SK_NEG, bucketIndex(-x), 1);
  } else stu(sk + SK_ZEROS, ldu(sk + SK_ZEROS) + 1);
}

/**
 * The address of the counter that x would increment, or 0 when the kernel's fast path
 * should leave x to sketchAdd: x is NaN, infinite or subnormal, or its bucket is not
 * in the store yet. Changes nothing: a kernel's call-free fast path asks first, then
 * commits. One unsigned compare tests "normal and finite" (NaN x fails it too), and
 * a store never allocated (or an inline sketch's) has cap 0, so its range test fails
 * without a pointer test. An inline sketch's values all take the general loop: at
 * most INLINE_VALUES of them, in four buckets at most.
 */
// @ts-ignore: decorator
@inline export function sketchCounter(sk: usize, x: f64): usize {
  const bits = reinterpret<u64>(x);
  const mag = bits & 0x7fffffffffffffff;
  if (mag - 0x0010000000000000 >= 0x7fe0000000000000) return mag == 0 ? sk + SK_ZEROS : 0;
  const st = sk + SK_POS + (<usize>(bits >> 63) * (SK_NEG - SK_POS));
  const j = <u32>(<i32>(mag >> 46) - ldi(st + ST_MIN));
  return j < ldu(st + ST_CAP) ? <usize>ldu(st + ST_PTR) + (<usize>j << 2) : 0;
}

function storeMerge(dst: usize, src: usize): void {
  const sp = <usize>ldu(src + ST_PTR);
  if (sp == 0) return;
  const smin = ldi(src + ST_MIN);
  const scap = ldu(src + ST_CAP);
  // Only the occupied range of src matters.
  let lo: i32 = -1, hi: i32 = -1;
  for (let j: u32 = 0; j < scap; j++) {
    if (load<u32>(sp + (<usize>j << 2))) { if (lo < 0) lo = <i32>j; hi = <i32>j; }
  }
  if (lo < 0) return;
  const dp = storeEnsure(dst, smin + lo, smin + hi);
  const off = smin - ldi(dst + ST_MIN);
  for (let j = lo; j <= hi; j++) {
    const d = dp + (<usize>(j + off) << 2);
    store<u32>(d, load<u32>(d) + load<u32>(sp + (<usize>j << 2)));
  }
}

export function sketchMerge(dst: usize, src: usize): void {
  stu(dst + SK_ZEROS, ldu(dst + SK_ZEROS) + ldu(src + SK_ZEROS));
  if (isInline(src)) {
    for (let k: u32 = 0; k < INLINE_N; k++) {
      const e = ldu(inlineAt(src, k));
      if (e == 0) break;
      addPositive(dst, inlineIndex(e), e & INLINE_COUNT_MASK);
    }
    return;
  }
  if (noArrays(src)) return;
  toArrays(dst);
  storeMerge(dst + SK_POS, src + SK_POS);
  storeMerge(dst + SK_NEG, src + SK_NEG);
}

// Quantile results of the last sketchQuantiles call (three at once: one pass).
export let q0: f64 = 0;
export let q1: f64 = 0;
export let q2: f64 = 0;

/**
 * The values of rank qa·(n-1), qb·(n-1), qc·(n-1) (qa <= qb <= qc) among `n` values:
 * the bucket holding the element of rank floor(q·(n-1)), as DDSketch does.
 */
export function sketchQuantiles(sk: usize, n: f64, qa: f64, qb: f64, qc: f64): void {
  q0 = q1 = q2 = NaN;
  if (n <= 0) return;
  const ra = Math.floor(qa * (n - 1)), rb = Math.floor(qb * (n - 1)), rc = Math.floor(qc * (n - 1));
  let want: i32 = 0; // how many of the three ranks are answered
  let seen: f64 = 0;
  if (isInline(sk)) {
    // Zeros, then the positive buckets in order of index.
    const z = ldu(sk + SK_ZEROS);
    if (z) {
      seen += <f64>z;
      want = answer(want, seen, ra, rb, rc, 0);
      if (want == 3) return;
    }
    const m = sortInline(sk);
    for (let k: u32 = 0; k < m; k++) {
      seen += <f64>(sorted(k) & INLINE_COUNT_MASK);
      want = answer(want, seen, ra, rb, rc, bucketValue(inlineIndex(sorted(k))));
      if (want == 3) return;
    }
    return;
  }
  // Negative values, most negative first: the negative store from its highest index down.
  const np = <usize>ldu(sk + SK_NEG + ST_PTR);
  if (np) {
    const nmin = ldi(sk + SK_NEG + ST_MIN);
    for (let j = <i32>ldu(sk + SK_NEG + ST_CAP) - 1; j >= 0; j--) {
      const c = load<u32>(np + (<usize>j << 2));
      if (c == 0) continue;
      seen += <f64>c;
      want = answer(want, seen, ra, rb, rc, -bucketValue(nmin + j));
      if (want == 3) return;
    }
  }
  const z = ldu(sk + SK_ZEROS);
  if (z) {
    seen += <f64>z;
    want = answer(want, seen, ra, rb, rc, 0);
    if (want == 3) return;
  }
  const pp = <usize>ldu(sk + SK_POS + ST_PTR);
  if (pp) {
    const pmin = ldi(sk + SK_POS + ST_MIN);
    const cap = <i32>ldu(sk + SK_POS + ST_CAP);
    // Blocks of 16 buckets that hold none of the ranks still wanted are skipped on
    // their sum (most of a store is empty or below the median). Sums of u32 counts
    // stay exact while the window holds fewer than 2^32 values.
    const skip = n < 4294967296.0;
    let j = 0;
    while (j < cap) {
      if (skip) {
        const r = want == 0 ? ra : want == 1 ? rb : rc;
        while (j + 16 <= cap) {
          const q = pp + (<usize>j << 2);
          const v = i32x4.add(i32x4.add(v128.load(q), v128.load(q, 16)), i32x4.add(v128.load(q, 32), v128.load(q, 48)));
          const block = <f64>(<u32>i32x4.extract_lane(v, 0) + <u32>i32x4.extract_lane(v, 1) + <u32>i32x4.extract_lane(v, 2) + <u32>i32x4.extract_lane(v, 3));
          if (seen + block > r) break; // the block holds rank r
          seen += block;
          j += 16;
        }
      }
      // Bucket by bucket through one block (or the tail).
      const stop = min(cap, j + 16);
      for (; j < stop; j++) {
        const c = load<u32>(pp + (<usize>j << 2));
        if (c == 0) continue;
        seen += <f64>c;
        want = answer(want, seen, ra, rb, rc, bucketValue(pmin + j));
        if (want == 3) return;
      }
    }
  }
}

// @ts-ignore: decorator
@inline function answer(want: i32, seen: f64, ra: f64, rb: f64, rc: f64, v: f64): i32 {
  // `seen` elements have ranks 0..seen-1, so this bucket holds rank r iff r < seen.
  if (want == 0 && ra < seen) { q0 = v; want = 1; }
  if (want == 1 && rb < seen) { q1 = v; want = 2; }
  if (want == 2 && rc < seen) { q2 = v; want = 3; }
  return want;
}

/** Upper bound of the serialized size in bytes of the sketch (see layout.ts, slot serialization). */
export function sketchSerializedBytes(sk: usize): usize {
  if (isInline(sk)) return INLINE_SERIALIZED;
  return 4 + 8 + (<usize>ldu(sk + SK_POS + ST_CAP) << 2) + 8 + (<usize>ldu(sk + SK_NEG + ST_CAP) << 2);
}

// Serialized stores (layout.ts, slot serialization). A store is its occupied bucket
// range: i32 lo (its first index), u32 n (buckets from lo to the last occupied one),
// then, in format 1 and in format 2 without SPARSE in n, the n counts as u32 (dense);
// in format 2 with SPARSE, only the occupied buckets, each as two LEB128 varints: the
// empty buckets skipped since the last one, then its count, up to the last (n - 1).
// Format 2 writes whichever of the two is shorter: a session of a few values spread
// over some hundred buckets takes a few bytes per value, not four per bucket.
const SPARSE: u32 = 0x80000000;

/** Bytes of v as a LEB128 varint. */
// @ts-ignore: decorator
@inline function varLen(v: u32): usize {
  return v < 0x80 ? 1 : v < 0x4000 ? 2 : v < 0x200000 ? 3 : v < 0x10000000 ? 4 : 5;
}

/** Writes v as a LEB128 varint at q; the end. */
// @ts-ignore: decorator
@inline function varPut(q: usize, v: u32): usize {
  while (v >= 0x80) {
    store<u8>(q++, <u8>(v | 0x80));
    v >>= 7;
  }
  store<u8>(q, <u8>v);
  return q + 1;
}

// varGet's results: the value read and the end of its bytes (0: malformed or past `end`).
let varValue: u32 = 0;
let varEnd: usize = 0;

/** Reads a LEB128 varint of at most 5 bytes from [q, end) into varValue/varEnd. */
function varGet(q: usize, end: usize): void {
  let v: u32 = 0;
  for (let k: u32 = 0; k < 5; k++) {
    if (q >= end) break;
    const b = <u32>load<u8>(q++);
    if (k == 4 && b > 0x0f) break; // past 32 bits
    v |= (b & 0x7f) << (7 * k);
    if (b < 0x80) {
      varValue = v;
      varEnd = q;
      return;
    }
  }
  varEnd = 0;
}

/** Writes the occupied bucket range of a store (above), dense or sparse, whichever is shorter. */
function storeWrite(st: usize, out: usize): usize {
  const p = <usize>ldu(st + ST_PTR);
  const cap = ldu(st + ST_CAP);
  let lo: u32 = 0, hi: u32 = 0; // occupied: [lo, hi)
  if (p) {
    while (lo < cap && load<u32>(p + (<usize>lo << 2)) == 0) lo++;
    hi = cap;
    while (hi > lo && load<u32>(p + (<usize>(hi - 1) << 2)) == 0) hi--;
  }
  const n = hi - lo;
  sti(out, n ? ldi(st + ST_MIN) + <i32>lo : 0);
  if (n == 0) {
    stu(out + 4, 0);
    return out + 8;
  }
  const dense = <usize>n << 2;
  let sparse: usize = 0;
  let last = lo; // the bucket after the last occupied one
  for (let j = lo; j < hi && sparse < dense; j++) {
    const c = load<u32>(p + (<usize>j << 2));
    if (c == 0) continue;
    sparse += varLen(j - last) + varLen(c);
    last = j + 1;
  }
  if (sparse >= dense) {
    stu(out + 4, n);
    copyWords(out + 8, p + (<usize>lo << 2), dense);
    return out + 8 + dense;
  }
  stu(out + 4, n | SPARSE);
  let q = out + 8;
  last = lo;
  for (let j = lo; j < hi; j++) {
    const c = load<u32>(p + (<usize>j << 2));
    if (c == 0) continue;
    q = varPut(varPut(q, j - last), c);
    last = j + 1;
  }
  return q;
}

/** Reads a store (checked by storeCheck) of serialization format `version` into `st`; the end of its bytes. */
function storeRead(st: usize, inp: usize, version: u32): usize {
  const lo = ldi(inp);
  const nf = ldu(inp + 4);
  const n = version >= 2 ? nf & ~SPARSE : nf;
  if (n == 0) return inp + 8;
  stu(st + ST_MIN, <u32>lo);
  stu(st + ST_CAP, n);
  if (version < 2 || (nf & SPARSE) == 0) {
    const p = heap.alloc(<usize>n << 2);
    memory.copy(p, inp + 8, <usize>n << 2);
    stu(st + ST_PTR, <u32>p);
    return inp + 8 + (<usize>n << 2);
  }
  const p = zalloc(<usize>n << 2);
  stu(st + ST_PTR, <u32>p);
  let q = inp + 8;
  let j: u32 = 0;
  const end = <usize>u32.MAX_VALUE;
  while (true) {
    varGet(q, end);
    j += varValue;
    varGet(varEnd, end);
    q = varEnd;
    store<u32>(p + (<usize>j << 2), varValue);
    if (j == n - 1) return q;
    j++;
  }
  return q;
}

/**
 * Bytes the store at `inp` occupies if it fits in [inp, end) and is well formed, else
 * 0: its indices within the range a double's buckets take, and, sparse, each varint
 * whole and each bucket inside [0, n), the last one at n - 1.
 */
function storeCheck(inp: usize, end: usize, version: u32): usize {
  if (inp + 8 > end) return 0;
  const nf = ldu(inp + 4);
  const sparse = version >= 2 && (nf & SPARSE) != 0;
  const n = <usize>(version >= 2 ? nf & ~SPARSE : nf);
  const lo = <i64>ldi(inp);
  // Bucket indices of finite doubles (bits >> 46, subnormals shifted down by 4096) stay within ±2^18.
  if (lo + <i64>n > (1 << 18) || lo < -(1 << 18)) return 0;
  if (!sparse) return n > (end - inp - 8) >> 2 ? 0 : 8 + (n << 2);
  if (n == 0) return 0;
  let q = inp + 8;
  let j: usize = 0;
  while (true) {
    varGet(q, end);
    if (varEnd == 0) return 0;
    j += <usize>varValue;
    varGet(varEnd, end);
    if (varEnd == 0 || j >= n) return 0;
    q = varEnd;
    if (j == n - 1) return q - inp;
    j++;
  }
  return 0;
}

/** Writes the sketch at `out` (serialization format 2); returns the end pointer. */
export function sketchWrite(sk: usize, out: usize): usize {
  stu(out, ldu(sk + SK_ZEROS));
  if (isInline(sk)) return storeWrite(sk + SK_NEG, inlineWrite(sk, out + 4));
  return storeWrite(sk + SK_NEG, storeWrite(sk + SK_POS, out + 4));
}

/**
 * Writes an inline sketch's positive buckets as storeWrite() writes the same buckets
 * from an array: sparse, which is always the shorter here. Each bucket takes a count
 * of at most INLINE_VALUES (1 varint byte) and a skip g below 2^21 (at most 3 bytes,
 * 1 for g < 128) against 4·(g + 1) bytes dense.
 */
function inlineWrite(sk: usize, out: usize): usize {
  const n = sortInline(sk);
  const lo = inlineIndex(sorted(0)), hi = inlineIndex(sorted(n - 1));
  sti(out, lo);
  stu(out + 4, <u32>(hi - lo + 1) | SPARSE);
  let q = out + 8;
  let last = lo;
  for (let k: u32 = 0; k < n; k++) {
    q = varPut(varPut(q, <u32>(inlineIndex(sorted(k)) - last)), sorted(k) & INLINE_COUNT_MASK);
    last = inlineIndex(sorted(k)) + 1;
  }
  return q;
}

/** Bytes a serialized sketch of format `version` at `inp` occupies if it fits in `avail` bytes and is well formed, else 0. */
export function sketchCheck(inp: usize, avail: usize, version: u32): usize {
  if (avail < 4) return 0;
  const end = inp + avail;
  const pos = storeCheck(inp + 4, end, version);
  if (pos == 0) return 0;
  const neg = storeCheck(inp + 4 + pos, end, version);
  return neg == 0 ? 0 : 4 + pos + neg;
}

/** Reads a sketch of format `version`, checked by sketchCheck, into a freshly initialised header. */
export function sketchRead(sk: usize, inp: usize, version: u32): usize {
  sketchInit(sk);
  stu(sk + SK_ZEROS, ldu(inp));
  return storeRead(sk + SK_NEG, storeRead(sk + SK_POS, inp + 4, version), version);
}
