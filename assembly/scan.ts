// JSON record scanner: validates each record exactly as `JSON.parse` would and
// extracts the values at a few dotted paths, without building any object.
//
// Why: `JSON.parse` of a ~250-byte event costs ~1000 ns, fifty times the
// aggregation itself. The scanner reads raw UTF-8 bytes once, left to right,
// with an explicit stack (no recursion) and a SIMD skip over string bodies.
//
// Agreement with `JSON.parse` (the TypeScript side decodes lines as UTF-8 with
// replacement characters before parsing, so invalid UTF-8 never throws there):
//   - RFC 8259 grammar; only ' ', \t, \n, \r are white space; a BOM is an error.
//   - Bytes >= 0x80 are accepted inside strings and rejected outside them
//     (outside strings JSON.parse would see a non-ASCII character or U+FFFD).
//   - Object keys are compared after unescaping; duplicate keys: the last wins,
//     at every level (a repeated key first clears every path below it).
//   - No depth limit (JSON.parse has none either): the container stack grows on
//     the heap, 8 bytes per level, so at most 8 × the record's length.

// ─── Local memory helpers ─────────────────────────────────────────────────────
// @ts-ignore: decorator
@inline function ld8(p: usize): u32 { return <u32>load<u8>(p); }
// @ts-ignore: decorator
@inline function ld32(p: usize): u32 { return load<u32>(p); }
// @ts-ignore: decorator
@inline function ld64(p: usize): u64 { return load<u64>(p); }
// @ts-ignore: decorator
@inline function st8(p: usize, v: u32): void { store<u8>(p, <u8>v); }
// @ts-ignore: decorator
@inline function st32(p: usize, v: u32): void { store<u32>(p, v); }
// @ts-ignore: decorator
@inline function st64(p: usize, v: u64): void { store<u64>(p, v); }
// @ts-ignore: decorator
@inline function stf64(p: usize, v: f64): void { store<f64>(p, v); }

// ─── Record status (one u8 per record, written to `status`) ──────────────────
export const STATUS_OK: u8 = 0; // a JSON object
export const STATUS_MALFORMED: u8 = 1; // JSON.parse throws, or valid JSON that is not an object
export const STATUS_BLANK: u8 = 2; // only JSON white space

// ─── Record bounds (input, n pairs) ───────────────────────────────────────────
//
//   ┌───────────┬───────────┐
//   │ start u32 │  end u32  │   byte offsets relative to `bytes`; record = [start, end)
//   └───────────┴───────────┘
export const BOUND_BYTES: usize = 8;

// ─── Field record (output, n × P of them, record-major) ──────────────────────
//
//    0      1       2          4           8          12          16
//   ┌──────┬───────┬──────────┬───────────┬──────────┬───────────┬─────────────┐
//   │ kind │ flags │ reserved │ start u32 │ end u32  │ reserved  │   num f64   │
//   │  u8  │  u8   │ u16 (0)  │           │          │  u32 (0)  │             │
//   └──────┴───────┴──────────┴───────────┴──────────┴───────────┴─────────────┘
//   start/end: the value's token [start, end) relative to `bytes` (strings
//   include both quotes). num: the value when kind = NUMBER and NUM_EXACT is set,
//   otherwise NaN. A MISSING field is all zero except num = NaN.
export const FIELD_BYTES: usize = 24;
export const F_KIND: usize = 0;
export const F_FLAGS: usize = 1;
export const F_START: usize = 4;
export const F_END: usize = 8;
export const F_NUM: usize = 16;

export const KIND_MISSING: u8 = 0;
export const KIND_NUMBER: u8 = 1;
export const KIND_STRING: u8 = 2;
export const KIND_TRUE: u8 = 3;
export const KIND_FALSE: u8 = 4;
export const KIND_NULL: u8 = 5;
export const KIND_OBJECT: u8 = 6;
export const KIND_ARRAY: u8 = 7;

export const FLAG_NUM_EXACT: u8 = 1; // num is exactly the double JSON.parse gives
export const FLAG_STR_ESCAPED: u8 = 2; // the string body contains a backslash

