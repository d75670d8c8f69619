// Slots (the state of one window of one key) and the per-aggregation table
// (key id, window start) -> slot.
import { SLOT_BYTES, SLOT_NEXT, SLOT_FLAGS, SLOT_SKETCH, SLOT_LIVE, NO_SLOT } from './layout';
import { ldf, stf, ldu, stu, zalloc, zrealloc } from './mem';
import { sketchFree } from './sketch';

// ─── Slot pool ────────────────────────────────────────────────────────────────
// One growable array of SLOT_BYTES records addressed by index; free slots form a
// list through SLOT_NEXT. The array may move when it grows: hold indices, not
// addresses, across any call that can allocate a slot.
let pool: usize = 0;
let poolCap: u32 = 0;
let freeHead: u32 = NO_SLOT;
let liveSlots: u32 = 0;

// @ts-ignore: decorator
@inline export function slotAddr(i: u32): usize { return pool + <usize>i * SLOT_BYTES; }

export function slotAlloc(): u32 {
  if (freeHead == NO_SLOT) {
    const old = poolCap;
    poolCap = old ? old << 1 : 1024;
    pool = old ? zrealloc(pool, <usize>old * SLOT_BYTES, <usize>poolCap * SLOT_BYTES) : zalloc(<usize>poolCap * SLOT_BYTES);
    // Chain the new slots, lowest index first.
    for (let i = poolCap - 1; i >= old; i--) {
      stu(slotAddr(i) + SLOT_NEXT, freeHead);
      freeHead = i;
      if (i == 0) break;
    }
  }
  const i = freeHead;
  const s = slotAddr(i);
  freeHead = ldu(s + SLOT_NEXT);
  memory.fill(s, 0, SLOT_BYTES);
  stu(s + SLOT_FLAGS, SLOT_LIVE);
  stu(s + SLOT_NEXT, NO_SLOT);
  liveSlots++;
  return i;
}

export function slotFree(i: u32): void {
  const s = slotAddr(i);
  sketchFree(s + SLOT_SKETCH);
  stu(s + SLOT_FLAGS, 0);
  stu(s + SLOT_NEXT, freeHead);
  freeHead = i;
  liveSlots--;
}

export function slotsLive(): u32 { return liveSlots; }
export function slotsCapacity(): u32 { return poolCap; }

// ─── Table: (key id, window start) -> slot ────────────────────────────────────
//
//   table header (12 B)            entry (16 B), linear probing
//   ┌─────────┬──────┬───────┐     ┌───────┬──────┬─────────────┐
//   │ entries │ mask │ count │     │ keyId │ slot │ start (f64) │   slot NO_SLOT = empty
//   └─────────┴──────┴───────┘     └───────┴──────┴─────────────┘
const T_ENTRIES: usize = 0;
const T_MASK: usize = 4;
const T_COUNT: usize = 8;
export const TABLE_BYTES: usize = 12;
const E_KEY: usize = 0;
const E_SLOT: usize = 4;
const E_START: usize = 8;
const E_BYTES: usize = 16;

export function tableInit(t: usize, cap: u32): void {
  const p = heap.alloc(<usize>cap * E_BYTES);
  for (let i: u32 = 0; i < cap; i++) stu(p + <usize>i * E_BYTES + E_SLOT, NO_SLOT);
  stu(t + T_ENTRIES, <u32>p);
  stu(t + T_MASK, cap - 1);
  stu(t + T_COUNT, 0);
}

// @ts-ignore: decorator
@inline function home(key: u32, start: f64, mask: u32): u32 {
  const h = ((<u64>key << 32) ^ <u64>(<i64>start)) * 0x9e3779b97f4a7c15;
  return <u32>(h >> 32) & mask;
}

/** The slot of (key, start), or NO_SLOT. */
// @ts-ignore: decorator
@inline export function tableGet(t: usize, key: u32, start: f64): u32 {
  const p = <usize>ldu(t + T_ENTRIES);
  const mask = ldu(t + T_MASK);
  let i = home(key, start, mask);
  while (true) {
    const e = p + <usize>i * E_BYTES;
    const slot = ldu(e + E_SLOT);
    if (slot == NO_SLOT) return NO_SLOT;
    if (ldu(e + E_KEY) == key && ldf(e + E_START) == start) return slot;
    i = (i + 1) & mask;
  }
}

export function tablePut(t: usize, key: u32, start: f64, slot: u32): void {
  if ((ldu(t + T_COUNT) + 1) * 10 > (ldu(t + T_MASK) + 1) * 7) grow(t);
  const p = <usize>ldu(t + T_ENTRIES);
  const mask = ldu(t + T_MASK);
  let i = home(key, start, mask);
  while (ldu(p + <usize>i * E_BYTES + E_SLOT) != NO_SLOT) i = (i + 1) & mask;
  const e = p + <usize>i * E_BYTES;
  stu(e + E_KEY, key);
  stu(e + E_SLOT, slot);
  stf(e + E_START, start);
  stu(t + T_COUNT, ldu(t + T_COUNT) + 1);
}

function grow(t: usize): void {
  const old = <usize>ldu(t + T_ENTRIES);
  const oldCap = ldu(t + T_MASK) + 1;
  const count = ldu(t + T_COUNT);
  tableInit(t, oldCap << 1);
  for (let i: u32 = 0; i < oldCap; i++) {
    const e = old + <usize>i * E_BYTES;
    const slot = ldu(e + E_SLOT);
    if (slot != NO_SLOT) tablePut(t, ldu(e + E_KEY), ldf(e + E_START), slot);
  }
  stu(t + T_COUNT, count);
  heap.free(old);
}

/** Removes (key, start); backward-shift deletion keeps probe chains whole without tombstones. */
export function tableDelete(t: usize, key: u32, start: f64): void {
  const p = <usize>ldu(t + T_ENTRIES);
  const mask = ldu(t + T_MASK);
  let i = home(key, start, mask);
  while (true) {
    const e = p + <usize>i * E_BYTES;
    if (ldu(e + E_SLOT) == NO_SLOT) return;
    if (ldu(e + E_KEY) == key && ldf(e + E_START) == start) break;
    i = (i + 1) & mask;
  }
  let j = i;
  while (true) {
    j = (j + 1) & mask;
    const ej = p + <usize>j * E_BYTES;
    if (ldu(ej + E_SLOT) == NO_SLOT) break;
    const k = home(ldu(ej + E_KEY), ldf(ej + E_START), mask);
    // Entry j may move to the hole at i only if its home is not in (i, j] cyclically.
    const stays = i <= j ? (i < k && k <= j) : (i < k || k <= j);
    if (stays) continue;
    memory.copy(p + <usize>i * E_BYTES, ej, E_BYTES);
    i = j;
  }
  stu(p + <usize>i * E_BYTES + E_SLOT, NO_SLOT);
  stu(t + T_COUNT, ldu(t + T_COUNT) - 1);
}

export function tableCount(t: usize): u32 { return ldu(t + T_COUNT); }
