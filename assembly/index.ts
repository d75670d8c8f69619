// The ABI between TypeScript and the WebAssembly core. Nothing but exports.
//
// Per batch, TS: has decodeBatch fill ts[], val[] and key[] (or writes them),
// calls computeWatermarks, then processWindows (tumbling/sliding) or
// processSessions per aggregation, then reads the out region (results) and gone region (purged
// windows), and calls resetOutput. Any call may grow memory: re-read pointers and
// re-create views afterwards. Layouts of every region: layout.ts.
//
// Checkpoints: trackChanges turns on change tracking; serializeChanges then takes
// the windows changed since its last call into the snap region (snapPtr, snapCount,
// snapBodyPtr; their bodies written by snapFill or before the window next changes),
// and restoreWindow rebuilds a window in a fresh core (snapshot.ts).
import { windowsInit, aggConfigure, aggValues, aggKeys, aggStatus, aggOpenWindows, aggNextFire, tsBase, wmBase, batchCap } from './windows';
import { outputInit, outputReset, outBase, outCount, goneBase, goneCount, goneRecords } from './output';
export { setFireLimit } from './output';
import { slotsLive, slotsCapacity, slotsReserve, setTracking, dirtyCount, slotsMarkKeys } from './slots';
import { snapBase, snapRecords, snapBody, snapBodyLength } from './snapshot';
import { SLOT_BYTES } from './layout';
export { computeWatermarks, processWindows, processSessions, advance, restoreWindow } from './windows';
export { serializeChanges, serializeAll, snapFill } from './snapshot';
export { decodeInit, decodeBatch, decodeFields, keyTable } from './decode';
export { internTableNew, intern, internRemove, internCount, internLive, internBytes, internLen, internFresh, internFreshCount, internFreshReset, internFree } from './intern';
// For a thread that scans batches ahead of the core that decodes them (decodeFields),
// and for the scanner's own tests, which run against this release build.
export { scanRecords } from './scan';
export { parseIsoMs } from './isotime';
// Exported for the timer queue's own tests.
export { timersNew, timersPush, timersPop } from './timers';
import { timersNext, poppedSlot, poppedSerial } from './timers';
export function timersEarliest(q: usize): f64 { return timersNext(q); }
export function timersPoppedSlot(): u32 { return poppedSlot; }
export function timersPoppedSerial(): u32 { return poppedSerial; }
import { fixBase } from './decode';

/** Fixup list of the last decodeBatch: decodeBatch's result × FIX_BYTES from fixPtr(). */
export function fixPtr(): usize { return fixBase; }

/** Heap blocks for TS-owned regions (decode config, path spec, input bytes, fields). */
export function alloc(size: usize): usize { return heap.alloc(size); }
export function free(ptr: usize): void { heap.free(ptr); }

/** Allocates the batch region for `cap` events and `aggregations` aggregations. Call once. */
export function init(cap: u32, aggregations: u32): void {
  windowsInit(cap, aggregations);
  outputInit();
}

/** Sets aggregation `a`'s window (WIN_* kind, sizes in ms) and allowed lateness. */
export function configure(a: u32, kind: i32, sizeMs: f64, slideMs: f64, latenessMs: f64): void {
  aggConfigure(a, kind, sizeMs, slideMs, latenessMs);
}

/** Batch region pointers (stable after init): ts f64[cap], wm f64[cap]. */
export function tsPtr(): usize { return tsBase; }
export function wmPtr(): usize { return wmBase; }
export function capacity(): u32 { return batchCap; }
/** Per aggregation: val f64[cap], key u32[cap], evs u8[cap] (EV_* statuses). */
export function valPtr(a: u32): usize { return aggValues(a); }
export function keyPtr(a: u32): usize { return aggKeys(a); }
export function statusPtr(a: u32): usize { return aggStatus(a); }

/** Out region: outLength() RES_BYTES records from outPtr(); valid until resetOutput. */
export function outPtr(): usize { return outBase; }
export function outLength(): u32 { return outCount; }
/** Gone region: goneLength() GONE_BYTES records from gonePtr(). */
export function gonePtr(): usize { return goneBase; }
export function goneLength(): u32 { return goneCount; }
export function resetOutput(): void { outputReset(); }
/** Whether purged windows go to the gone region (on at start). */
export function recordGone(on: u32): void { goneRecords(on != 0); }

/** Open windows (tumbling/sliding: key-window slots; sessions: live sessions). */
export function openWindows(a: u32): u32 { return aggOpenWindows(a); }
/** End (ms) of aggregation `a`'s earliest unfired window, +inf for none (sessions: a lower bound). Reads the aggregation record. */
export function nextFire(a: u32): f64 { return aggNextFire(a); }
/** Bytes of linear memory the window slots occupy (sketch stores excluded: see stateBytes). */
export function slotBytes(): u32 { return <u32>(<usize>slotsLive() * SLOT_BYTES); }
/** Every slot index is below this, now and until the pool grows again. */
export function slotCapacity(): u32 { return slotsCapacity(); }
/** Grows the slot pool to room for at least n windows (restoring n then allocates no more pool). */
export function reserveSlots(n: u32): void { slotsReserve(n); }

/**
 * Key lifetime: writes bytes [ptr, ptr + cap) (a block from alloc), 1 for each key
 * id below cap that has an open window of aggregation `a`, else 0; returns how many
 * are 1. Reads the slot pool. A key id left with no open window may be freed by TS
 * (and its raw ids removed from keyTable(a) with internRemove) between two batches.
 */
export function markLiveKeys(a: u32, ptr: usize, cap: u32): u32 { return slotsMarkKeys(a, ptr, cap); }

/**
 * Change tracking for checkpoints. `on` with `listLive`: every live window counts as
 * changed (the next serializeChanges writes them all); without: they count as
 * persisted (restored). Off: nothing is tracked and the list is dropped.
 */
export function trackChanges(on: bool, listLive: bool): void { setTracking(on, listLive); }
/** Entries on the dirty list (an upper bound of the windows changed). */
export function changedSlots(): u32 { return dirtyCount; }
/**
 * The region the last serialize call wrote: snapCount() headers (SNAP_HEADER bytes
 * each) from snapPtr(), their bodies in snapBodyLength() bytes from snapBodyPtr().
 * serializeChanges' region stays at the same addresses until the next
 * serializeChanges (serializeAll writes a region of its own); its bodies are written
 * by snapFill(from, to) (a record's LEN is SNAP_UNWRITTEN until then).
 */
export function snapPtr(): usize { return snapBase; }
export function snapCount(): u32 { return snapRecords; }
export function snapBodyPtr(): usize { return snapBody; }
export function snapBodyLen(): u32 { return <u32>snapBodyLength; }

/**
 * Numbers and result records as JSON text (dtoa.ts). formatDoubles reads f64[n] at
 * src and writes the numbers and their u32 ends to TS-owned blocks; encodeResults
 * reads n result records (the out region, or a copy) and the prefix references TS
 * wrote, and writes the lines and their u32 (start, end) pairs to TS-owned blocks;
 * encodeStatePuts and encodeStateDeletes write a checkpoint's puts and deletes as
 * change-batch records from the changes region (or the deletes TS lists) and the key
 * parts TS wrote.
 */
export { formatDoubles, encodeResults, encodeStatePuts, encodeStateDeletes } from './dtoa';