// ─── Path spec (input, built by compilePathSpec on the TypeScript side) ──────
//
// All fields u32 little-endian; every offset is in bytes from the start of the
// spec; nodes and tables are 4-byte aligned.
//
//   header (24 B)
//   ┌───────┬─────────┬───┬─────────┬────────────┬──────────┐
//   │ magic │ version │ P │ rootOff │ aliasCount │ aliasOff │
//   └───────┴─────────┴───┴─────────┴────────────┴──────────┘
//   node (24 B + 24 B per child): one object level of the path trie
//   ┌────────────┬───────┬───────────┬─────────┬───────────┬─────────┬───────────────────────┐
//   │ childCount │ flags │ descCount │ descOff │ hashShift │ hashOff │ child[childCount] ... │
//   └────────────┴───────┴───────────┴─────────┴───────────┴─────────┴───────────────────────┘
//   child (24 B): one key of that level
//   ┌────────┬────────┬─────────┬─────────┬──────────────────┐
//   │ keyOff │ keyLen │ pathIdx │ nodeOff │ keyHead u64      │
//   └────────┴────────┴─────────┴─────────┴──────────────────┘
//   pathIdx NO_PATH: no path ends at this key; nodeOff 0: no path goes deeper;
//   keyHead: the key's first 8 bytes, zero-padded (one compare for short keys).
//   hash table: u16[1 << (64 - hashShift)] at hashOff; entry = child index + 1,
//   0 = no child. Slot of a key = keyHash(key) >> hashShift, where keyHash is
//   (head ^ rotl(tail, 29) ^ len * HASH_K1) * HASH_K2 (mod 2^64), head = the
//   first 8 bytes zero-padded, tail = the last 8 bytes if len > 8 else 0 (all
//   little-endian). compilePathSpec picks the smallest table in which the
//   children do not collide; hashShift 0 = no table (linear search).
//   desc table: descCount u32 path indices, every path ending strictly below the
//   node (cleared when the key leading to the node repeats: the last one wins).
//   alias table: aliasCount pairs (dst u32, src u32): a path listed twice is
//   scanned once (src) and copied to dst after each record.
//   key bytes: WTF-8 (UTF-8, lone surrogates as 3-byte sequences).
export const SPEC_MAGIC: u32 = 0x52494557; // "WEIR"
export const SPEC_VERSION: u32 = 1;
const H_P: usize = 8;
const H_ROOT: usize = 12;
const H_ALIAS_COUNT: usize = 16;
const H_ALIAS_OFF: usize = 20;
const N_COUNT: usize = 0;
const N_FLAGS: usize = 4;
const N_DESC_COUNT: usize = 8;
const N_DESC_OFF: usize = 12;
const N_HASH_SHIFT: usize = 16;
const N_HASH_OFF: usize = 20;
const N_CHILDREN: usize = 24;
const HASH_K1: u64 = 0x9e3779b97f4a7c15;
const HASH_K2: u64 = 0xff51afd7ed558ccd;
const C_KEY_OFF: usize = 0;
const C_KEY_LEN: usize = 4;
const C_PATH: usize = 8;
const C_NODE: usize = 12;
const C_HEAD: usize = 16;
const CHILD_BYTES: usize = 24;
export const NO_PATH: u32 = 0xffffffff;
/** Node flag: some key of this level holds U+FFFD or a lone surrogate, so keys
 *  must be decoded the way Node decodes the line (invalid UTF-8 → U+FFFD) before
 *  comparing; raw bytes are enough otherwise (see findChild). */
export const NODE_NORMALIZE: u32 = 1;

// ─── Container stack (scratch, grows on the heap, kept between calls) ────────
//
//   frame (8 B)
//   ┌────────────────────────────┬──────────────┐
//   │ nodeOff | FRAME_ARRAY bit  │ leaf ptr u32 │   leaf: field record whose `end`
//   └────────────────────────────┴──────────────┘   is set when the container closes
const FRAME_BYTES: usize = 8;
const FRAME_ARRAY: u32 = 1; // nodeOff is 4-aligned, so bit 0 is free
let stack: usize = 0;
let stackCap: u32 = 0; // frames

// Key scratch for unescaping and normalizing keys (slow path only).
let scratch: usize = 0;
let scratchCap: usize = 0;

// Results of the token scanners (wasm has one return value).
let gEsc: bool = false; // scanString: body had a backslash
let gNum: f64 = 0; // scanNumber: the value, if gExact
let gExact: bool = false;

