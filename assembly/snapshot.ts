// Checkpoints: window slots to bytes and back (layouts: layout.ts, slot serialization
// and snapshot record). serializeChanges writes every slot changed since the last
// call (the dirty list, slots.ts) to the changes region; serializeAll every live slot
// to a region of its own. TS reads a region through snapPtr/snapLength after the call
// that wrote it; the changes region stays as written until the next serializeChanges,
// so a checkpoint encodes its change set from it while processing goes on (a full
// snapshot in between does not touch it).
import {
  SER_VERSION, SER_ACC, SER_SKETCH, SER_MIN_BYTES,
  SNAP_AGG, SNAP_KEY, SNAP_SLOT, SNAP_LEN, SNAP_START, SNAP_END, SNAP_HEADER,
  SLOT_COUNT, SLOT_M2, SLOT_START, SLOT_END, SLOT_KEY, SLOT_AGG, SLOT_SKETCH, SLOT_FLAGS, SLOT_LIVE, SLOT_DIRTY,
} from './layout';
import { ldf, stf, ldu, stu, copyWords } from './mem';
import { sketchSerializedBytes, sketchWrite, sketchRead, sketchCheck } from './sketch';
import { slotAddr, slotsUsed, slotsLive, dirtyBase, dirtyCount, dirtyReset } from './slots';

// The region last written (what snapPtr/snapLength give), and the two kept apart.
export let snapBase: usize = 0;
export let snapLength: usize = 0; // bytes used
export let snapRecords: u32 = 0;
let snapCap: usize = 0;
let changesBase: usize = 0;
let changesCap: usize = 0;
let allBase: usize = 0;
let allCap: usize = 0;

/**
 * Makes the changes (or the all) region the one written, empty, with room for at
 * least `records` records of an empty sketch: one allocation instead of a doubling
 * per power of two, and no copy of what the region held (it is rewritten).
 */
function snapOpen(all: bool, records: u32): void {
  snapBase = all ? allBase : changesBase;
  snapCap = all ? allCap : changesCap;
  snapLength = 0;
  snapRecords = 0;
  const need = <usize>records * (SNAP_HEADER + SER_MIN_BYTES + 8);
  if (need > snapCap) {
    if (snapCap) heap.free(snapBase);
    let c = snapCap ? snapCap << 1 : <usize>1 << 16;
    while (c < need) c <<= 1;
    snapBase = heap.alloc(c);
    snapCap = c;
  }
}

/** Keeps the region written (it may have moved while growing). */
function snapClose(all: bool): void {
  if (all) {
    allBase = snapBase;
    allCap = snapCap;
  } else {
    changesBase = snapBase;
    changesCap = snapCap;
  }
}

/** Appends the record of slot i. The slot's address is re-read after growing the region. */
function snapSlot(i: u32): void {
  const need = SNAP_HEADER + SER_SKETCH + sketchSerializedBytes(slotAddr(i) + SLOT_SKETCH) + 8;
  if (snapLength + need > snapCap) {
    let c = snapCap ? snapCap << 1 : <usize>1 << 16;
    while (c < snapLength + need) c <<= 1;
    snapBase = snapCap ? heap.realloc(snapBase, c) : heap.alloc(c);
    snapCap = c;
  }
  const s = slotAddr(i);
  const r = snapBase + snapLength;
  const q = r + SNAP_HEADER;
  stu(q, SER_VERSION);
  copyWords(q + SER_ACC, s + SLOT_COUNT, SLOT_M2 + 8 - SLOT_COUNT);
  const len = sketchWrite(s + SLOT_SKETCH, q + SER_SKETCH) - q;
  stu(r + SNAP_AGG, ldu(s + SLOT_AGG));
  stu(r + SNAP_KEY, ldu(s + SLOT_KEY));
  stu(r + SNAP_SLOT, i);
  stu(r + SNAP_LEN, <u32>len);
  stf(r + SNAP_START, ldf(s + SLOT_START));
  stf(r + SNAP_END, ldf(s + SLOT_END));
  snapLength += SNAP_HEADER + ((len + 7) & ~7);
  snapRecords++;
}

/**
 * Serializes every live slot changed since the last call (clearing SLOT_DIRTY) and
 * empties the dirty list. Returns the number of records.
 */
export function serializeChanges(): u32 {
  snapOpen(false, dirtyCount);
  for (let k: u32 = 0; k < dirtyCount; k++) {
    const i = ldu(dirtyBase + (<usize>k << 2));
    const sp = slotAddr(i) + SLOT_FLAGS;
    const f = ldu(sp);
    // Listed twice (already written) or freed since: skip.
    if ((f & (SLOT_LIVE | SLOT_DIRTY)) != (SLOT_LIVE | SLOT_DIRTY)) continue;
    stu(sp, f & ~SLOT_DIRTY);
    snapSlot(i);
  }
  dirtyReset();
  snapClose(false);
  return snapRecords;
}

/** Serializes every live slot, changed or not, without touching change tracking. */
export function serializeAll(): u32 {
  snapOpen(true, slotsLive());
  const used = slotsUsed();
  for (let i: u32 = 0; i < used; i++) {
    if (ldu(slotAddr(i) + SLOT_FLAGS) & SLOT_LIVE) snapSlot(i);
  }
  snapClose(true);
  return snapRecords;
}

/** Whether `len` bytes at `ptr` are one well-formed slot serialization of this version. */
export function serialValid(ptr: usize, len: usize): bool {
  if (len < SER_MIN_BYTES || ldu(ptr) != SER_VERSION) return false;
  return sketchCheck(ptr + SER_SKETCH, len - SER_SKETCH) == len - SER_SKETCH;
}

/** Loads a slot serialization (checked by serialValid) into slot i's accumulators and sketch. */
export function slotLoad(i: u32, ptr: usize): void {
  const s = slotAddr(i);
  memory.copy(s + SLOT_COUNT, ptr + SER_ACC, SLOT_M2 + 8 - SLOT_COUNT);
  sketchRead(s + SLOT_SKETCH, ptr + SER_SKETCH);
}
