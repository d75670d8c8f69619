// Window assignment, lateness and firing for tumbling and sliding windows, and the
// session-op executor. One call handles a whole batch of one aggregation.
//
// Semantics (docs/semantics.md): windows are [start, end); W before event i is
// in wm[i]; before event i every window with end <= W fires (once) and every window
// with end + lateness <= W is purged; then the event is judged per window against W.
import {
  WIN_TUMBLING, WIN_SLIDING, WIN_SESSION, EV_OK, EV_INVALID, EV_PARTLY_LATE, EV_LATE,
  SLOT_START, SLOT_END, SLOT_KEY, SLOT_AGG, SLOT_NEXT, SLOT_SID, SLOT_SKETCH, SLOT_FLAGS, SLOT_DIRTY, SLOT_BYTES, NO_SLOT,
} from './layout';
import { ldf, stf, ldu, stu, ldi, sti, ldb, stb, zalloc, zrealloc } from './mem';
import { accInit, accAdd, accMerge } from './accumulator';
import { sketchAdd, sketchMerge, sketchCounter } from './sketch';
import { slotAlloc, slotFree, slotAddr, slotPool, slotChanged } from './slots';
import { emitResult, emitGone, outCount, fireLimit } from './output';
import { sessionsNew, sessionsAdvance, sessionsRestore, sessionsNextFire, processSessions as runSessions } from './sessions';
import { serialValid, slotLoad } from './snapshot';

// ─── Aggregation record ───────────────────────────────────────────────────────
//   ┌──────┬──────┬───────┬──────────┬───────────┬────────────────────┬──────────┬───────────┐
//   │ type │ size │ slide │ lateness │ (free 12) │ groups ptr/n/cap   │ nextFire │ nextPurge │ ...
//   └──────┴──────┴───────┴──────────┴───────────┴────────────────────┴──────────┴───────────┘
const A_TYPE: usize = 0;
const A_SIZE: usize = 8;
const A_SLIDE: usize = 16;
const A_LATENESS: usize = 24;
const A_UNUSED: usize = 32; // 12 bytes free
const A_GROUPS: usize = 44;
const A_NGROUPS: usize = 48;
const A_GCAP: usize = 52;
const A_NEXT_FIRE: usize = 56; // end of the first unfired window group, or +inf
const A_NEXT_PURGE: usize = 64; // end + lateness of the first group, or +inf
const A_VAL: usize = 72; // f64[cap]
const A_KEY: usize = 76; // u32[cap]
const A_EVS: usize = 80; // u8[cap]
const A_SESSIONS: usize = 84; // sessions: the aggregation's session state (sessions.ts)
const A_CACHE_LO: usize = 96; // timestamps in [lo, hi) share the last computed start
const A_CACHE_HI: usize = 104;
const A_CACHE_START: usize = 112;
const A_LIVE: usize = 120; // live slots (open windows of all keys)
const A_BYTES: usize = 128;

// ─── Window group: all keys' windows with one start (tumbling/sliding) ───────
//   ┌───────┬─────┬───────────┬───────┬──────────┬─────────┐
//   │ start │ end │ head slot │ fired │ keys ptr │ key cap │   f64 f64 u32 u32 u32 u32,
//   └───────┴─────┴───────────┴───────┴──────────┴─────────┘   sorted by start
// `keys` is a dense u32[keyCap] from key id to slot (NO_SLOT when absent): key ids
// are dense (interned by TS), so finding a window's slot is one indexed load.
const G_START: usize = 0;
const G_END: usize = 8;
const G_HEAD: usize = 16;
const G_FIRED: usize = 20;
const G_KEYS: usize = 24;
const G_KEYCAP: usize = 28;
const G_BYTES: usize = 32;

const MAX_AGGS: u32 = 64;
let aggs: usize = 0; // u32[MAX_AGGS] of aggregation record pointers
let aggCount: u32 = 0;
export let batchCap: u32 = 0;
export let tsBase: usize = 0; // f64[batchCap]
export let wmBase: usize = 0; // f64[batchCap]

export function windowsInit(cap: u32, count: u32): void {
  batchCap = cap;
  aggCount = count;
  tsBase = zalloc(<usize>cap << 3);
  wmBase = zalloc(<usize>cap << 3);
  aggs = zalloc(<usize>MAX_AGGS << 2);
  for (let a: u32 = 0; a < count; a++) {
    const p = zalloc(A_BYTES);
    stu(aggs + (<usize>a << 2), <u32>p);
    stu(p + A_VAL, <u32>zalloc(<usize>cap << 3));
    stu(p + A_KEY, <u32>zalloc(<usize>cap << 2));
    stu(p + A_EVS, <u32>zalloc(<usize>cap));
    stf(p + A_NEXT_FIRE, Infinity);
    stf(p + A_NEXT_PURGE, Infinity);
    stf(p + A_CACHE_LO, Infinity);
    stf(p + A_CACHE_HI, -Infinity);
  }
}

