// Byte-string interning: each table maps byte strings to dense ids 0, 1, 2, ...
// One table per aggregation; called once per event per aggregation on ~10-40 byte
// group keys, so the hit path is one hash, usually one probe and one compare.
//
// Open addressing with linear probing over a power-of-two slot array that
// doubles at 70% load. A slot stores the 32-bit hash tag next to the id, so a
// probe compares bytes only when the tags agree. The bytes of a short key live in
// its entry (one cache line holds both, and no heap block is allocated per key),
// those of a longer one in a heap block of their own: internBytes pointers stay
// valid until the next intern (the entries move when they grow).
//
// Ids of removed strings are handed out again (last removed first), so that the
// ids, and every dense array indexed by them, follow the strings alive, not every
// string ever seen. Removal shifts later slots of the probe run back (no
// tombstones). The ids handed out since internFreshReset are listed (fresh), so
// that the caller learns of an id handed out again.

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
//   ┌───────┬──────┬───────┬──────┬─────────┬──────┬──────┬───────┬─────────┬───────────┐
//   │ slots │ mask │ count │ ents │ entsCap │ free │ live │ fresh │ freshN  │ freshCap  │   u32 × 10
//   └───────┴──────┴───────┴──────┴─────────┴──────┴──────┴───────┴─────────┴───────────┘
const T_SLOTS: usize = 0; // u64[mask + 1]
const T_MASK: usize = 4;
const T_COUNT: usize = 8; // ids ever in use: every id is below it
const T_ENTS: usize = 12; // entry[entsCap]
const T_ENTS_CAP: usize = 16;
const T_FREE: usize = 20; // first id of the free list (NO_ID: none)
const T_LIVE: usize = 24; // ids in use
const T_FRESH: usize = 28; // u32[freshCap]: ids handed out since internFreshReset
const T_FRESH_N: usize = 32;
const T_FRESH_CAP: usize = 36;
const T_BYTES: usize = 40;
const NO_ID: u32 = 0xffffffff;

// ─── Slot (u64) ───────────────────────────────────────────────────────────────
//
//   ┌────────────┬──────────────┐
//   │ id + 1 u32 │ hash tag u32 │   0 = empty (id + 1 is never 0)
//   └────────────┴──────────────┘
const SLOT_BYTES: usize = 8;
const INITIAL_SLOTS: u32 = 64;
const LOAD_NUM: u32 = 7; // grow when live + 1 > slots * 7 / 10
const LOAD_DEN: u32 = 10;

// ─── Entry (one per id) ───────────────────────────────────────────────────────
//
//   ┌───────────┬─────────┬──────────────────────────────┐
//   │ bytes ptr │ len u32 │ the bytes (len <= INLINE_MAX) │   in use
//   ├───────────┼─────────┼──────────────────────────────┤
//   │ 0         │ next id │                               │   free: the next id of the free list (NO_ID: last)
//   └───────────┴─────────┴──────────────────────────────┘
// bytes ptr is the entry's own E_INLINE for a short key, else a heap block.
const E_PTR: usize = 0;
const E_LEN: usize = 4;
const E_INLINE: usize = 8;
const ENTRY_BYTES: usize = 32;
const INLINE_MAX: u32 = 24;
const INITIAL_ENTS: u32 = 64;
const INITIAL_FRESH: u32 = 64;

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

/** Points the n entries moved from `old` to `ents` at their own inline bytes again. */
function rebase(ents: usize, n: u32, old: usize): void {
  for (let id: u32 = 0; id < n; id++) {
    const e = ents + <usize>id * ENTRY_BYTES;
    if (<usize>ld32(e + E_PTR) == old + <usize>id * ENTRY_BYTES + E_INLINE) st32(e + E_PTR, <u32>(e + E_INLINE));
  }
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
  st32(t + T_FREE, NO_ID);
  st32(t + T_LIVE, 0);
  st32(t + T_FRESH, <u32>heap.alloc(<usize>INITIAL_FRESH << 2));
  st32(t + T_FRESH_N, 0);
  st32(t + T_FRESH_CAP, INITIAL_FRESH);
  return t;
}

/** Appends id to the fresh list. */
function freshPush(t: usize, id: u32): void {
  const n = ld32(t + T_FRESH_N);
  const cap = ld32(t + T_FRESH_CAP);
  if (n == cap) {
    st32(t + T_FRESH, <u32>heap.realloc(<usize>ld32(t + T_FRESH), <usize>(cap << 1) << 2));
    st32(t + T_FRESH_CAP, cap << 1);
  }
  st32(<usize>ld32(t + T_FRESH) + (<usize>n << 2), id);
  st32(t + T_FRESH_N, n + 1);
}

/**
 * The id of the bytes [ptr, ptr+len) in table t. Bytes not in the table get the
 * last removed id, or else the next dense one (internCount before the call), and
 * are appended to the fresh list.
 * Reads [ptr, ptr+len) and the table; may allocate (memory may grow).
 */
export function intern(t: usize, ptr: usize, len: u32): u32 {
  return internHashed(t, ptr, len, internHash(ptr, len));
}

/** The hash intern gives [ptr, ptr+len) (for internHashed and internTouch). */
export function internHash(ptr: usize, len: u32): u32 {
  return hashBytes(ptr, len);
}

/**
 * Reads the slot where a lookup of hash `tag` starts, and (second pass, `entry`)
 * the entry of the id stored there, and returns what it read: a pass of these over a
 * batch's keys before the lookups brings their cache lines in together, the misses
 * overlapping, where the lookups one after the other would wait for each in turn.
 */
