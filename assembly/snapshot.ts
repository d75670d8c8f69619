// Checkpoints: window slots to bytes and back (layouts: layout.ts, slot serialization
// and snapshot record). serializeChanges takes the slots changed since its last call
// (the dirty list, slots.ts) into the changes region; serializeAll every live slot
// into a region of its own. TS reads a region through snapPtr/snapCount/snapBodyPtr
// after the call that wrote it.
//
// The changes region is copy on write, as Flink's copy-on-write state table is:
// serializeChanges (the checkpoint's barrier, while processing waits) writes only
// each changed window's header (its numbers) and reserves its body; the bodies are
// written later, while processing goes on, by snapFill (the change set's encoding,
// in steps) or, for a window that changes or goes before that, by the change or the
// free itself, first (slots.ts: SLOT_PENDING). Either way a body holds the window as
// it was at the barrier. The region stays where it is until the next
// serializeChanges (a full snapshot in between does not touch it).
import {
  SER_VERSION, SER_VERSION_DENSE, SER_ACC, SER_SKETCH, SER_MIN_BYTES,
  SNAP_AGG, SNAP_KEY, SNAP_SLOT, SNAP_LEN, SNAP_START, SNAP_END, SNAP_BODY, SNAP_HEADER, SNAP_UNWRITTEN,
  SLOT_COUNT, SLOT_M2, SLOT_START, SLOT_END, SLOT_KEY, SLOT_AGG, SLOT_SKETCH, SLOT_FLAGS, SLOT_LIVE, SLOT_DIRTY, SLOT_PENDING,
} from './layout';
import { ldf, stf, ldu, stu, copyWords } from './mem';
import { sketchSerializedBytes, sketchWrite, sketchRead, sketchCheck } from './sketch';
import { slotAddr, slotsUsed, slotsLive, dirtyBase, dirtyCount, dirtyReset, slotPendingSet, slotPendingRecord } from './slots';

// What snapPtr/snapCount/snapBodyPtr/snapBodyLength give: the region last written.
export let snapBase: usize = 0;
export let snapRecords: u32 = 0;
export let snapBody: usize = 0;
export let snapBodyLength: usize = 0;

// The changes region: its headers and their bodies.
let chHeads: usize = 0;
let chHeadCap: usize = 0; // bytes
let chBody: usize = 0;
let chBodyCap: usize = 0;
let chCount: u32 = 0;
// The all region (serializeAll).
let allHeads: usize = 0;
let allHeadCap: usize = 0; // bytes
let allBody: usize = 0;
let allBodyCap: usize = 0;

/** The size of the block room() returned last. */
let roomCap: usize = 0;

/**
 * A block of at least `n` bytes for the one of `cap` bytes at `p` (0: none), its
 * content not kept: `p` itself if it is large enough. Its size goes to roomCap.
 */
function room(p: usize, cap: usize, n: usize): usize {
  roomCap = cap;
  if (n <= cap) return p;
  if (cap) heap.free(p);
  let c = cap ? cap << 1 : <usize>1 << 16;
  while (c < n) c <<= 1;
  roomCap = c;
  return heap.alloc(c);
}

/** Bytes slot `s`'s serialization can take (its sketch's arrays as they are now), padded to 8. */
// @ts-ignore: decorator
@inline function bodyBound(s: usize): usize {
  return (SER_SKETCH + sketchSerializedBytes(s + SLOT_SKETCH) + 7) & ~7;
}

/** Makes `n` headers at `heads` and their bodies (`bodyLength` bytes at `body`) the region last written; n. */
function written(heads: usize, n: u32, body: usize, bodyLength: usize): u32 {
  snapBase = heads;
  snapRecords = n;
  snapBody = body;
  snapBodyLength = bodyLength;
  return n;
}

/** Writes slot `s`'s serialization at `out`; its length. */
function bodyWrite(s: usize, out: usize): u32 {
  stu(out, SER_VERSION);
  copyWords(out + SER_ACC, s + SLOT_COUNT, SLOT_M2 + 8 - SLOT_COUNT);
  return <u32>(sketchWrite(s + SLOT_SKETCH, out + SER_SKETCH) - out);
}

/** Writes the header of slot i (at s) at `h`: its numbers and its body's offset. */
// @ts-ignore: decorator
@inline function headWrite(h: usize, s: usize, i: u32, body: usize, len: u32): void {
  stu(h + SNAP_AGG, ldu(s + SLOT_AGG));
  stu(h + SNAP_KEY, ldu(s + SLOT_KEY));
  stu(h + SNAP_SLOT, i);
  stu(h + SNAP_LEN, len);
  stf(h + SNAP_START, ldf(s + SLOT_START));
  stf(h + SNAP_END, ldf(s + SLOT_END));
  stu(h + SNAP_BODY, <u32>body);
}

