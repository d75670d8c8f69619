// Slots: the state of one window of one key, in one growable pool.
import { SLOT_BYTES, SLOT_NEXT, SLOT_FLAGS, SLOT_SKETCH, SLOT_LIVE, NO_SLOT } from './layout';
import { ldu, stu, zalloc, zrealloc } from './mem';
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