// @ts-ignore: decorator
@inline export function aggAddr(a: u32): usize { return <usize>ldu(aggs + (<usize>a << 2)); }

export function aggConfigure(a: u32, type: i32, sizeMs: f64, slideMs: f64, latenessMs: f64): void {
  const p = aggAddr(a);
  sti(p + A_TYPE, type);
  stf(p + A_SIZE, sizeMs);
  stf(p + A_SLIDE, type == WIN_TUMBLING ? sizeMs : slideMs);
  stf(p + A_LATENESS, latenessMs);
  if (type == WIN_SESSION) stu(p + A_SESSIONS, <u32>sessionsNew(sizeMs, latenessMs, p + A_LIVE));
}

export function aggValues(a: u32): usize { return <usize>ldu(aggAddr(a) + A_VAL); }
export function aggKeys(a: u32): usize { return <usize>ldu(aggAddr(a) + A_KEY); }
export function aggStatus(a: u32): usize { return <usize>ldu(aggAddr(a) + A_EVS); }
export function aggOpenWindows(a: u32): u32 {
  const p = aggAddr(a);
  return ldu(p + A_LIVE);
}

/**
 * The end of the earliest window of `a` that has not fired, +inf for none:
 * tumbling/sliding read it from the aggregation record; sessions from their fire
 * heap, whose top may be a session that has since merged or grown (a lower bound,
 * exact once W passes it). O(1): for status pages, never the hot path.
 */
export function aggNextFire(a: u32): f64 {
  const p = aggAddr(a);
  if (ldi(p + A_TYPE) == WIN_SESSION) return sessionsNextFire(<usize>ldu(p + A_SESSIONS));
  return ldf(p + A_NEXT_FIRE);
}

/** W from a partition's max: held below the other partitions' minimum, never below the floor. */
// @ts-ignore: decorator
@inline function clampW(w: f64, otherMin: f64, floorW: f64): f64 {
  if (w > otherMin) w = otherMin;
  if (w < floorW) w = floorW;
  return w;
}

/**
 * Fills wm[0..n) with W before each event: the running max of valid timestamps
 * minus the out-of-orderness bound, capped by `otherMin` (the other partitions'
 * watermark) and never below `floorW` (W is monotonic). Returns the new running max.
 */
export function computeWatermarks(n: u32, maxBefore: f64, oooMs: f64, otherMin: f64, floorW: f64): f64 {
  let m = maxBefore;
  const ts = tsBase, wm = wmBase;
  let i: u32 = 0;
  // The common case, four events per iteration (the loop's own overhead was half its
  // cost): m only grows, so once W = m - ooo is at the floor it stays there or above,
  // and a block whose W would pass the other partitions' cap is redone below.
  if (m - oooMs >= floorW) {
    for (; i + 4 <= n; i += 4) {
      const p = <usize>i << 3;
      const t0 = ldf(ts + p), t1 = ldf(ts + p + 8), t2 = ldf(ts + p + 16), t3 = ldf(ts + p + 24);
      const m0 = m;
      stf(wm + p, m - oooMs);
      if (t0 > m) m = t0; // NaN (invalid) never moves W
      stf(wm + p + 8, m - oooMs);
      if (t1 > m) m = t1;
      stf(wm + p + 16, m - oooMs);
      if (t2 > m) m = t2;
      stf(wm + p + 24, m - oooMs);
      if (t3 > m) m = t3;
      if (m - oooMs > otherMin) {
        m = m0;
        break;
      }
    }
  }
  for (; i < n; i++) {
    stf(wm + (<usize>i << 3), clampW(m - oooMs, otherMin, floorW));
    const t = ldf(ts + (<usize>i << 3));
    if (t > m) m = t;
  }
  return m;
}

// ─── Groups ───────────────────────────────────────────────────────────────────

function groupFind(p: usize, start: f64): i32 {
  const g = <usize>ldu(p + A_GROUPS);
  const n = <i32>ldu(p + A_NGROUPS);
  for (let i = n - 1; i >= 0; i--) {
    const gs = ldf(g + <usize>i * G_BYTES + G_START);
    if (gs == start) return i;
    if (gs < start) return -1;
  }
  return -1;
}

/** Inserts a group for [start, end), keeping the array sorted by start. */
function groupInsert(p: usize, start: f64, end: f64, fired: bool): i32 {
  let n = ldu(p + A_NGROUPS);
  let cap = ldu(p + A_GCAP);
  let g = <usize>ldu(p + A_GROUPS);
  if (n == cap) {
    const c = cap ? cap << 1 : 8;
    g = cap ? zrealloc(g, <usize>cap * G_BYTES, <usize>c * G_BYTES) : zalloc(<usize>c * G_BYTES);
    stu(p + A_GROUPS, <u32>g);
    stu(p + A_GCAP, c);
  }
  let i = <i32>n;
  while (i > 0 && ldf(g + <usize>(i - 1) * G_BYTES + G_START) > start) i--;
  memory.copy(g + <usize>(i + 1) * G_BYTES, g + <usize>i * G_BYTES, <usize>(<i32>n - i) * G_BYTES);
  const e = g + <usize>i * G_BYTES;
  stf(e + G_START, start);
  stf(e + G_END, end);
  stu(e + G_HEAD, NO_SLOT);
  stu(e + G_FIRED, fired ? 1 : 0);
  stu(e + G_KEYS, 0);
  stu(e + G_KEYCAP, 0);
  stu(p + A_NGROUPS, n + 1);
  if (!fired && end < ldf(p + A_NEXT_FIRE)) stf(p + A_NEXT_FIRE, end);
  const purgeAt = end + ldf(p + A_LATENESS);
  if (purgeAt < ldf(p + A_NEXT_PURGE)) stf(p + A_NEXT_PURGE, purgeAt);
  return i;
}