// ─── Characters ───────────────────────────────────────────────────────────────
const C_SPACE: u32 = 0x20;
const C_QUOTE: u32 = 0x22;
const C_PLUS: u32 = 0x2b;
const C_COMMA: u32 = 0x2c;
const C_MINUS: u32 = 0x2d;
const C_DOT: u32 = 0x2e;
const C_0: u32 = 0x30;
const C_COLON: u32 = 0x3a;
const C_BACKSLASH: u32 = 0x5c;
const C_RBRACKET: u32 = 0x5d;
const C_LOWER_E: u32 = 0x65;
const C_LOWER_F: u32 = 0x66;
const C_LOWER_N: u32 = 0x6e;
const C_LOWER_T: u32 = 0x74;
const C_LOWER_U: u32 = 0x75;
const C_LBRACE: u32 = 0x7b;
const C_RBRACE: u32 = 0x7d;
const LIT_TRUE: u32 = 0x65757274; // "true" little-endian
const LIT_NULL: u32 = 0x6c6c756e; // "null"
const LIT_FALS: u32 = 0x736c6166; // "fals" (+ 'e')
/** Bit c set for the JSON white space characters c <= 0x20. */
const WS_BITS: u64 = (1 << 0x20) | (1 << 0x0d) | (1 << 0x0a) | (1 << 0x09);

// Exact powers of ten: 10^0..10^22 are exact doubles (Clinger's fast path).
const POW10: usize = memory.data<f64>([
  1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11,
  1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
]);
const IPOW10: usize = memory.data<u64>([
  1, 10, 100, 1000, 10000, 100000, 1000000, 10000000, 100000000, 1000000000,
  10000000000, 100000000000, 1000000000000, 10000000000000, 100000000000000,
  1000000000000000,
]);
const TWO_53: u64 = 9007199254740992;
const MAX_DIGITS: i32 = 19; // fits u64 without overflow
const MAX_EXP_ACC: i32 = 100000; // exponent accumulator saturates here

// ─── Small scanners ───────────────────────────────────────────────────────────

// @ts-ignore: decorator
@inline function skipWs(p: usize, end: usize): usize {
  while (p < end) {
    const c = ld8(p);
    if (c > C_SPACE || ((WS_BITS >> <u64>c) & 1) == 0) break;
    p++;
  }
  return p;
}

// @ts-ignore: decorator
@inline function isHex(c: u32): bool {
  return c - C_0 < 10 || (c | 0x20) - 0x61 < 6;
}

// @ts-ignore: decorator
@inline function hexVal(c: u32): u32 {
  return c - C_0 < 10 ? c - C_0 : (c | 0x20) - 0x61 + 10;
}

/**
 * Scans a string body starting just after the opening quote. Returns the
 * position after the closing quote, or 0 if the string is invalid (unterminated,
 * a raw control character, a bad escape). Sets gEsc when the body has an escape.
 */
// @ts-ignore: decorator
@inline function scanString(p: usize, end: usize): usize {
  let esc = false;
  const quote = i8x16.splat(<i8>C_QUOTE);
  const bslash = i8x16.splat(<i8>C_BACKSLASH);
  const ctlBits = i8x16.splat(<i8>0xe0); // c < 0x20 iff (c & 0xe0) == 0: cheaper than lt_u
  const zero = i8x16.splat(0);
  while (true) {
    // Find the next '"', '\\' or control character: 16 bytes at a time while a
    // whole vector lies inside the record, then byte by byte.
    if (p + 16 <= end) {
      const v = v128.load(p);
      const m = v128.or(v128.or(i8x16.eq(v, quote), i8x16.eq(v, bslash)), i8x16.eq(v128.and(v, ctlBits), zero));
      const bits = i8x16.bitmask(m);
      if (bits == 0) { p += 16; continue; }
      p += <usize>ctz(bits);
    } else {
      if (p >= end) return 0;
      const c = ld8(p);
      if (c != C_QUOTE && c != C_BACKSLASH && c >= C_SPACE) { p++; continue; }
    }
    const c = ld8(p);
    if (c == C_QUOTE) { gEsc = esc; return p + 1; }
    if (c != C_BACKSLASH) return 0; // raw control character
    esc = true;
    if (p + 1 >= end) return 0;
    const e = ld8(p + 1);
    if (e == C_LOWER_U) {
      if (p + 6 > end) return 0;
      if (!(isHex(ld8(p + 2)) && isHex(ld8(p + 3)) && isHex(ld8(p + 4)) && isHex(ld8(p + 5)))) return 0;
      p += 6;
    } else if (
      e == C_QUOTE || e == C_BACKSLASH || e == 0x2f || e == 0x62 ||
      e == C_LOWER_F || e == C_LOWER_N || e == 0x72 || e == C_LOWER_T
    ) {
      p += 2;
    } else {
      return 0;
    }
  }
}

