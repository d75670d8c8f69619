// Slots: the state of one window of one key, in one growable pool.
import { SLOT_BYTES, SLOT_NEXT, SLOT_FLAGS, SLOT_SKETCH, SLOT_LIVE, SLOT_DIRTY, SLOT_PENDING, SLOT_LISTED, SLOT_KEY, SLOT_AGG, NO_SLOT } from './layout';
import { ldu, stu, zeroSmall } from './mem';
import { sketchFree } from './sketch';
import { snapPending } from './snapshot';

// ─── Slot pool ────────────────────────────────────────────────────────────────
// One growable array of SLOT_BYTES records addressed by index; freed slots form a
// list through SLOT_NEXT. Slots [0, poolUsed) have been handed out at least once;
// those above were never written and are not zeroed: walkers stop at poolUsed.
// The array may move when it grows: hold indices, not addresses, across any call
// that can allocate a slot.
let pool: usize = 0;
let poolCap: u32 = 0;
let poolUsed: u32 = 0;
let freeHead: u32 = NO_SLOT;
let liveSlots: u32 = 0;
// u32[poolCap]: for a PENDING slot, its record in the changes region (snapshot.ts).
// Written by serializeChanges, read only while the slot is PENDING.
let pendingRecord: usize = 0;

// ─── Change tracking (checkpoints) ────────────────────────────────────────────
// With tracking on, the first change of a slot since the last serializeChanges sets
// SLOT_DIRTY and appends the slot's index to the dirty list; later changes see the
// flag and do nothing more. The test comes before the change: a slot that a
// checkpoint's change set still has to serialize (SLOT_PENDING) is written out first,
// as it was at the barrier. The list may name a slot twice (freed and reused) or a
// slot since freed: the serializer skips what is no longer LIVE and DIRTY. Windows
// opened and purged between two barriers would make it grow with every window of the
// interval: it is compacted instead of grown once it is over twice the live slots.
// With tracking off, slots are born DIRTY, so the hot path's test never calls.
export let tracking: bool = false;
export let dirtyBase: usize = 0; // u32[dirtyCap]
export let dirtyCount: u32 = 0;
let dirtyCap: u32 = 0;

// @ts-ignore: decorator
@inline export function slotAddr(i: u32): usize { return pool + <usize>i * SLOT_BYTES; }

/** The pool's base address: valid until the next slotAlloc. */
// @ts-ignore: decorator
@inline export function slotPool(): usize { return pool; }

/** Grows the pool to `cap` slots (> poolCap), moving it if need be; the new part is not zeroed. */
function poolGrow(cap: u32): void {
  if (<u64>cap * <u64>SLOT_BYTES > <u64>u32.MAX_VALUE) unreachable(); // the size would wrap
  pool = poolCap ? heap.realloc(pool, <usize>cap * SLOT_BYTES) : heap.alloc(<usize>cap * SLOT_BYTES);
  pendingRecord = poolCap ? heap.realloc(pendingRecord, <usize>cap << 2) : heap.alloc(<usize>cap << 2);
  poolCap = cap;
}

/**
 * Room for at least n slots, so that allocating up to n does not grow the pool. The
 * new part is written once (zeros) here: its pages are mapped now, while a restore
 * that asks waits for its first state anyway, not one by one as slots are handed out.
 */
export function slotsReserve(n: u32): void {
  if (n <= poolCap) return;
  poolGrow(n);
  memory.fill(slotAddr(poolUsed), 0, <usize>(poolCap - poolUsed) * SLOT_BYTES);
}

export function slotAlloc(): u32 {
  let i = freeHead;
  if (i != NO_SLOT) freeHead = ldu(slotAddr(i) + SLOT_NEXT);
  else {
    if (poolUsed == poolCap) poolGrow(poolCap ? poolCap << 1 : 1024);
    i = poolUsed++;
  }
  const s = slotAddr(i);
  zeroSmall(s, SLOT_BYTES);
  stu(s + SLOT_FLAGS, tracking ? SLOT_LIVE : SLOT_LIVE | SLOT_DIRTY);
  stu(s + SLOT_NEXT, NO_SLOT);
  liveSlots++;
  return i;
}

export function slotFree(i: u32): void {
  const s = slotAddr(i);
  if (ldu(s + SLOT_FLAGS) & SLOT_PENDING) snapPending(i); // its checkpoint still needs it
  sketchFree(s + SLOT_SKETCH);
  stu(s + SLOT_FLAGS, 0);
  stu(s + SLOT_NEXT, freeHead);
  freeHead = i;
  liveSlots--;
}

export function slotsLive(): u32 { return liveSlots; }

/**
 * Writes, for every key id below `cap`, whether aggregation `a` holds a live slot
 * (an open window) of it: byte ptr[key] = 1, else 0. Returns the keys marked. One
 * pass over the pool: what a key-id space costs is kept in step with open windows
 * by the TS side, which frees the ids of keys left with none.
 */