/** Fires every unfired group with end <= w. */
function fireDue(a: u32, p: usize, w: f64): bool {
  const n = ldu(p + A_NGROUPS);
  let next = Infinity;
  let limited = false;
  for (let i: u32 = 0; i < n; i++) {
    const e = <usize>ldu(p + A_GROUPS) + <usize>i * G_BYTES;
    if (ldu(e + G_FIRED)) continue;
    const end = ldf(e + G_END);
    if (end > w) { next = end; break; }
    // At the limit: this group and the ones after it fire at the next call.
    if (outCount >= fireLimit) { next = end; limited = true; break; }
    stu(e + G_FIRED, 1);
    let s = ldu(e + G_HEAD);
    while (s != NO_SLOT) {
      emitResult(a, s, false);
      s = ldu(slotAddr(s) + SLOT_NEXT);
    }
  }
  stf(p + A_NEXT_FIRE, next);
  return limited;
}

/** Drops every group with end + lateness <= w (they have fired: fireDue runs first). */
function purgeDue(a: u32, p: usize, w: f64): void {
  const lateness = ldf(p + A_LATENESS);
  const g = <usize>ldu(p + A_GROUPS);
  const n = ldu(p + A_NGROUPS);
  let k: u32 = 0;
  while (k < n && ldf(g + <usize>k * G_BYTES + G_END) + lateness <= w) {
    let s = ldu(g + <usize>k * G_BYTES + G_HEAD);
    while (s != NO_SLOT) {
      const next = ldu(slotAddr(s) + SLOT_NEXT);
      emitGone(a, s);
      slotFree(s);
      stu(p + A_LIVE, ldu(p + A_LIVE) - 1);
      s = next;
    }
    const keys = <usize>ldu(g + <usize>k * G_BYTES + G_KEYS);
    if (keys) heap.free(keys);
    k++;
  }
  if (k) {
    memory.copy(g, g + <usize>k * G_BYTES, <usize>(n - k) * G_BYTES);
    stu(p + A_NGROUPS, n - k);
  }
  stf(p + A_NEXT_PURGE, n - k > 0 ? ldf(g + G_END) + lateness : Infinity);
}

/**
 * Fires and purges what W = w makes due, without new events (idle time, end of input).
 * Returns true when it stopped at fireLimit results with more windows due: nothing is
 * purged then (a window due to be purged may not have fired yet), and the next call
 * with the same w goes on.
 */
export function advance(a: u32, w: f64): bool {
  const p = aggAddr(a);
  if (ldi(p + A_TYPE) == WIN_SESSION) return sessionsAdvance(a, <usize>ldu(p + A_SESSIONS), w);
  if (w >= ldf(p + A_NEXT_FIRE) && fireDue(a, p, w)) return true;
  if (w >= ldf(p + A_NEXT_PURGE)) purgeDue(a, p, w);
  return false;
}

// ─── The batch kernel ─────────────────────────────────────────────────────────

// Sliding windows: per window of the current event (k = 0, 1, ...), its group's
// key -> slot array and capacity (u32, u32), valid within one processWindows call.
const SLIDE_CACHE: usize = 64;
const SLIDE_CACHE_BYTES: usize = SLIDE_CACHE << 3;
const slideCache: usize = memory.data(<i32>SLIDE_CACHE_BYTES, 8);

// Sliding windows whose size is a multiple of the slide: every event of one slide
// [S, S + slide) belongs to the same K = size / slide windows, whose oldest ends at
// S + slide. So an event with W < S + slide is on time for all of them, and their K
// slots can be cached per key. The cache has two ways, each for one slide (events
// out of order near a slide boundary alternate between two): way w holds the slide
// starting at wayStart[w], and entry (key, w), the K slots kslots[(key·2 + w)·K ..],
// is valid while kstamp[key·2 + w] == wayEpoch[w]. A third slide takes the way of
// the older one (a new epoch); a new processWindows call (restore, advance may free
// slots between calls) empties both. A purge need not: it frees windows with
// end + lateness <= W, and an entry is used only while W < S + slide <= their ends.
let kslots: usize = 0; // u32[kslotCap / 4]
let kslotCap: usize = 0; // bytes
let kstamp: usize = 0; // u32[kstampCap · 2]
let kstampCap: u32 = 0; // keys
let kepochs: u32 = 0; // the last epoch handed out
const wayStart: usize = memory.data(16, 8); // f64[2]
const wayEpoch: usize = memory.data(8, 4); // u32[2]

