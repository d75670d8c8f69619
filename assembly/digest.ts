// The state digest's hash: XXH64 (seed 0) of bytes in linear memory. A module of its
// own, apart from the kernel: the state thread hashes every entry a checkpoint writes
// or a restore reads, and SHA-256 through node:crypto cost ~1 µs an entry there.
//
// xxh64(ptr, len) returns the high 32 bits of the hash and leaves the low 32 bits at
// address LOW (0); callers copy their bytes to DATA (8) and up.

const P1: u64 = 0x9e3779b185ebca87;
const P2: u64 = 0xc2b2ae3d27d4eb4f;
const P3: u64 = 0x165667b19e3779f9;
const P4: u64 = 0x85ebca77c2b2ae63;
const P5: u64 = 0x27d4eb2f165667c5;

/** Where xxh64 leaves the low half of its hash. */
export const LOW: usize = 0;
/** Where callers put the bytes to hash. */
export const DATA: usize = 8;

// @ts-ignore: decorator
@inline function round(acc: u64, input: u64): u64 {
  return rotl<u64>(acc + input * P2, 31) * P1;
}

// @ts-ignore: decorator
@inline function merge(acc: u64, v: u64): u64 {
  return (acc ^ round(0, v)) * P1 + P4;
}

export function xxh64(ptr: usize, len: usize): u32 {
  const end = ptr + len;
  let p = ptr;
  let h: u64;
  if (len >= 32) {
    let v1: u64 = P1 + P2;
    let v2: u64 = P2;
    let v3: u64 = 0;
    let v4: u64 = 0 - P1;
    const limit = end - 32;
    do {
      v1 = round(v1, load<u64>(p));
      v2 = round(v2, load<u64>(p + 8));
      v3 = round(v3, load<u64>(p + 16));
      v4 = round(v4, load<u64>(p + 24));
      p += 32;
    } while (p <= limit);
    h = rotl<u64>(v1, 1) + rotl<u64>(v2, 7) + rotl<u64>(v3, 12) + rotl<u64>(v4, 18);
    h = merge(h, v1);
    h = merge(h, v2);
    h = merge(h, v3);
    h = merge(h, v4);
  } else {
    h = P5;
  }
  h += <u64>len;
  while (p + 8 <= end) {
    h = rotl<u64>(h ^ round(0, load<u64>(p)), 27) * P1 + P4;
    p += 8;
  }
  if (p + 4 <= end) {
    h = rotl<u64>(h ^ (<u64>load<u32>(p) * P1), 23) * P2 + P3;
    p += 4;
  }
  while (p < end) {
    h = rotl<u64>(h ^ (<u64>load<u8>(p) * P5), 11) * P1;
    p++;
  }
  h ^= h >> 33;
  h *= P2;
  h ^= h >> 29;
  h *= P3;
  h ^= h >> 32;
  store<u32>(LOW, <u32>h);
  return <u32>(h >> 32);
}

/**
 * The XXH64 of each put of a change batch (src/state/batch.ts) of `count` records at
 * [ptr, ptr + len): records are u32 key length | u32 value length + 1 (0: a delete) |
 * key | [0x00 | value], and a put's term hashes key ‖ 0x00 ‖ value. Record i's hash
 * goes to out + 8 i as (high, low) u32 halves; a delete's as (0, 0). Returns the
 * records read: fewer than `count` if the batch ends inside one.
 */
export function xxh64Batch(ptr: usize, len: usize, count: u32, out: usize): u32 {
  const end = ptr + len;
  let p = ptr;
  for (let i: u32 = 0; i < count; i++) {
    if (p + 8 > end) return i;
    const keyLen = <usize>load<u32>(p);
    const v = <usize>load<u32>(p + 4);
    const k = p + 8;
    const recEnd = k + keyLen + v;
    if (recEnd > end || recEnd < k) return i;
    const o = out + (<usize>i << 3);
    if (v == 0) {
      store<u64>(o, 0);
    } else {
      const hi = xxh64(k, keyLen + v);
      store<u32>(o, hi);
      store<u32>(o + 4, load<u32>(LOW));
    }
    p = recEnd;
  }
  return count;
}
