// Byte-string interning: each table maps byte strings to dense ids 0, 1, 2, ...
// One table per aggregation; called once per event per aggregation on ~10-40 byte
// group keys, so the hit path is one hash, usually one probe and one compare.
//
// Open addressing with linear probing over a power-of-two slot array that
// doubles at 70% load. A slot stores the 32-bit hash tag next to the id, so a
// probe compares bytes only when the tags agree. The bytes of every id live in
// arena chunks that never move: internBytes pointers stay valid until internFree.

// @ts-ignore: decorator
@inline function ld8(p: usize): u64 { return <u64>load<u8>(p); }
// @ts-ignore: decorator
@inline function ld32(p: usize): u32 { return load<u32>(p); }
// @ts-ignore: decorator
@inline function ld64(p: usize): u64 { return load<u64>(p); }
// @ts-ignore: decorator
@inline function st32(p: usize, v: u32): void { store<u32>(p, v); }
// @ts-ignore: decorator
@inline function st64(p: usize, v: u64): void { store<u64>(p, v); }

// ─── Table header (the handle) ────────────────────────────────────────────────
//
//   ┌───────┬──────┬───────┬──────┬─────────┬───────┬───────────┬───────────┐
//   │ slots │ mask │ count │ ents │ entsCap │ chunk │ chunkUsed │ chunkCap  │   u32 × 8
//   └───────┴──────┴───────┴──────┴─────────┴───────┴───────────┴───────────┘
const T_SLOTS: usize = 0; // u64[mask + 1]
const T_MASK: usize = 4;
const T_COUNT: usize = 8; // ids handed out
const T_ENTS: usize = 12; // entry[entsCap]
const T_ENTS_CAP: usize = 16;
const T_CHUNK: usize = 20; // newest arena chunk
const T_CHUNK_USED: usize = 24;
const T_CHUNK_CAP: usize = 28;
const T_BYTES: usize = 32;

// ─── Slot (u64) ───────────────────────────────────────────────────────────────
//
//   ┌────────────┬──────────────┐
//   │ id + 1 u32 │ hash tag u32 │   0 = empty (id + 1 is never 0)
//   └────────────┴──────────────┘
const SLOT_BYTES: usize = 8;
const INITIAL_SLOTS: u32 = 64;
const LOAD_NUM: u32 = 7; // grow when count + 1 > slots * 7 / 10
const LOAD_DEN: u32 = 10;

// ─── Entry (one per id) ───────────────────────────────────────────────────────
//
//   ┌───────────┬─────────┐
//   │ bytes ptr │ len u32 │
//   └───────────┴─────────┘
const E_PTR: usize = 0;
const E_LEN: usize = 4;
const ENTRY_BYTES: usize = 8;
const INITIAL_ENTS: u32 = 64;

// ─── Arena chunk ──────────────────────────────────────────────────────────────
//
//   ┌────────────────┬─────┬──────────────────────────┐
//   │ prev chunk u32 │ pad │ bytes ...                │
//   └────────────────┴─────┴──────────────────────────┘
const CH_PREV: usize = 0;
const CH_HEADER: usize = 8;
const CHUNK_BYTES: usize = 65536; // a string longer than this gets a chunk of its own

// ─── Hash ─────────────────────────────────────────────────────────────────────
// Short keys dominate (10-40 bytes), so the hash reads a key as up to four
// overlapping 8-byte words (first 16 and last 16 bytes) multiplied in
// independent lanes, not one long multiply chain; longer keys add 32-byte
// rounds and end with their last 32 bytes. murmur3's fmix64 finishes. Reads only inside the key.
const K1: u64 = 0x9e3779b97f4a7c15;
const K2: u64 = 0xc2b2ae3d27d4eb4f;
const K3: u64 = 0x165667b19e3779f9;
const K4: u64 = 0x85ebca77c2b2ae63;

// @ts-ignore: decorator
@inline function fmix64(h: u64): u64 {
  h ^= h >> 33;
  h *= 0xff51afd7ed558ccd;
  h ^= h >> 33;
  h *= 0xc4ceb9fe1a85ec53;
  h ^= h >> 33;
  return h;
}