/** A new epoch: one that no stamp holds. */
function kepochNew(): u32 {
  // After 2^32 epochs one would meet stamps left from long ago: clear them.
  if (++kepochs == 0) {
    if (kstampCap) memory.fill(kstamp, 0, <usize>kstampCap << 3);
    stu(wayEpoch, 0);
    stu(wayEpoch + 4, 0);
    kepochs = 1;
  }
  return kepochs;
}

/** Empties both ways. */
function kcacheReset(): void {
  stf(wayStart, NaN);
  stf(wayStart + 8, NaN);
  stu(wayEpoch, kepochNew());
  stu(wayEpoch + 4, kepochNew());
}

/** The way that caches the slide starting at `start`, taking the older slide's way if neither does. */
function kwayOf(start: f64): u32 {
  const s0 = ldf(wayStart), s1 = ldf(wayStart + 8);
  if (start == s0) return 0;
  if (start == s1) return 1;
  const w: u32 = s0 != s0 || (s1 == s1 && s0 < s1) ? 0 : 1; // an empty way, or the older slide's
  stf(wayStart + (<usize>w << 3), start);
  stu(wayEpoch + (<usize>w << 2), kepochNew());
  return w;
}

/** Makes the key cache hold keys up to `key` with `k` slots per entry (entries survive). */
function kcacheFit(key: u32, k: u32): void {
  if (key >= kstampCap) {
    let c = kstampCap ? kstampCap : 64;
    while (c <= key) c <<= 1;
    // Stamp 0 never equals a live epoch (epochs start at 1).
    kstamp = kstampCap ? zrealloc(kstamp, <usize>kstampCap << 3, <usize>c << 3) : zalloc(<usize>c << 3);
    kstampCap = c;
  }
  const need = (<usize>kstampCap * <usize>k) << 3;
  if (need > kslotCap) {
    // Entry (key·2 + w)·k + j does not depend on the capacity: a copy keeps them valid.
    kslots = kslotCap ? heap.realloc(kslots, need) : heap.alloc(need);
    kslotCap = need;
  }
}

/** Index of the group of `start`, inserted if new (usually the last one: scan from the end). */
// @ts-ignore: decorator
@inline function groupOf(p: usize, start: f64, end: f64, w: f64): i32 {
  const g = <usize>ldu(p + A_GROUPS);
  const n = <i32>ldu(p + A_NGROUPS);
  if (n > 0 && ldf(g + <usize>(n - 1) * G_BYTES + G_START) == start) return n - 1;
  const gi = groupFind(p, start);
  // A new group whose end W already passed is born fired: its slots fire on every add.
  return gi >= 0 ? gi : groupInsert(p, start, end, w >= end);
}

/** The slot of `key` in group `gi` of aggregation `a`, created (and linked into the group) if new. */
// @ts-ignore: decorator
@inline function slotFor(a: u32, p: usize, gi: i32, key: u32): u32 {
  let ge = <usize>ldu(p + A_GROUPS) + <usize>gi * G_BYTES;
  const cap = ldu(ge + G_KEYCAP);
  if (key < cap) {
    const s = ldu(<usize>ldu(ge + G_KEYS) + (<usize>key << 2));
    if (s != NO_SLOT) return s;
  } else {
    let c = cap ? cap : 64;
    while (c <= key) c <<= 1;
    // TLSF's realloc needs a live block: the first array is a plain alloc.
    const keys = cap ? heap.realloc(<usize>ldu(ge + G_KEYS), <usize>c << 2) : heap.alloc(<usize>c << 2);
    memory.fill(keys + (<usize>cap << 2), 0xff, <usize>(c - cap) << 2);
    stu(ge + G_KEYS, <u32>keys);
    stu(ge + G_KEYCAP, c);
  }
  const s = slotAlloc();
  ge = <usize>ldu(p + A_GROUPS) + <usize>gi * G_BYTES;
  const sp = slotAddr(s);
  accInit(sp);
  stf(sp + SLOT_START, ldf(ge + G_START));
  stf(sp + SLOT_END, ldf(ge + G_END));
  stu(sp + SLOT_KEY, key);
  stu(sp + SLOT_AGG, a);
  stu(<usize>ldu(ge + G_KEYS) + (<usize>key << 2), s);
  stu(sp + SLOT_NEXT, ldu(ge + G_HEAD));
  stu(ge + G_HEAD, s);
  stu(p + A_LIVE, ldu(p + A_LIVE) + 1);
  return s;
}

/** Adds x to slot s; a window W already passed fires again at once (late but allowed). */
// @ts-ignore: decorator
@inline function addToSlot(a: u32, s: u32, x: f64, late: bool): void {
  const sp = slotAddr(s);
  slotChanged(sp, s);
  accAdd(sp, x);
  sketchAdd(sp + SLOT_SKETCH, x);
  if (late) emitResult(a, s, true);
}