// SWAR digit runs: 8 bytes at a time (simdjson's eight-digit tricks).
const ONES_30: u64 = 0x3030303030303030;
const ONES_06: u64 = 0x0606060606060606;
const HI_NIBBLES: u64 = 0xf0f0f0f0f0f0f0f0;
const ONES_33: u64 = 0x3333333333333333;

/**
 * Number of leading ASCII digits in the 8 bytes of v (first byte lowest), 0-8.
 * A byte is a digit iff its high nibble is 3 and so is the high nibble of byte+6.
 * (Adding 6 can carry only out of a byte >= 0xfa, a non-digit; the carry spoils
 * later bytes only, which are not counted.)
 */
// @ts-ignore: decorator
@inline function leadingDigits(v: u64): u32 {
  const t = (v & HI_NIBBLES) | (((v + ONES_06) & HI_NIBBLES) >> 4);
  return <u32>ctz(t ^ ONES_33) >> 3;
}

/** Value of the first n (1-8) digits of v: the digits move to the top bytes, zeros fill in. */
// @ts-ignore: decorator
@inline function digitsValue(v: u64, n: u32): u64 {
  let x = (v - ONES_30) << (<u64>(8 - n) << 3);
  x = x * 10 + (x >> 8);
  return (((x & 0x000000ff000000ff) * 0x000f424000000064) + (((x >> 16) & 0x000000ff000000ff) * 0x0000271000000001)) >> 32;
}

/**
 * Scans a digit run at p (at least one digit already checked at p) and folds
 * the digits into gW/gNd; sets gMany when more than MAX_DIGITS were seen.
 * Returns the position after the run.
 */
let gW: u64 = 0; // digits so far, as an integer
let gNd: i32 = 0; // digits folded into gW (leading zeros included)
let gMany: bool = false; // more than MAX_DIGITS digits: not exact
// @ts-ignore: decorator
@inline function digitRun(p: usize, end: usize): usize {
  while (p + 8 <= end) {
    const v = ld64(p);
    const n = leadingDigits(v);
    if (n == 0) return p;
    if (gNd + <i32>n <= MAX_DIGITS) {
      gW = gW * load<u64>(IPOW10 + (<usize>n << 3)) + digitsValue(v, n);
      gNd += <i32>n;
    } else {
      gMany = true;
    }
    p += <usize>n;
    if (n < 8) return p;
  }
  while (p < end) {
    const d = ld8(p) - C_0;
    if (d >= 10) break;
    if (gNd < MAX_DIGITS) { gW = gW * 10 + <u64>d; gNd++; } else { gMany = true; }
    p++;
  }
  return p;
}

/**
 * Scans a number token at p (first byte is '-' or a digit) by the JSON grammar.
 * Returns the position after it, or 0 if it is not a JSON number. When `want`,
 * sets gExact and gNum when the value can be computed exactly with one rounding
 * (Clinger): the digits as an integer at most 2^53 and a power of ten that is an
 * exact double.
 */
// @ts-ignore: decorator
@inline function scanNumber(p: usize, end: usize, want: bool): usize {
  let neg = false;
  let c = ld8(p);
  if (c == C_MINUS) {
    neg = true;
    p++;
    if (p >= end) return 0;
    c = ld8(p);
  }
  gW = 0;
  gNd = 0;
  gMany = false;
  let e10: i32 = 0; // decimal exponent of gW
  if (c == C_0) {
    p++;
  } else if (c - 0x31 < 9) {
    p = digitRun(p, end);
  } else {
    return 0;
  }
  if (p < end && ld8(p) == C_DOT) {
    p++;
    if (p >= end || ld8(p) - C_0 >= 10) return 0;
    const q = digitRun(p, end);
    e10 = -<i32>(q - p);
    p = q;
  }
  if (p < end && (ld8(p) | 0x20) == C_LOWER_E) {
    p++;
    if (p >= end) return 0;
    c = ld8(p);
    let eneg = false;
    if (c == C_PLUS || c == C_MINUS) {
      eneg = c == C_MINUS;
      p++;
      if (p >= end) return 0;
      c = ld8(p);
    }
    if (c - C_0 >= 10) return 0;
    let x: i32 = 0;
    do {
      if (x < MAX_EXP_ACC) x = x * 10 + <i32>(c - C_0);
      p++;
      if (p >= end) break;
      c = ld8(p);
    } while (c - C_0 < 10);
    e10 += eneg ? -x : x;
  }
  if (!want) return p;
  // Exact conversion.
  const w = gW;
  gExact = false;
  if (gMany) return p;
  if (w == 0) {
    gExact = true;
    gNum = neg ? -0.0 : 0.0;
  } else if (w <= TWO_53) {
    if (e10 >= 0 && e10 <= 22) {
      gExact = true;
      gNum = <f64>w * load<f64>(POW10 + (<usize>e10 << 3));
    } else if (e10 < 0 && e10 >= -22) {
      gExact = true;
      gNum = <f64>w / load<f64>(POW10 + (<usize>(-e10) << 3));
    } else if (e10 > 22 && e10 <= 22 + 15) {
      // w * 10^(e10-22) may still be an exact integer <= 2^53: then one multiply.
      const k = load<u64>(IPOW10 + (<usize>(e10 - 22) << 3));
      if (w <= TWO_53 / k) {
        gExact = true;
        gNum = <f64>(w * k) * 1e22;
      }
    }
    if (neg) gNum = -gNum;
  }
  return p;
}