/** Writes the body of the changes region's record k (unwritten: its slot is PENDING, as at the barrier). */
function bodyOf(k: u32): void {
  const h = chHeads + <usize>k * SNAP_HEADER;
  const i = ldu(h + SNAP_SLOT);
  const s = slotAddr(i);
  stu(h + SNAP_LEN, bodyWrite(s, chBody + <usize>ldu(h + SNAP_BODY)));
  stu(s + SLOT_FLAGS, ldu(s + SLOT_FLAGS) & ~SLOT_PENDING);
}

/**
 * Slot i is PENDING and about to change or go: its body is written first (slots.ts).
 * A change set given up before it was encoded leaves its unwritten slots PENDING
 * until the next serializeChanges rewrites the region: their record is then someone
 * else's (or none), and they only stop being PENDING.
 */
export function snapPending(i: u32): void {
  const k = slotPendingRecord(i);
  const h = chHeads + <usize>k * SNAP_HEADER;
  if (k < chCount && ldu(h + SNAP_SLOT) == i && ldu(h + SNAP_LEN) == SNAP_UNWRITTEN) bodyOf(k);
  else {
    const s = slotAddr(i);
    stu(s + SLOT_FLAGS, ldu(s + SLOT_FLAGS) & ~SLOT_PENDING);
  }
}

/**
 * Takes every live slot changed since the last call (clearing SLOT_DIRTY) into the
 * changes region: its header now, its body when snapFill or its next change writes
 * it (SLOT_PENDING until then). Empties the dirty list. Returns the number of records.
 */
export function serializeChanges(): u32 {
  chHeads = room(chHeads, chHeadCap, <usize>dirtyCount * SNAP_HEADER);
  chHeadCap = roomCap;
  let n: u32 = 0;
  let body: usize = 0;
  for (let k: u32 = 0; k < dirtyCount; k++) {
    const i = ldu(dirtyBase + (<usize>k << 2));
    const s = slotAddr(i);
    const f = ldu(s + SLOT_FLAGS);
    // Listed twice (already taken) or freed since: skip.
    if ((f & (SLOT_LIVE | SLOT_DIRTY)) != (SLOT_LIVE | SLOT_DIRTY)) continue;
    stu(s + SLOT_FLAGS, (f & ~SLOT_DIRTY) | SLOT_PENDING);
    headWrite(chHeads + <usize>n * SNAP_HEADER, s, i, body, SNAP_UNWRITTEN);
    slotPendingSet(i, n);
    body += bodyBound(s);
    n++;
  }
  dirtyReset();
  chBody = room(chBody, chBodyCap, body);
  chBodyCap = roomCap;
  chCount = n;
  return written(chHeads, n, chBody, body);
}

/** Writes the bodies of the changes region's records [from, to) not written yet. */
export function snapFill(from: u32, to: u32): void {
  if (to > chCount) to = chCount;
  for (let k = from; k < to; k++) {
    if (ldu(chHeads + <usize>k * SNAP_HEADER + SNAP_LEN) == SNAP_UNWRITTEN) bodyOf(k);
  }
}

/** Serializes every live slot, changed or not, without touching change tracking. */
export function serializeAll(): u32 {
  const used = slotsUsed(), live = slotsLive();
  let body: usize = 0;
  for (let i: u32 = 0; i < used; i++) {
    const s = slotAddr(i);
    if (ldu(s + SLOT_FLAGS) & SLOT_LIVE) body += bodyBound(s);
  }
  allHeads = room(allHeads, allHeadCap, <usize>live * SNAP_HEADER);
  allHeadCap = roomCap;
  allBody = room(allBody, allBodyCap, body);
  allBodyCap = roomCap;
  let n: u32 = 0;
  let off: usize = 0;
  for (let i: u32 = 0; i < used; i++) {
    const s = slotAddr(i);
    if ((ldu(s + SLOT_FLAGS) & SLOT_LIVE) == 0) continue;
    const len = bodyWrite(s, allBody + off);
    headWrite(allHeads + <usize>n * SNAP_HEADER, s, i, off, len);
    off += (<usize>len + 7) & ~7;
    n++;
  }
  return written(allHeads, n, allBody, off);
}

/** Whether `len` bytes at `ptr` are one well-formed slot serialization of a version this build reads (1 or 2). */
export function serialValid(ptr: usize, len: usize): bool {
  const version: u32 = len < SER_MIN_BYTES ? 0 : ldu(ptr);
  if (version < SER_VERSION_DENSE || version > SER_VERSION) return false;
  return sketchCheck(ptr + SER_SKETCH, len - SER_SKETCH, version) == len - SER_SKETCH;
}

/** Loads a slot serialization (checked by serialValid) into slot i's accumulators and sketch. */
export function slotLoad(i: u32, ptr: usize): void {
  const s = slotAddr(i);
  memory.copy(s + SLOT_COUNT, ptr + SER_ACC, SLOT_M2 + 8 - SLOT_COUNT);
  sketchRead(s + SLOT_SKETCH, ptr + SER_SKETCH, ldu(ptr));
}