/**
 * Runs events 0..n-1 of the batch through tumbling or sliding aggregation `a`.
 * Reads ts, wm, val[a], key[a]; writes evs[a], the out and gone regions, state.
 * Returns how many events got a status other than EV_OK.
 */
export function processWindows(a: u32, n: u32): u32 {
  const p = aggAddr(a);
  const evs = <usize>ldu(p + A_EVS);
  memory.fill(evs, EV_OK, <usize>n);
  return ldi(p + A_TYPE) == WIN_SLIDING ? processSliding(a, p, n, evs) : processTumbling(a, p, n, evs);
}

// ─── Tumbling ─────────────────────────────────────────────────────────────────

// The key -> slot array and its capacity of the group tumblingSlow touched last.
let slowSlots: usize = 0;
let slowSlotCap: u32 = 0;

/** floor(t / size) · size with a mathematical modulus (negative times floor down). */
function windowStart(t: f64, size: f64): f64 {
  const ti = <i64>t, sl = <i64>size;
  let r = ti % sl;
  if (r < 0) r += sl;
  return <f64>(ti - r);
}

/** Fires and purges what W = w makes due (fireDue first: a purged window has fired). */
function dueAt(a: u32, p: usize, w: f64): void {
  if (w >= ldf(p + A_NEXT_FIRE)) fireDue(a, p, w);
  if (w >= ldf(p + A_NEXT_PURGE)) purgeDue(a, p, w);
}

/**
 * Every tumbling event but an on-time one for a window that has its key: too late,
 * late but allowed (fires again at once), or the first of its key in the window.
 * Leaves the window's key -> slot array in slowSlots (cap 0: none). Returns the status.
 */
function tumblingSlow(a: u32, p: usize, key: u32, x: f64, w: f64, start: f64, end: f64): u8 {
  slowSlotCap = 0;
  if (w >= end + ldf(p + A_LATENESS)) return EV_LATE;
  const gi = groupOf(p, start, end, w);
  const s = slotFor(a, p, gi, key);
  const ge = <usize>ldu(p + A_GROUPS) + <usize>gi * G_BYTES;
  slowSlots = <usize>ldu(ge + G_KEYS);
  slowSlotCap = ldu(ge + G_KEYCAP);
  addToSlot(a, s, x, w >= end);
  return EV_OK;
}

/**
 * The tumbling kernel: tumblingRun takes events while they are the common case (on
 * time, for a window that already holds the key, nothing to fire, no store to grow);
 * every other event goes through this loop's general path, one at a time.
 */
function processTumbling(a: u32, p: usize, n: u32, evs: usize): u32 {
  const size = ldf(p + A_SIZE);
  const vals = <usize>ldu(p + A_VAL);
  const keys = <usize>ldu(p + A_KEY);
  const ts = tsBase, wm = wmBase;
  // [lo, hi): the window of the last event; slots: its key -> slot array (cap 0: none).
  let lo = ldf(p + A_CACHE_LO), hi = ldf(p + A_CACHE_HI);
  let due = min(ldf(p + A_NEXT_FIRE), ldf(p + A_NEXT_PURGE));
  let slots: usize = 0, slotCap: u32 = 0;
  let notOk: u32 = 0;
  for (let i = tumblingRun(0, n, ts, wm, vals, keys, slots, slotCap, lo, hi, due); i < n; i = tumblingRun(i + 1, n, ts, wm, vals, keys, slots, slotCap, lo, hi, due)) {
    const w = ldf(wm + (<usize>i << 3));
    if (w >= due) {
      dueAt(a, p, w);
      due = min(ldf(p + A_NEXT_FIRE), ldf(p + A_NEXT_PURGE));
      slotCap = 0; // a purge may have freed the array
    }
    const t = ldf(ts + (<usize>i << 3));
    const x = ldf(vals + (<usize>i << 3));
    if (isNaN(t) || isNaN(x)) {
      stb(evs + i, EV_INVALID);
      notOk++;
      continue;
    }
    if (!(t >= lo && t < hi)) {
      lo = windowStart(t, size);
      hi = lo + size;
      slotCap = 0;
    }
    const key = ldu(keys + (<usize>i << 2));
    const s = key < slotCap ? load<u32>(slots + (<usize>key << 2)) : NO_SLOT;
    if (s != NO_SLOT && w < hi) {
      addToSlot(a, s, x, false);
      continue;
    }
    const status = tumblingSlow(a, p, key, x, w, lo, hi);
    if (status != EV_OK) {
      stb(evs + i, status);
      notOk++;
    }
    slots = slowSlots;
    slotCap = slowSlotCap;
    due = min(ldf(p + A_NEXT_FIRE), ldf(p + A_NEXT_PURGE)); // a new group may fire sooner
  }
  stf(p + A_CACHE_LO, lo);
  stf(p + A_CACHE_HI, hi);
  stf(p + A_CACHE_START, lo);
  return notOk;
}