// @ts-ignore: decorator
@inline function clearField(f: usize): void {
  st64(f, 0);
  st64(f + 8, 0);
  stf64(f + F_NUM, NaN);
}

// @ts-ignore: decorator
@inline function setField(f: usize, kind: u8, flags: u8, start: u32, end: u32, num: f64): void {
  st32(f, <u32>kind | (<u32>flags << 8));
  st32(f + F_START, start);
  st32(f + F_END, end);
  st32(f + 12, 0);
  stf64(f + F_NUM, num);
}

// @ts-ignore: decorator
@inline function bytesEq(a: usize, b: usize, len: usize): bool {
  let i: usize = 0;
  while (i + 8 <= len) {
    if (ld64(a + i) != ld64(b + i)) return false;
    i += 8;
  }
  while (i < len) {
    if (ld8(a + i) != ld8(b + i)) return false;
    i++;
  }
  return true;
}

function ensureStack(frames: u32): void {
  if (frames <= stackCap) return;
  let cap = stackCap ? stackCap : 64;
  while (cap < frames) cap <<= 1;
  stack = stack ? heap.realloc(stack, <usize>cap * FRAME_BYTES) : heap.alloc(<usize>cap * FRAME_BYTES);
  stackCap = cap;
}

function ensureScratch(bytes: usize): void {
  if (bytes <= scratchCap) return;
  let cap = scratchCap ? scratchCap : 256;
  while (cap < bytes) cap <<= 1;
  if (scratch) heap.free(scratch);
  scratch = heap.alloc(cap);
  scratchCap = cap;
}

// ─── Key decoding (slow path: escaped keys, or levels flagged NODE_NORMALIZE) ─

// @ts-ignore: decorator
@inline function putUtf8(q: usize, cp: u32): usize {
  if (cp < 0x80) {
    st8(q, cp);
    return q + 1;
  }
  if (cp < 0x800) {
    st8(q, 0xc0 | (cp >> 6));
    st8(q + 1, 0x80 | (cp & 0x3f));
    return q + 2;
  }
  if (cp < 0x10000) { // includes lone surrogates: WTF-8
    st8(q, 0xe0 | (cp >> 12));
    st8(q + 1, 0x80 | ((cp >> 6) & 0x3f));
    st8(q + 2, 0x80 | (cp & 0x3f));
    return q + 3;
  }
  st8(q, 0xf0 | (cp >> 18));
  st8(q + 1, 0x80 | ((cp >> 12) & 0x3f));
  st8(q + 2, 0x80 | ((cp >> 6) & 0x3f));
  st8(q + 3, 0x80 | (cp & 0x3f));
  return q + 4;
}

/**
 * Length of the well-formed UTF-8 sequence at p (1 to 4), or 0 if the bytes at p
 * are an ill-formed prefix; then `gBad` holds the length of its maximal subpart,
 * the bytes the WHATWG decoder replaces with one U+FFFD
 * (https://encoding.spec.whatwg.org/#utf-8-decoder).
 */
let gBad: usize = 0;
function utf8Seq(p: usize, end: usize): usize {
  const b0 = ld8(p);
  let need: usize = 0;
  let lo: u32 = 0x80;
  let hi: u32 = 0xbf;
  if (b0 >= 0xc2 && b0 <= 0xdf) need = 1;
  else if (b0 >= 0xe0 && b0 <= 0xef) {
    need = 2;
    if (b0 == 0xe0) lo = 0xa0;
    else if (b0 == 0xed) hi = 0x9f;
  } else if (b0 >= 0xf0 && b0 <= 0xf4) {
    need = 3;
    if (b0 == 0xf0) lo = 0x90;
    else if (b0 == 0xf4) hi = 0x8f;
  } else {
    gBad = 1;
    return 0;
  }
  let i: usize = 1;
  while (i <= need) {
    if (p + i >= end) { gBad = i; return 0; }
    const b = ld8(p + i);
    if (b < lo || b > hi) { gBad = i; return 0; }
    lo = 0x80;
    hi = 0xbf;
    i++;
  }
  return need + 1;
}