export function slotsMarkKeys(a: u32, ptr: usize, cap: u32): u32 {
  memory.fill(ptr, 0, <usize>cap);
  let marked: u32 = 0;
  for (let i: u32 = 0; i < poolUsed; i++) {
    const s = slotAddr(i);
    if ((ldu(s + SLOT_FLAGS) & SLOT_LIVE) == 0 || ldu(s + SLOT_AGG) != a) continue;
    const k = ldu(s + SLOT_KEY);
    if (k < cap && load<u8>(ptr + <usize>k) == 0) {
      store<u8>(ptr + <usize>k, 1);
      marked++;
    }
  }
  return marked;
}
/** Every slot index handed out, now or later without growing the pool, is below this. */
export function slotsCapacity(): u32 { return poolCap; }
/** Every slot index handed out so far is below this: the bound of a walk over the pool. */
export function slotsUsed(): u32 { return poolUsed; }

/** Whether slot i is allocated. */
export function slotIsLive(i: u32): bool {
  return i < poolUsed && (ldu(slotAddr(i) + SLOT_FLAGS) & SLOT_LIVE) != 0;
}

/**
 * Slot i is about to change and is not DIRTY yet: flag it and, when tracking, list
 * it. A PENDING slot is serialized for its checkpoint first, as it is before this
 * change (copy on write). Off the hot path. Call it before the change, not after.
 */
export function slotTouch(i: u32): void {
  const s = slotAddr(i);
  if (ldu(s + SLOT_FLAGS) & SLOT_PENDING) snapPending(i);
  stu(s + SLOT_FLAGS, ldu(s + SLOT_FLAGS) | SLOT_DIRTY);
  if (tracking) dirtyPush(i);
}

/** The changes region's record of PENDING slot i (snapshot.ts). */
// @ts-ignore: decorator
@inline export function slotPendingRecord(i: u32): u32 { return ldu(pendingRecord + (<usize>i << 2)); }
// @ts-ignore: decorator
@inline export function slotPendingSet(i: u32, k: u32): void { stu(pendingRecord + (<usize>i << 2), k); }

/** The hot path's part of change tracking, before a change: one test of the slot's flags (sp = slotAddr(i)). */
// @ts-ignore: decorator
@inline export function slotChanged(sp: usize, i: u32): void {
  if ((ldu(sp + SLOT_FLAGS) & SLOT_DIRTY) == 0) slotTouch(i);
}

function dirtyPush(i: u32): void {
  // Full, and more than twice as long as the live slots: windows opened and purged since
  // the barrier fill it. Compacted rather than grown, it stays in step with the open
  // windows (a barrier walks it), not with the windows made in a checkpoint interval.
  if (dirtyCount == dirtyCap && dirtyCount > liveSlots << 1) dirtyCompact();
  if (dirtyCount == dirtyCap) {
    const c = dirtyCap ? dirtyCap << 1 : 1024;
    dirtyBase = dirtyCap ? heap.realloc(dirtyBase, <usize>c << 2) : heap.alloc(<usize>c << 2);
    dirtyCap = c;
  }
  stu(dirtyBase + (<usize>dirtyCount << 2), i);
  dirtyCount++;
}

/**
 * Keeps only the entries a barrier would take: each slot that is live and DIRTY, once
 * (a slot freed and handed out again may be listed twice). SLOT_LISTED marks the kept.
 */
function dirtyCompact(): void {
  let n: u32 = 0;
  for (let k: u32 = 0; k < dirtyCount; k++) {
    const i = ldu(dirtyBase + (<usize>k << 2));
    const s = slotAddr(i);
    const f = ldu(s + SLOT_FLAGS);
    if ((f & (SLOT_LIVE | SLOT_DIRTY | SLOT_LISTED)) != (SLOT_LIVE | SLOT_DIRTY)) continue;
    stu(s + SLOT_FLAGS, f | SLOT_LISTED);
    stu(dirtyBase + (<usize>n << 2), i);
    n++;
  }
  for (let k: u32 = 0; k < n; k++) {
    const s = slotAddr(ldu(dirtyBase + (<usize>k << 2)));
    stu(s + SLOT_FLAGS, ldu(s + SLOT_FLAGS) & ~SLOT_LISTED);
  }
  dirtyCount = n;
}

/**
 * Turns change tracking on or off. Turning it on with `listLive`, every live slot
 * is listed as changed (the next serializeChanges is a full snapshot); without,
 * the live slots count as already persisted (restored). Off, the list is dropped.
 */
export function setTracking(on: bool, listLive: bool): void {
  if (on == tracking) return;
  tracking = on;
  dirtyCount = 0;
  if (!on) return; // listed slots keep DIRTY; unlisted ones get it on their next change
  for (let i: u32 = 0; i < poolUsed; i++) {
    const s = slotAddr(i);
    const f = ldu(s + SLOT_FLAGS);
    if ((f & SLOT_LIVE) == 0) continue;
    if (listLive) {
      stu(s + SLOT_FLAGS, f | SLOT_DIRTY);
      dirtyPush(i);
    } else stu(s + SLOT_FLAGS, f & ~SLOT_DIRTY);
  }
}

export function dirtyReset(): void { dirtyCount = 0; }