/**
 * Adds events i, i+1, ... of a tumbling aggregation while each is the common case:
 * valid, in [lo, hi), W < due and W < hi (on time, nothing to fire or purge first), its
 * key has a slot in `slots`, the slot is already marked changed, and its sketch store
 * covers the value. Returns the index of the first event that is not (or n), unchanged.
 * No calls: a call anywhere in a loop makes V8 spill the values live across it, and
 * that cost this loop about a third of its time (tumbling kernel 14 -> 10 ns/event).
 */
function tumblingRun(i: u32, n: u32, ts: usize, wm: usize, vals: usize, keys: usize, slots: usize, slotCap: u32, lo: f64, hi: f64, due: f64): u32 {
  // No min(): V8 lowers f64 min to a NaN- and sign-aware branch chain it does not hoist.
  const limit = due < hi ? due : hi;
  const pool = slotPool(); // no slot is allocated here: the pool stays put
  for (; i < n; i++) {
    if (ldf(wm + (<usize>i << 3)) >= limit) return i;
    const t = ldf(ts + (<usize>i << 3));
    // Two tests, not one of a && b: V8 would materialize both as 0/1 and test their and.
    if (!(t >= lo)) return i; // NaN t too
    if (!(t < hi)) return i;
    const key = ldu(keys + (<usize>i << 2));
    if (key >= slotCap) return i;
    const s = load<u32>(slots + (<usize>key << 2));
    if (s == NO_SLOT) return i;
    const sp = pool + <usize>s * SLOT_BYTES;
    if ((ldu(sp + SLOT_FLAGS) & SLOT_DIRTY) == 0) return i;
    const x = ldf(vals + (<usize>i << 3));
    const c = sketchCounter(sp + SLOT_SKETCH, x); // 0 for NaN x too
    if (c == 0) return i;
    accAdd(sp, x);
    store<u32>(c, load<u32>(c) + 1);
  }
  return n;
}

// ─── Sliding ──────────────────────────────────────────────────────────────────

/**
 * The sliding kernel. With size = K·slide, slidingRun takes the events whose K slots
 * are in the key cache (above) and need nothing else; every other event goes through
 * this loop's general path, one at a time.
 */
function processSliding(a: u32, p: usize, n: u32, evs: usize): u32 {
  const size = ldf(p + A_SIZE);
  const slide = ldf(p + A_SLIDE);
  const lateness = ldf(p + A_LATENESS);
  const vals = <usize>ldu(p + A_VAL);
  const keys = <usize>ldu(p + A_KEY);
  let cacheLo = ldf(p + A_CACHE_LO), cacheHi = ldf(p + A_CACHE_HI), cacheStart = ldf(p + A_CACHE_START);
  let nextFire = ldf(p + A_NEXT_FIRE), nextPurge = ldf(p + A_NEXT_PURGE);
  // slotCap 0: the slide cache (below) must be cleared before its next use.
  let slotCap: u32 = 0;
  const kWindows = <u32>(size / slide);
  const even = <f64>kWindows * slide == size && kWindows <= <u32>SLIDE_CACHE;
  if (even) {
    kcacheReset();
    kcacheFit(0, kWindows);
  }
  let notOk: u32 = 0;
  const ts = tsBase, wm = wmBase;
  // The common case in bulk (slidingRun); every other event one at a time below.
  for (
    let i = even ? slidingRun(0, n, ts, wm, vals, keys, slide, min(nextFire, nextPurge), kWindows) : 0;
    i < n;
    i = even ? slidingRun(i + 1, n, ts, wm, vals, keys, slide, min(nextFire, nextPurge), kWindows) : i + 1
  ) {
    const w = ldf(wm + (<usize>i << 3));
    if (w >= nextFire || w >= nextPurge) {
      dueAt(a, p, w);
      nextFire = ldf(p + A_NEXT_FIRE);
      nextPurge = ldf(p + A_NEXT_PURGE);
      slotCap = 0;
    }
    const t = ldf(ts + (<usize>i << 3));
    const x = ldf(vals + (<usize>i << 3));
    if (isNaN(t) || isNaN(x)) {
      stb(evs + i, EV_INVALID);
      notOk++;
      continue;
    }
    // The start of the last slide holding t, cached because consecutive events share it.
    if (!(t >= cacheLo && t < cacheHi)) {
      cacheStart = windowStart(t, slide);
      cacheLo = cacheStart;
      cacheHi = cacheStart + slide;
      slotCap = 0;
    }
    const key = ldu(keys + (<usize>i << 2));
    if (even && w < cacheHi) {
      // On time for all K windows: their slots from the key cache, filled on a miss.
      if (key >= kstampCap) kcacheFit(key, kWindows);
      const way = kwayOf(cacheStart);
      const entry = (<usize>key << 1) + <usize>way;
      const ks = kslots + ((entry * <usize>kWindows) << 2);
      const epoch = ldu(wayEpoch + (<usize>way << 2));
      if (ldu(kstamp + (entry << 2)) != epoch) {
        let st = cacheStart;
        for (let k: u32 = 0; k < kWindows; k++, st -= slide) {
          const gi = groupOf(p, st, st + size, w);
          stu(ks + (<usize>k << 2), slotFor(a, p, gi, key));
        }
        stu(kstamp + (entry << 2), epoch);
        nextFire = ldf(p + A_NEXT_FIRE);
        nextPurge = ldf(p + A_NEXT_PURGE);
        slotCap = 0; // the slide cache below may hold arrays slotFor moved
      }
      for (let k: u32 = 0; k < kWindows; k++) addToSlot(a, ldu(ks + (<usize>k << 2)), x, false);
    } else {
      // Window k of the event starts at cacheStart - k·slide. While cacheStart and
      // the groups stay, entry k of the slide cache holds that group's key -> slot
      // array (cap 0: look it up), as `slots` does for tumbling windows.
      if (slotCap == 0) {
        memory.fill(slideCache, 0, SLIDE_CACHE_BYTES);
        slotCap = 1; // the cache is valid (entries may still be empty)
      }
      let late: u32 = 0, windows: u32 = 0, changed = false;
      let k: usize = 0;
      for (let st = cacheStart; st > t - size; st -= slide, k++) {
        windows++;
        const end = st + size;
        if (w >= end + lateness) {
          late++;
          continue;
        }
        const ce = slideCache + (k << 3);
        let s = NO_SLOT;
        if (k < SLIDE_CACHE && key < ldu(ce + 4)) s = load<u32>(<usize>ldu(ce) + (<usize>key << 2));
        if (s == NO_SLOT) {
          const gi = groupOf(p, st, end, w);
          s = slotFor(a, p, gi, key);
          if (k < SLIDE_CACHE) {
            const ge = <usize>ldu(p + A_GROUPS) + <usize>gi * G_BYTES;
            stu(ce, ldu(ge + G_KEYS));
            stu(ce + 4, ldu(ge + G_KEYCAP));
          }
          changed = true;
        }
        addToSlot(a, s, x, w >= end);
      }
      if (changed) {
        nextFire = ldf(p + A_NEXT_FIRE);
        nextPurge = ldf(p + A_NEXT_PURGE);
      }
      if (late) {
        stb(evs + i, late == windows ? EV_LATE : EV_PARTLY_LATE);
        notOk++;
      }
    }
  }
  stf(p + A_CACHE_LO, cacheLo);
  stf(p + A_CACHE_HI, cacheHi);
  stf(p + A_CACHE_START, cacheStart);
  return notOk;
}