export function internTouch(t: usize, tag: u32, entry: bool): u64 {
  const s = ld64(<usize>ld32(t + T_SLOTS) + <usize>(tag & ld32(t + T_MASK)) * SLOT_BYTES);
  if (!entry || <u32>s == 0) return s;
  return <u64>ld32(<usize>ld32(t + T_ENTS) + <usize>(<u32>s - 1) * ENTRY_BYTES + E_PTR);
}

/** Slots of table t (a power of two). */
export function internSlots(t: usize): u32 {
  return ld32(t + T_MASK) + 1;
}

/** intern, given the hash of the bytes (internHash). */
export function internHashed(t: usize, ptr: usize, len: u32, tag: u32): u32 {
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
  const live = ld32(t + T_LIVE);
  if ((live + 1) * LOAD_DEN > (mask + 1) * LOAD_NUM) {
    grow(t);
    slots = <usize>ld32(t + T_SLOTS);
    mask = ld32(t + T_MASK);
    j = tag & mask;
    while (ld64(slots + <usize>j * SLOT_BYTES) != 0) j = (j + 1) & mask;
  }
  let e = ents;
  let id = ld32(t + T_FREE);
  if (id != NO_ID) st32(t + T_FREE, ld32(e + <usize>id * ENTRY_BYTES + E_LEN));
  else {
    id = ld32(t + T_COUNT);
    const entsCap = ld32(t + T_ENTS_CAP);
    if (id == entsCap) {
      e = heap.realloc(ents, <usize>(entsCap << 1) * ENTRY_BYTES);
      if (e != ents) rebase(e, id, ents);
      st32(t + T_ENTS, <u32>e);
      st32(t + T_ENTS_CAP, entsCap << 1);
    }
    st32(t + T_COUNT, id + 1);
  }
  const entry = e + <usize>id * ENTRY_BYTES;
  const copy = len <= INLINE_MAX ? entry + E_INLINE : heap.alloc(<usize>len);
  memory.copy(copy, ptr, <usize>len);
  st32(entry + E_PTR, <u32>copy);
  st32(entry + E_LEN, len);
  st64(slots + <usize>j * SLOT_BYTES, (<u64>tag << 32) | <u64>(id + 1));
  st32(t + T_LIVE, live + 1);
  freshPush(t, id);
  return id;
}

/**
 * Removes id from table t: its bytes are freed and the id is handed out again by a
 * later miss. Returns false (doing nothing) when id is not in use. Writes the table.
 */
export function internRemove(t: usize, id: u32): bool {
  if (id >= ld32(t + T_COUNT)) return false;
  const e = <usize>ld32(t + T_ENTS) + <usize>id * ENTRY_BYTES;
  const p = <usize>ld32(e + E_PTR);
  if (p == 0) return false;
  const slots = <usize>ld32(t + T_SLOTS);
  const mask = ld32(t + T_MASK);
  let i = hashBytes(p, ld32(e + E_LEN)) & mask;
  while (<u32>ld64(slots + <usize>i * SLOT_BYTES) != id + 1) i = (i + 1) & mask;
  // Backward shift: a later slot of the run moves into the hole unless its home lies
  // cyclically in (hole, its position]; the run ends at an empty slot.
  let k = i;
  while (true) {
    k = (k + 1) & mask;
    const s = ld64(slots + <usize>k * SLOT_BYTES);
    if (s == 0) break;
    const home = <u32>(s >> 32) & mask;
    const stays = i <= k ? home > i && home <= k : home > i || home <= k;
    if (stays) continue;
    st64(slots + <usize>i * SLOT_BYTES, s);
    i = k;
  }
  st64(slots + <usize>i * SLOT_BYTES, 0);
  if (p != e + E_INLINE) heap.free(p);
  st32(e + E_PTR, 0);
  st32(e + E_LEN, ld32(t + T_FREE));
  st32(t + T_FREE, id);
  st32(t + T_LIVE, ld32(t + T_LIVE) - 1);
  return true;
}

/** The bound of table t's ids: every id in use is below it (ids handed out and not reused yet included). Reads the table header. */
export function internCount(t: usize): u32 {
  return ld32(t + T_COUNT);
}

/** Ids in use in table t (handed out and not removed). */
export function internLive(t: usize): u32 {
  return ld32(t + T_LIVE);
}

/** Address of the stored copy of id's bytes (0 if id is not in use); valid until the next intern or removal. */
export function internBytes(t: usize, id: u32): usize {
  if (id >= ld32(t + T_COUNT)) return 0;
  return <usize>ld32(<usize>ld32(t + T_ENTS) + <usize>id * ENTRY_BYTES + E_PTR);
}

/** Length of id's bytes (0 if id is not in use). */
export function internLen(t: usize, id: u32): u32 {
  if (internBytes(t, id) == 0) return 0;
  return ld32(<usize>ld32(t + T_ENTS) + <usize>id * ENTRY_BYTES + E_LEN);
}

/** The fresh list: internFreshCount(t) u32 ids from internFresh(t), in the order handed out; valid until the next intern. */
export function internFresh(t: usize): usize {
  return <usize>ld32(t + T_FRESH);
}

export function internFreshCount(t: usize): u32 {
  return ld32(t + T_FRESH_N);
}

/** Empties the fresh list. */
export function internFreshReset(t: usize): void {
  st32(t + T_FRESH_N, 0);
}

/** Frees table t and every block it owns; the handle is dead afterwards. */
export function internFree(t: usize): void {
  const ents = <usize>ld32(t + T_ENTS);
  const count = ld32(t + T_COUNT);
  for (let id: u32 = 0; id < count; id++) {
    const e = ents + <usize>id * ENTRY_BYTES;
    const p = <usize>ld32(e + E_PTR);
    if (p && p != e + E_INLINE) heap.free(p);
  }
  heap.free(<usize>ld32(t + T_SLOTS));
  heap.free(ents);
  heap.free(<usize>ld32(t + T_FRESH));
  heap.free(t);
}