/**
 * Writes the key body [k, kEnd) to the scratch as the WTF-8 of the string
 * JSON.parse would produce: escapes decoded (a \uD8xx\uDCxx pair as one code
 * point), and, when `normalize`, raw bytes decoded as Node decodes the line
 * (ill-formed UTF-8 → U+FFFD). Returns the length. The body was validated.
 */
function decodeKey(k: usize, kEnd: usize, normalize: bool): usize {
  ensureScratch((kEnd - k) * 3 + 16);
  let q = scratch;
  let p = k;
  while (p < kEnd) {
    const c = ld8(p);
    if (c == C_BACKSLASH) {
      const e = ld8(p + 1);
      if (e == C_LOWER_U) {
        let u = (hexVal(ld8(p + 2)) << 12) | (hexVal(ld8(p + 3)) << 8) | (hexVal(ld8(p + 4)) << 4) | hexVal(ld8(p + 5));
        p += 6;
        if (u >= 0xd800 && u <= 0xdbff && p + 6 <= kEnd && ld8(p) == C_BACKSLASH && ld8(p + 1) == C_LOWER_U) {
          const v = (hexVal(ld8(p + 2)) << 12) | (hexVal(ld8(p + 3)) << 8) | (hexVal(ld8(p + 4)) << 4) | hexVal(ld8(p + 5));
          if (v >= 0xdc00 && v <= 0xdfff) {
            u = 0x10000 + ((u - 0xd800) << 10) + (v - 0xdc00);
            p += 6;
          }
        }
        q = putUtf8(q, u);
      } else {
        let d: u32 = e; // \" \\ \/
        if (e == 0x62) d = 0x08;
        else if (e == C_LOWER_F) d = 0x0c;
        else if (e == C_LOWER_N) d = 0x0a;
        else if (e == 0x72) d = 0x0d;
        else if (e == C_LOWER_T) d = 0x09;
        st8(q, d);
        q++;
        p += 2;
      }
    } else if (c < 0x80 || !normalize) {
      st8(q, c);
      q++;
      p++;
    } else {
      const n = utf8Seq(p, kEnd);
      if (n) {
        memory.copy(q, p, n);
        q += n;
        p += n;
      } else {
        q = putUtf8(q, 0xfffd);
        p += gBad;
      }
    }
  }
  return q - scratch;
}

/**
 * Finds the child of `node` whose key equals the raw key body [k, kEnd).
 * Returns the child entry's address, or 0. Raw bytes are compared when the key
 * has no escape and the level needs no normalization: a key equal byte for byte
 * to a well-formed segment decodes to the same string. `end` bounds the record.
 */
// @ts-ignore: decorator
@inline function findChild(spec: usize, node: usize, k: usize, kEnd: usize, end: usize, esc: bool): usize {
  const count = ld32(node + N_COUNT);
  let child = node + N_CHILDREN;
  const childEnd = child + <usize>count * CHILD_BYTES;
  let kp = k;
  let klen = <u32>(kEnd - k);
  if (esc || (ld32(node + N_FLAGS) & NODE_NORMALIZE)) {
    klen = <u32>decodeKey(k, kEnd, (ld32(node + N_FLAGS) & NODE_NORMALIZE) != 0);
    kp = scratch;
  } else if (k + 8 <= end) {
    // Fast path: length and the first 8 bytes in one compare each.
    const head = klen >= 8 ? ld64(k) : ld64(k) & ((<u64>1 << (<u64>klen << 3)) - 1);
    const shift = <u64>ld32(node + N_HASH_SHIFT);
    if (shift) {
      // One probe: the children never collide in their table.
      const tail = klen > 8 ? ld64(kEnd - 8) : 0;
      const slot = ((head ^ rotl<u64>(tail, 29) ^ (<u64>klen * HASH_K1)) * HASH_K2) >> shift;
      const e = <usize>load<u16>(spec + <usize>ld32(node + N_HASH_OFF) + (<usize>slot << 1));
      if (e == 0) return 0;
      child += (e - 1) * CHILD_BYTES;
      if (
        ld32(child + C_KEY_LEN) == klen && ld64(child + C_HEAD) == head &&
        (klen <= 8 || bytesEq(spec + ld32(child + C_KEY_OFF) + 8, k + 8, klen - 8))
      ) return child;
      return 0;
    }
    while (child < childEnd) {
      if (
        ld32(child + C_KEY_LEN) == klen && ld64(child + C_HEAD) == head &&
        (klen <= 8 || bytesEq(spec + ld32(child + C_KEY_OFF) + 8, k + 8, klen - 8))
      ) return child;
      child += CHILD_BYTES;
    }
    return 0;
  }
  while (child < childEnd) {
    if (ld32(child + C_KEY_LEN) == klen && bytesEq(spec + ld32(child + C_KEY_OFF), kp, klen)) return child;
    child += CHILD_BYTES;
  }
  return 0;
}