// Counter addresses of one event's K windows, checked before any is incremented.
const runCounters: usize = memory.data(<i32>(SLIDE_CACHE << 2), 4);

/**
 * Adds events i, i+1, ... of a sliding aggregation (size = k·slide, slide `slide`)
 * while each is the common case: valid, in one of the two cached slides, W < due
 * and W below that slide's end (on time for all k windows, nothing to fire or purge
 * first), its entry valid, and a sketch store in each of its k slots that covers the
 * value. Returns the index of the first event that is not (or n), unchanged. No
 * calls, as tumblingRun. The slots of a valid entry are marked changed: the general
 * path filled the entry and added to each slot in this processWindows call, and
 * nothing clears the mark before the call returns.
 */
function slidingRun(i: u32, n: u32, ts: usize, wm: usize, vals: usize, keys: usize, slide: f64, due: f64, k: u32): u32 {
  // One copy of the loop per k up to four, each with its windows unrolled (as loops
  // they cost a sixth of the kernel, and tests of k held values V8 then spilled).
  if (k == 4) return slidingRunK(i, n, ts, wm, vals, keys, slide, due, 4);
  if (k == 3) return slidingRunK(i, n, ts, wm, vals, keys, slide, due, 3);
  if (k == 2) return slidingRunK(i, n, ts, wm, vals, keys, slide, due, 2);
  if (k == 1) return slidingRunK(i, n, ts, wm, vals, keys, slide, due, 1);
  return slidingRunK(i, n, ts, wm, vals, keys, slide, due, k);
}