/** 32-bit hash of [p, p+len). */
// @ts-ignore: decorator
@inline function hashBytes(p: usize, len: u32): u32 {
  const n = <usize>len;
  let h: u64 = <u64>len * K3;
  if (n <= 16) {
    let a: u64 = 0;
    let b: u64 = 0;
    if (n >= 8) {
      a = ld64(p);
      b = ld64(p + n - 8);
    } else if (n >= 4) {
      a = <u64>ld32(p);
      b = <u64>ld32(p + n - 4);
    } else if (n > 0) {
      a = ld8(p) | (ld8(p + (n >> 1)) << 8) | (ld8(p + n - 1) << 16);
    }
    h ^= (a ^ K4) * K1 ^ rotl<u64>((b ^ K3) * K2, 32);
  } else if (n <= 32) {
    // First 16 and last 16 bytes (they may overlap).
    const e = p + n;
    h ^= (ld64(p) * K1) ^ rotl<u64>(ld64(p + 8) * K2, 17) ^ rotl<u64>(ld64(e - 16) * K3, 31) ^ rotl<u64>(ld64(e - 8) * K4, 47);
  } else {
    let i: usize = 0;
    while (i + 32 < n) {
      // Four lanes per round; the rounds chain through h.
      h = (h ^ (ld64(p + i) * K1) ^ rotl<u64>(ld64(p + i + 8) * K2, 17) ^ rotl<u64>(ld64(p + i + 16) * K3, 31) ^ rotl<u64>(ld64(p + i + 24) * K4, 47)) * K1;
      i += 32;
    }
    // The last 32 bytes (may overlap the last round).
    const e = p + n;
    h ^= (ld64(e - 32) * K1) ^ rotl<u64>(ld64(e - 24) * K2, 17) ^ rotl<u64>(ld64(e - 16) * K3, 31) ^ rotl<u64>(ld64(e - 8) * K4, 47);
  }
  return <u32>fmix64(h);
}

// @ts-ignore: decorator
@inline function bytesEq(a: usize, b: usize, len: usize): bool {
  let i: usize = 0;
  while (i + 8 <= len) {
    if (ld64(a + i) != ld64(b + i)) return false;
    i += 8;
  }
  if (i + 4 <= len) {
    if (ld32(a + i) != ld32(b + i)) return false;
    i += 4;
  }
  while (i < len) {
    if (load<u8>(a + i) != load<u8>(b + i)) return false;
    i++;
  }
  return true;
}

/** Copies [ptr, ptr+len) into the table's arena; returns the copy's address. */
function arenaCopy(t: usize, ptr: usize, len: u32): usize {
  let chunk = <usize>ld32(t + T_CHUNK);
  let used = <usize>ld32(t + T_CHUNK_USED);
  const cap = <usize>ld32(t + T_CHUNK_CAP);
  if (used + <usize>len > cap) {
    const size = max<usize>(CHUNK_BYTES, <usize>len);
    const fresh = heap.alloc(CH_HEADER + size);
    st32(fresh + CH_PREV, <u32>chunk);
    chunk = fresh;
    used = 0;
    st32(t + T_CHUNK, <u32>chunk);
    st32(t + T_CHUNK_CAP, <u32>size);
  }
  const dst = chunk + CH_HEADER + used;
  memory.copy(dst, ptr, <usize>len);
  st32(t + T_CHUNK_USED, <u32>(used + <usize>len));
  return dst;
}

/** Doubles the slot array, re-placing every slot by its stored tag. */
function grow(t: usize): void {
  const old = <usize>ld32(t + T_SLOTS);
  const oldCap = ld32(t + T_MASK) + 1;
  const cap = oldCap << 1;
  const mask = cap - 1;
  const slots = heap.alloc(<usize>cap * SLOT_BYTES);
  memory.fill(slots, 0, <usize>cap * SLOT_BYTES);
  for (let i: u32 = 0; i < oldCap; i++) {
    const s = ld64(old + <usize>i * SLOT_BYTES);
    if (s == 0) continue;
    let j = <u32>(s >> 32) & mask;
    while (ld64(slots + <usize>j * SLOT_BYTES) != 0) j = (j + 1) & mask;
    st64(slots + <usize>j * SLOT_BYTES, s);
  }
  heap.free(old);
  st32(t + T_SLOTS, <u32>slots);
  st32(t + T_MASK, mask);
}