// ─── The record scanner ───────────────────────────────────────────────────────

/**
 * Scans one record [base+s, base+e) against the spec; writes its P fields at
 * `fields` (already cleared to MISSING) and returns its status. On MALFORMED the
 * fields may be partly written: the caller clears them again.
 *
 * One turn of the outer loop reads one member of an object (key, ':', value) or
 * one element of an array; the inner loop after a value reads ',' (next turn) or
 * closes containers. Empty containers are taken like scalars, never pushed.
 */
function scanOne(base: usize, s: usize, e: usize, spec: usize, fields: usize): u8 {
  let p = base + s;
  const end = base + e;
  p = skipWs(p, end);
  if (p == end) return STATUS_BLANK;
  if (ld8(p) != C_LBRACE) return STATUS_MALFORMED;
  p = skipWs(p + 1, end);
  if (p < end && ld8(p) == C_RBRACE) {
    p = skipWs(p + 1, end);
    return p == end ? STATUS_OK : STATUS_MALFORMED;
  }

  if (stackCap == 0) ensureStack(1);
  let top: u32 = ld32(spec + H_ROOT); // frame word of the top container
  st32(stack, top);
  st32(stack + 4, 0);
  let depth: u32 = 1;

  while (true) {
    // p: first byte of a member (object) or element (array), white space skipped.
    let node: u32 = 0; // trie node for the value, if it is an object
    let leaf: usize = 0; // field record for the value, or 0
    if (!(top & FRAME_ARRAY)) {
      if (p >= end || ld8(p) != C_QUOTE) return STATUS_MALFORMED;
      const k = p + 1;
      p = scanString(k, end);
      if (!p) return STATUS_MALFORMED;
      const kEnd = p - 1;
      if (p < end && ld8(p) != C_COLON) p = skipWs(p, end);
      if (p >= end || ld8(p) != C_COLON) return STATUS_MALFORMED;
      p++;
      if (p < end && ld8(p) <= C_SPACE) p = skipWs(p, end);
      if (top) {
        const child = findChild(spec, spec + <usize>top, k, kEnd, end, gEsc);
        if (child) {
          const path = ld32(child + C_PATH);
          if (path != NO_PATH) leaf = fields + <usize>path * FIELD_BYTES;
          node = ld32(child + C_NODE);
          if (node) {
            // A repeated key replaces everything below it: the last one wins.
            const sub = spec + <usize>node;
            const n = ld32(sub + N_DESC_COUNT);
            const tbl = spec + <usize>ld32(sub + N_DESC_OFF);
            for (let i: u32 = 0; i < n; i++) {
              clearField(fields + <usize>ld32(tbl + (<usize>i << 2)) * FIELD_BYTES);
            }
          }
        }
      }
    }

    // The value.
    if (p >= end) return STATUS_MALFORMED;
    const c = ld8(p);
    const start = p;
    if (c == C_QUOTE) {
      p = scanString(p + 1, end);
      if (!p) return STATUS_MALFORMED;
      if (leaf) setField(leaf, KIND_STRING, gEsc ? FLAG_STR_ESCAPED : 0, <u32>(start - base), <u32>(p - base), NaN);
    } else if (c - C_0 < 10 || c == C_MINUS) {
      p = scanNumber(p, end, leaf != 0);
      if (!p) return STATUS_MALFORMED;
      if (leaf) {
        if (gExact) setField(leaf, KIND_NUMBER, FLAG_NUM_EXACT, <u32>(start - base), <u32>(p - base), gNum);
        else setField(leaf, KIND_NUMBER, 0, <u32>(start - base), <u32>(p - base), NaN);
      }
    } else if ((c | 0x20) == C_LBRACE) { // '{' or '['
      const isObj = c == C_LBRACE;
      if (leaf) setField(leaf, isObj ? KIND_OBJECT : KIND_ARRAY, 0, <u32>(start - base), 0, NaN);
      p = skipWs(p + 1, end);
      if (p < end && ld8(p) == c + 2) { // '}' or ']': empty
        p++;
        if (leaf) st32(leaf + F_END, <u32>(p - base));
      } else {
        const word: u32 = isObj ? node : FRAME_ARRAY;
        if (depth >= stackCap) ensureStack(depth + 1);
        const f = stack + <usize>depth * FRAME_BYTES;
        st32(f, word);
        st32(f + 4, <u32>leaf);
        depth++;
        top = word;
        continue; // the container's first member
      }
    } else if (c == C_LOWER_T || c == C_LOWER_N) {
      if (p + 4 > end) return STATUS_MALFORMED;
      const w = ld32(p);
      if (w == LIT_TRUE) {
        if (leaf) setField(leaf, KIND_TRUE, 0, <u32>(start - base), <u32>(p + 4 - base), NaN);
      } else if (w == LIT_NULL) {
        if (leaf) setField(leaf, KIND_NULL, 0, <u32>(start - base), <u32>(p + 4 - base), NaN);
      } else {
        return STATUS_MALFORMED;
      }
      p += 4;
    } else if (c == C_LOWER_F) {
      if (p + 5 > end || ld32(p) != LIT_FALS || ld8(p + 4) != C_LOWER_E) return STATUS_MALFORMED;
      p += 5;
      if (leaf) setField(leaf, KIND_FALSE, 0, <u32>(start - base), <u32>(p - base), NaN);
    } else {
      return STATUS_MALFORMED;
    }

    // After a value: ',' starts the next member; a close ends the top container.
    while (true) {
      if (p >= end) return STATUS_MALFORMED;
      let d = ld8(p);
      if (d <= C_SPACE) {
        p = skipWs(p, end);
        if (p >= end) return STATUS_MALFORMED;
        d = ld8(p);
      }
      if (d == C_COMMA) {
        p++;
        if (p < end && ld8(p) <= C_SPACE) p = skipWs(p, end);
        break;
      }
      if (d != ((top & FRAME_ARRAY) ? C_RBRACKET : C_RBRACE)) return STATUS_MALFORMED;
      p++;
      depth--;
      const f = stack + <usize>depth * FRAME_BYTES;
      const closing = <usize>ld32(f + 4);
      if (closing) st32(closing + F_END, <u32>(p - base));
      if (depth == 0) {
        p = skipWs(p, end);
        return p == end ? STATUS_OK : STATUS_MALFORMED;
      }
      top = ld32(f - FRAME_BYTES);
    }
  }
}