// @ts-ignore: decorator
@inline function slidingRunK(i: u32, n: u32, ts: usize, wm: usize, vals: usize, keys: usize, slide: f64, due: f64, k: u32): u32 {
  const lo0 = ldf(wayStart), lo1 = ldf(wayStart + 8);
  const hi0 = lo0 + slide, hi1 = lo1 + slide; // NaN for an empty way: no t is in it
  const e0 = ldu(wayEpoch), e1 = ldu(wayEpoch + 4);
  const stamps = kstamp, cap = kstampCap, cache = kslots;
  const pool = slotPool(); // no slot is allocated here: the pool stays put
  for (; i < n; i++) {
    const w = ldf(wm + (<usize>i << 3));
    if (w >= due) return i;
    const t = ldf(ts + (<usize>i << 3));
    const x = ldf(vals + (<usize>i << 3)); // NaN x: sketchCounter is 0 below
    const key = ldu(keys + (<usize>i << 2));
    if (key >= cap) return i;
    let entry: usize, epoch: u32;
    if (t >= lo0 && t < hi0 && w < hi0) {
      entry = <usize>key << 1;
      epoch = e0;
    } else if (t >= lo1 && t < hi1 && w < hi1) {
      entry = (<usize>key << 1) + 1;
      epoch = e1;
    } else return i; // NaN t too
    if (ldu(stamps + (entry << 2)) != epoch) return i;
    const ks = cache + ((entry * <usize>k) << 2);
    if (k <= 4) {
      const s0 = pool + <usize>ldu(ks) * SLOT_BYTES;
      const s1 = k > 1 ? pool + <usize>ldu(ks + 4) * SLOT_BYTES : s0;
      const s2 = k > 2 ? pool + <usize>ldu(ks + 8) * SLOT_BYTES : s0;
      const s3 = k > 3 ? pool + <usize>ldu(ks + 12) * SLOT_BYTES : s0;
      const c0 = sketchCounter(s0 + SLOT_SKETCH, x);
      if (c0 == 0) return i;
      const c1 = k > 1 ? sketchCounter(s1 + SLOT_SKETCH, x) : c0;
      if (c1 == 0) return i;
      const c2 = k > 2 ? sketchCounter(s2 + SLOT_SKETCH, x) : c0;
      if (c2 == 0) return i;
      const c3 = k > 3 ? sketchCounter(s3 + SLOT_SKETCH, x) : c0;
      if (c3 == 0) return i;
      accAdd(s0, x);
      store<u32>(c0, load<u32>(c0) + 1);
      if (k > 1) {
        accAdd(s1, x);
        store<u32>(c1, load<u32>(c1) + 1);
      }
      if (k > 2) {
        accAdd(s2, x);
        store<u32>(c2, load<u32>(c2) + 1);
      }
      if (k > 3) {
        accAdd(s3, x);
        store<u32>(c3, load<u32>(c3) + 1);
      }
      continue;
    }
    for (let j: u32 = 0; j < k; j++) {
      const c = sketchCounter(pool + <usize>ldu(ks + (<usize>j << 2)) * SLOT_BYTES + SLOT_SKETCH, x);
      if (c == 0) return i;
      stu(runCounters + (<usize>j << 2), <u32>c);
    }
    for (let j: u32 = 0; j < k; j++) {
      accAdd(pool + <usize>ldu(ks + (<usize>j << 2)) * SLOT_BYTES, x);
      const c = <usize>ldu(runCounters + (<usize>j << 2));
      store<u32>(c, load<u32>(c) + 1);
    }
  }
  return n;
}

/**
 * Runs events 0..n-1 of the batch through session aggregation `a`.
 * Reads ts, wm, val[a], key[a]; writes evs[a], the out and gone regions, state.
 * Returns how many events got a status other than EV_OK.
 */
export function processSessions(a: u32, n: u32): u32 {
  const p = aggAddr(a);
  const evs = <usize>ldu(p + A_EVS);
  memory.fill(evs, EV_OK, <usize>n);
  return runSessions(a, <usize>ldu(p + A_SESSIONS), n, tsBase, wmBase, <usize>ldu(p + A_VAL), <usize>ldu(p + A_KEY), evs);
}

// ─── Restore (checkpoints) ────────────────────────────────────────────────────

/**
 * Rebuilds one window of aggregation `a` in a core that has seen no events, from a
 * slot serialization (`len` bytes at `ptr`), as it stood when W was `w`: a window
 * with end <= w has fired, one with end + lateness <= w would have been purged.
 * Tumbling/sliding: into its group (fired iff w >= end); sessions: into the key's
 * list (snapshot.ts, sessions.ts). The slot is not marked changed.
 * Returns the slot, or NO_SLOT if the bytes are not a valid serialization, the
 * window is not one of this aggregation's, or the key already has it (or, for
 * sessions, one it would intersect or touch).
 */
export function restoreWindow(a: u32, key: u32, start: f64, end: f64, w: f64, ptr: usize, len: usize): u32 {
  if (!serialValid(ptr, len) || !(end > start)) return NO_SLOT;
  const p = aggAddr(a);
  let slot: u32;
  if (ldi(p + A_TYPE) == WIN_SESSION) {
    slot = sessionsRestore(a, <usize>ldu(p + A_SESSIONS), key, start, end, w);
    if (slot == NO_SLOT) return NO_SLOT;
  } else {
    const slide = ldf(p + A_SLIDE);
    if (end - start != ldf(p + A_SIZE) || start - Math.floor(start / slide) * slide != 0) return NO_SLOT;
    let gi = groupFind(p, start);
    if (gi < 0) gi = groupInsert(p, start, end, w >= end);
    const ge = <usize>ldu(p + A_GROUPS) + <usize>gi * G_BYTES;
    if (key < ldu(ge + G_KEYCAP) && ldu(<usize>ldu(ge + G_KEYS) + (<usize>key << 2)) != NO_SLOT) return NO_SLOT;
    slot = slotFor(a, p, gi, key);
  }
  slotLoad(slot, ptr);
  return slot;
}