/** A new, empty table. Returns its handle (the header's address). */
export function internTableNew(): usize {
  const t = heap.alloc(T_BYTES);
  const slots = heap.alloc(<usize>INITIAL_SLOTS * SLOT_BYTES);
  memory.fill(slots, 0, <usize>INITIAL_SLOTS * SLOT_BYTES);
  st32(t + T_SLOTS, <u32>slots);
  st32(t + T_MASK, INITIAL_SLOTS - 1);
  st32(t + T_COUNT, 0);
  st32(t + T_ENTS, <u32>heap.alloc(<usize>INITIAL_ENTS * ENTRY_BYTES));
  st32(t + T_ENTS_CAP, INITIAL_ENTS);
  st32(t + T_CHUNK, 0);
  st32(t + T_CHUNK_USED, 0);
  st32(t + T_CHUNK_CAP, 0);
  return t;
}

/**
 * The id of the bytes [ptr, ptr+len) in table t, handing out the next dense id
 * (internCount before the call) if they were not seen before.
 * Reads [ptr, ptr+len) and the table; may allocate (memory may grow).
 */
export function intern(t: usize, ptr: usize, len: u32): u32 {
  const tag = hashBytes(ptr, len);
  let slots = <usize>ld32(t + T_SLOTS);
  let mask = ld32(t + T_MASK);
  const ents = <usize>ld32(t + T_ENTS);
  let j = tag & mask;
  while (true) {
    const s = ld64(slots + <usize>j * SLOT_BYTES);
    if (s == 0) break;
    if (<u32>(s >> 32) == tag) {
      const id = <u32>s - 1;
      const e = ents + <usize>id * ENTRY_BYTES;
      if (ld32(e + E_LEN) == len && bytesEq(<usize>ld32(e + E_PTR), ptr, <usize>len)) return id;
    }
    j = (j + 1) & mask;
  }
  // Miss: a new id.
  const id = ld32(t + T_COUNT);
  if ((id + 1) * LOAD_DEN > (mask + 1) * LOAD_NUM) {
    grow(t);
    slots = <usize>ld32(t + T_SLOTS);
    mask = ld32(t + T_MASK);
    j = tag & mask;
    while (ld64(slots + <usize>j * SLOT_BYTES) != 0) j = (j + 1) & mask;
  }
  const entsCap = ld32(t + T_ENTS_CAP);
  let e = ents;
  if (id == entsCap) {
    e = heap.realloc(ents, <usize>(entsCap << 1) * ENTRY_BYTES);
    st32(t + T_ENTS, <u32>e);
    st32(t + T_ENTS_CAP, entsCap << 1);
  }
  const copy = arenaCopy(t, ptr, len);
  const entry = e + <usize>id * ENTRY_BYTES;
  st32(entry + E_PTR, <u32>copy);
  st32(entry + E_LEN, len);
  st64(slots + <usize>j * SLOT_BYTES, (<u64>tag << 32) | <u64>(id + 1));
  st32(t + T_COUNT, id + 1);
  return id;
}

/** Number of ids handed out by table t. Reads the table header. */
export function internCount(t: usize): u32 {
  return ld32(t + T_COUNT);
}

/** Address of the stored copy of id's bytes (0 if id >= internCount); valid until internFree. */
export function internBytes(t: usize, id: u32): usize {
  if (id >= ld32(t + T_COUNT)) return 0;
  return <usize>ld32(<usize>ld32(t + T_ENTS) + <usize>id * ENTRY_BYTES + E_PTR);
}

/** Length of id's bytes (0 if id >= internCount). */
export function internLen(t: usize, id: u32): u32 {
  if (id >= ld32(t + T_COUNT)) return 0;
  return ld32(<usize>ld32(t + T_ENTS) + <usize>id * ENTRY_BYTES + E_LEN);
}

/** Frees table t and every block it owns; the handle is dead afterwards. */
export function internFree(t: usize): void {
  let chunk = <usize>ld32(t + T_CHUNK);
  while (chunk) {
    const prev = <usize>ld32(chunk + CH_PREV);
    heap.free(chunk);
    chunk = prev;
  }
  heap.free(<usize>ld32(t + T_SLOTS));
  heap.free(<usize>ld32(t + T_ENTS));
  heap.free(t);
}