/**
 * Validates and scans n records.
 *
 * Reads:  `bytes` (the records' text), `bounds` (n × {start u32, end u32}, offsets
 *         relative to `bytes`), `spec` (see the path spec layout above).
 * Writes: `out` (n × P field records of FIELD_BYTES, record i's path p at
 *         out + (i*P + p) * FIELD_BYTES), `status` (n × u8 STATUS_*).
 * May allocate (its stack and key scratch grow on the heap), so memory may grow.
 */
export function scanRecords(bytes: usize, bounds: usize, n: i32, spec: usize, out: usize, status: usize): void {
  const P = <usize>ld32(spec + H_P);
  const recBytes = P * FIELD_BYTES;
  const aliasCount = ld32(spec + H_ALIAS_COUNT);
  const aliases = spec + <usize>ld32(spec + H_ALIAS_OFF);
  for (let i = 0; i < n; i++) {
    const fields = out + <usize>i * recBytes;
    for (let j: usize = 0; j < P; j++) clearField(fields + j * FIELD_BYTES);
    const b = bounds + (<usize>i << 3);
    let st = scanOne(bytes, <usize>ld32(b), <usize>ld32(b + 4), spec, fields);
    if (st == STATUS_OK) {
      for (let a: u32 = 0; a < aliasCount; a++) {
        const pr = aliases + (<usize>a << 3);
        memory.copy(fields + <usize>ld32(pr) * FIELD_BYTES, fields + <usize>ld32(pr + 4) * FIELD_BYTES, FIELD_BYTES);
      }
    } else if (st == STATUS_MALFORMED) {
      for (let j: usize = 0; j < P; j++) clearField(fields + j * FIELD_BYTES);
    }
    st8(status + <usize>i, st);
  }
}
