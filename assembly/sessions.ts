// Session windows of one aggregation, entirely in the core.
//
// A session is a slot (slots.ts): SLOT_START/SLOT_END hold its window, SLOT_NEXT links
// the sessions of one key in order of start, SLOT_SID holds a serial number that
// timers check. Per key the live sessions are disjoint and non-touching. An event
// proposes [ts, ts + gap) and merges with every live session of its key that it
// intersects or touches (a contiguous run of the list); the merged window is judged
// against W (docs/semantics.md).
//
// Timers (fire at end, purge at end + lateness) are armed once per session and
// re-armed when they pop early because the session grew. A stale timer (its session
// merged away, its slot reused) is recognised by the serial and ignored (timers.ts
// holds both kinds of timer structure). Fire timers are set for a time after W and
// taken out as W passes them: they live in a timer queue. A purge timer is armed
// when its session first fires, and sessions fire in order of end, so purge timers
// come almost in order: they go into a queue kept sorted by inserting from its tail,
// and only one that would move more than a few entries goes into a min-heap (both
// are read, earliest first).
import {
  EV_OK, EV_INVALID, EV_LATE, NO_SLOT,
  SLOT_START, SLOT_END, SLOT_KEY, SLOT_AGG, SLOT_NEXT, SLOT_SID, SLOT_SKETCH, SLOT_FLAGS, SLOT_FIRED, SLOT_LIVE,
  SLOT_DIRTY, SLOT_BYTES, SK_POS, ST_PTR, ST_CAP,
} from './layout';
import { ldf, stf, ldu, stu, stb, zalloc } from './mem';
import { accInit, accAdd, accMerge } from './accumulator';
import { sketchAdd, sketchMerge, sketchCounter } from './sketch';
import { slotAlloc, slotFree, slotAddr, slotPool, slotTouch } from './slots';
import { emitResult, emitGone, outCount, fireLimit } from './output';
import {
  E_AT, E_SLOT, E_SERIAL, E_BYTES, HEAP_BYTES, copyEntry, poppedSlot, poppedSerial, takeOut,
  heapInit, heapNext, heapDue, heapPush, heapPop, timersNew, timersPush, timersNext, timersDue, timersPop,
} from './timers';

// ─── Session state of one aggregation ─────────────────────────────────────────
//   ┌─────┬──────────┬──────────┬─────────┬────────────────┬──────────────────────┬─────────────────────────────┐
//   │ gap │ lateness │ live ptr │ heads   │ fire timers    │ purge heap ptr/n/cap │ purge queue ptr/head/n/cap  │
//   │ f64 │ f64      │ u32      │ ptr/cap │ (timers.ts) ptr│                      │                             │
//   └─────┴──────────┴──────────┴─────────┴────────────────┴──────────────────────┴─────────────────────────────┘
// heads: i32[cap] key id -> first session slot (NO_SLOT = none).
// Queue entries are timer entries (timers.ts).
const S_GAP: usize = 0;
const S_LATENESS: usize = 8;
const S_LIVE: usize = 16; // pointer to the aggregation's live-slot counter
const S_HEADS: usize = 20;
const S_HEADCAP: usize = 24;
const S_FIRE: usize = 28; // pointer to a timer queue
const S_PURGE: usize = 32; // heap
const S_QUEUE: usize = S_PURGE + HEAP_BYTES; // purge queue: ptr, head, n, cap (a ring of entries, cap a power of two)
const S_BYTES: usize = S_QUEUE + 16;
const Q_PTR: usize = 0;
const Q_HEAD: usize = 4;
const Q_N: usize = 8;
const Q_CAP: usize = 12;
/** A purge timer that would move more queued ones than this goes into the purge heap. */
const QUEUE_SHIFTS: u32 = 8;

const ARMED: u32 = 8; // slot flag: a fire timer is pending (SLOT_FIRED = 1, SLOT_DIRTY = 2, SLOT_LIVE = 4)
const PURGE_ARMED: u32 = 16; // slot flag: a purge timer is pending

let serials: u32 = 0;

export function sessionsNew(gapMs: f64, latenessMs: f64, live: usize): usize {
  const s = zalloc(S_BYTES);
  stf(s + S_GAP, gapMs);
  stf(s + S_LATENESS, latenessMs);
  stu(s + S_LIVE, <u32>live);
  stu(s + S_FIRE, <u32>timersNew());
  heapInit(s + S_PURGE);
  stu(s + S_QUEUE + Q_PTR, <u32>heap.alloc(64 * E_BYTES));
  stu(s + S_QUEUE + Q_CAP, 64);
  return s;
}

/** The fire timers of the sessions `s`. */
// @ts-ignore: decorator
@inline function fireTimers(s: usize): usize {
  return <usize>ldu(s + S_FIRE);
}

/** The earliest pending fire timer of the sessions `s` (+inf for none). */
export function sessionsNextFire(s: usize): f64 {
  return timersNext(fireTimers(s));
}

// ─── Purge queue ──────────────────────────────────────────────────────────────

// @ts-ignore: decorator
@inline function queueEntry(q: usize, k: u32): usize {
  return <usize>ldu(q + Q_PTR) + (<usize>((ldu(q + Q_HEAD) + k) & (ldu(q + Q_CAP) - 1)) << 4);
}

/** When the earliest purge timer is due (+inf for none). */
// @ts-ignore: decorator
@inline function purgeNext(s: usize): f64 {
  const q = s + S_QUEUE;
  const h = heapNext(s + S_PURGE);
  if (ldu(q + Q_N) == 0) return h;
  const at = ldf(queueEntry(q, 0) + E_AT);
  return at < h ? at : h;
}

/** Whether a purge timer is due at w (never with none, even at w = +inf). */
// @ts-ignore: decorator
@inline function purgeDue(s: usize, w: f64): bool {
  const q = s + S_QUEUE;
  return (ldu(q + Q_N) != 0 && ldf(queueEntry(q, 0) + E_AT) <= w) || heapDue(s + S_PURGE, w);
}

/** Arms the purge timer of a session: into the queue in order when that is near its tail, else into the heap. */
function purgePush(s: usize, at: f64, slot: u32, serial: u32): void {
  const q = s + S_QUEUE;
  const n = ldu(q + Q_N);
  // Where it goes: after every entry due no later (equal times keep their order).
  let i = n;
  while (i > 0 && ldf(queueEntry(q, i - 1) + E_AT) > at) {
    if (n - i == QUEUE_SHIFTS) {
      heapPush(s + S_PURGE, at, slot, serial);
      return;
    }
    i--;
  }
  let cap = ldu(q + Q_CAP);
  if (n == cap) {
    // Unrolled into a block twice the size, head at 0.
    const raw = heap.alloc(<usize>(cap << 1) * E_BYTES);
    for (let k: u32 = 0; k < n; k++) copyEntry(raw + (<usize>k << 4), queueEntry(q, k));
    heap.free(<usize>ldu(q + Q_PTR));
    stu(q + Q_PTR, <u32>raw);
    stu(q + Q_HEAD, 0);
    cap <<= 1;
    stu(q + Q_CAP, cap);
  }
  for (let k = n; k > i; k--) copyEntry(queueEntry(q, k), queueEntry(q, k - 1));
  const d = queueEntry(q, i);
  stf(d + E_AT, at);
  stu(d + E_SLOT, slot);
  stu(d + E_SERIAL, serial);
  stu(q + Q_N, n + 1);
}

/** Removes the earliest purge timer (purgeNext's) into poppedSlot/poppedSerial. */
function purgePop(s: usize): void {
  const q = s + S_QUEUE;
  const n = ldu(q + Q_N);
  if (n != 0 && ldf(queueEntry(q, 0) + E_AT) <= heapNext(s + S_PURGE)) {
    const e = queueEntry(q, 0);
    takeOut(e);
    stu(q + Q_HEAD, (ldu(q + Q_HEAD) + 1) & (ldu(q + Q_CAP) - 1));
    stu(q + Q_N, n - 1);
  } else heapPop(s + S_PURGE);
}

/** Emits a session's result; its purge timer is armed at its first firing. */
function fireSession(a: u32, s: usize, slot: u32, late: bool): void {
  emitResult(a, slot, late);
  const sp = slotAddr(slot);
  const flags = ldu(sp + SLOT_FLAGS);
  if (flags & PURGE_ARMED) return;
  stu(sp + SLOT_FLAGS, flags | PURGE_ARMED);
  purgePush(s, ldf(sp + SLOT_END) + ldf(s + S_LATENESS), slot, ldu(sp + SLOT_SID));
}

// ─── Sessions ─────────────────────────────────────────────────────────────────

// @ts-ignore: decorator
@inline function live(s: usize, delta: i32): void {
  const p = <usize>ldu(s + S_LIVE);
  stu(p, <u32>(<i32>ldu(p) + delta));
}

/** The key's first session; grows the heads array to hold `key`. */
function headOf(s: usize, key: u32): usize {
  let cap = ldu(s + S_HEADCAP);
  if (key >= cap) {
    let c = cap ? cap : 64;
    while (c <= key) c <<= 1;
    const old = <usize>ldu(s + S_HEADS);
    const heads = heap.alloc(<usize>c << 2);
    if (cap) {
      memory.copy(heads, old, <usize>cap << 2);
      heap.free(old);
    }
    memory.fill(heads + (<usize>cap << 2), 0xff, <usize>(c - cap) << 2);
    stu(s + S_HEADS, <u32>heads);
    stu(s + S_HEADCAP, c);
  }
  return <usize>ldu(s + S_HEADS) + (<usize>key << 2);
}

/** A timer for `slot` is current when the slot still holds the session it was set for. */
// @ts-ignore: decorator
@inline function current(slot: u32, serial: u32): bool {
  const sp = slotAddr(slot);
  return ldu(sp + SLOT_SID) == serial && (ldu(sp + SLOT_FLAGS) & SLOT_LIVE) != 0;
}

// Timers taken out together (sessionsAdvance): slot and serial of each.
const TAKEN: u32 = 32;
let taken: usize = 0;

/** Keeps the timer just popped (poppedSlot, poppedSerial) as the i-th taken out. */
// @ts-ignore: decorator
@inline function keepPopped(i: u32): void {
  stu(taken + (<usize>i << 3), poppedSlot);
  stu(taken + (<usize>i << 3) + 4, poppedSerial);
}

// @ts-ignore: decorator
@inline function takenSlot(i: u32): u32 { return ldu(taken + (<usize>i << 3)); }

// @ts-ignore: decorator
@inline function takenSerial(i: u32): u32 { return ldu(taken + (<usize>i << 3) + 4); }

/**
 * Reads, for each of the first n timers taken out, its slot's first words and (fire
 * timers) its sketch's positive bucket array: with a session per user each timer's
 * slot, then its buckets, would miss the cache one after the other; read ahead of
 * need, the misses overlap (as touchSessions does for events).
 */
function touchTaken(n: u32, buckets: bool): void {
  let acc: u64 = 0;
  for (let i: u32 = 0; i < n; i++) {
    const sp = slotAddr(takenSlot(i));
    acc ^= load<u64>(sp + SLOT_SID) ^ load<u64>(sp + SLOT_END);
  }
  if (buckets)
    for (let i: u32 = 0; i < n; i++) {
      const st = slotAddr(takenSlot(i)) + SLOT_SKETCH + SK_POS;
      if (ldu(st + ST_CAP) != 0) acc ^= load<u64>(<usize>ldu(st + ST_PTR));
    }
  keepReads(acc);
}

/**
 * Fires every session with end <= w once, then purges those with end + lateness <= w.
 * Due timers are taken out up to TAKEN at a time and their slots read ahead
 * (touchTaken), then handled in the order they came out: a timer pushed back while
 * they are handled is after w, so the due ones come out in the same order as one at
 * a time.
 */
export function sessionsAdvance(a: u32, s: usize, w: f64): bool {
  if (taken == 0) taken = heap.alloc(<usize>TAKEN << 3);
  const fire = fireTimers(s);
  while (timersDue(fire, w)) {
    // At the limit: the rest fire, and then the purges run, at the next call. Each
    // timer fires one result at most: no more are taken out than may fire.
    if (outCount >= fireLimit) return true;
    const room = fireLimit - outCount;
    let n: u32 = 0;
    while (n < TAKEN && n < room && timersDue(fire, w)) {
      timersPop(fire);
      keepPopped(n);
      n++;
    }
    if (n > 1) touchTaken(n, true);
    for (let i: u32 = 0; i < n; i++) {
      const slot = takenSlot(i), serial = takenSerial(i);
      if (!current(slot, serial)) continue;
      const sp = slotAddr(slot);
      const flags = ldu(sp + SLOT_FLAGS) & ~ARMED;
      stu(sp + SLOT_FLAGS, flags);
      if (flags & SLOT_FIRED) continue;
      if (ldf(sp + SLOT_END) > w) {
        stu(sp + SLOT_FLAGS, flags | ARMED);
        timersPush(fire, ldf(sp + SLOT_END), slot, serial);
      } else fireSession(a, s, slot, false);
    }
  }
  const lateness = ldf(s + S_LATENESS);
  while (purgeDue(s, w)) {
    let n: u32 = 0;
    while (n < TAKEN && purgeDue(s, w)) {
      purgePop(s);
      keepPopped(n);
      n++;
    }
    if (n > 1) touchTaken(n, false);
    for (let i: u32 = 0; i < n; i++) {
      const slot = takenSlot(i), serial = takenSerial(i);
      if (!current(slot, serial)) continue;
      const due = ldf(slotAddr(slot) + SLOT_END) + lateness;
      if (due > w) purgePush(s, due, slot, serial);
      else {
        unlink(s, slot);
        drop(a, s, slot);
      }
    }
  }
  return false;
}

/** Removes a session's slot from its key's list. */
function unlink(s: usize, slot: u32): void {
  const head = headOf(s, ldu(slotAddr(slot) + SLOT_KEY));
  let prev = NO_SLOT, cur = ldu(head);
  while (cur != slot) {
    prev = cur;
    cur = ldu(slotAddr(cur) + SLOT_NEXT);
  }
  const next = ldu(slotAddr(slot) + SLOT_NEXT);
  if (prev == NO_SLOT) stu(head, next);
  else stu(slotAddr(prev) + SLOT_NEXT, next);
}

/** The session's state is gone (purged, or merged into another): tell TS and free it. */
function drop(a: u32, s: usize, slot: u32): void {
  emitGone(a, slot);
  slotFree(slot);
  live(s, -1);
}

/**
 * A new, empty session [start, end) of `key`, linked into the key's list between
 * `prev` and `cur` (NO_SLOT: none), with its purge timer at end + lateness.
 */
// @ts-ignore: decorator
@inline function sessionNew(a: u32, s: usize, key: u32, start: f64, end: f64, prev: u32, cur: u32): u32 {
  const slot = slotAlloc();
  const sp = slotAddr(slot);
  accInit(sp);
  stf(sp + SLOT_START, start);
  stf(sp + SLOT_END, end);
  stu(sp + SLOT_KEY, key);
  stu(sp + SLOT_AGG, a);
  stu(sp + SLOT_SID, ++serials);
  stu(sp + SLOT_NEXT, cur);
  if (prev == NO_SLOT) stu(headOf(s, key), slot);
  else stu(slotAddr(prev) + SLOT_NEXT, slot);
  live(s, 1);
  return slot;
}

/**
 * Runs events 0..n-1 through session aggregation `a` (state `s`). Reads ts, wm,
 * vals, keys; writes evs (pre-filled with EV_OK), the out and gone regions, state.
 * Returns how many events got a status other than EV_OK.
 */
export function processSessions(a: u32, s: usize, n: u32, ts: usize, wm: usize, vals: usize, keys: usize, evs: usize): u32 {
  const gap = ldf(s + S_GAP);
  const lateness = ldf(s + S_LATENESS);
  let notOk: u32 = 0;
  // With few keys their sessions stay in the cache: nothing to read ahead.
  if (ldu(s + S_HEADCAP) >= TOUCH_MIN_KEYS) touchSessions(s, n, keys);
  // The common case in bulk (sessionRun); every other event one at a time below.
  for (let i = sessionRun(s, 0, n, ts, wm, vals, keys); i < n; i = sessionRun(s, i + 1, n, ts, wm, vals, keys)) {
    const w = ldf(wm + (<usize>i << 3));
    if (timersDue(fireTimers(s), w) || purgeDue(s, w)) sessionsAdvance(a, s, w);
    const t = ldf(ts + (<usize>i << 3));
    const x = ldf(vals + (<usize>i << 3));
    if (isNaN(t) || isNaN(x)) {
      stb(evs + i, EV_INVALID);
      notOk++;
      continue;
    }
    const key = ldu(keys + (<usize>i << 2));
    // headOf's fast case inline: a call per event costs a tenth of the kernel here.
    const head = key < ldu(s + S_HEADCAP) ? <usize>ldu(s + S_HEADS) + (<usize>key << 2) : headOf(s, key);
    // Skip the sessions that end before the proposal starts.
    let prev = NO_SLOT, cur = ldu(head);
    while (cur != NO_SLOT && ldf(slotAddr(cur) + SLOT_END) < t) {
      prev = cur;
      cur = ldu(slotAddr(cur) + SLOT_NEXT);
    }
    // The run that intersects or touches [t, t + gap).
    let mStart = t, mEnd = t + gap, last = NO_SLOT;
    for (let c = cur; c != NO_SLOT; ) {
      const cp = slotAddr(c);
      if (ldf(cp + SLOT_START) > t + gap) break;
      mStart = min(mStart, ldf(cp + SLOT_START));
      mEnd = max(mEnd, ldf(cp + SLOT_END));
      last = c;
      c = ldu(cp + SLOT_NEXT);
    }
    if (w >= mEnd + lateness) {
      stb(evs + i, EV_LATE);
      notOk++;
      continue;
    }
    let slot: u32;
    if (last == NO_SLOT) {
      slot = sessionNew(a, s, key, mStart, mEnd, prev, cur);
    } else {
      slot = cur;
      // Before it changes: a session its checkpoint has not serialized yet is written first.
      if ((ldu(slotAddr(slot) + SLOT_FLAGS) & SLOT_DIRTY) == 0) slotTouch(slot);
      let changed = last != cur;
      if (changed) {
        const after = ldu(slotAddr(last) + SLOT_NEXT);
        let o = ldu(slotAddr(cur) + SLOT_NEXT);
        while (o != after) {
          const next = ldu(slotAddr(o) + SLOT_NEXT);
          const sp = slotAddr(slot), op = slotAddr(o);
          accMerge(sp, op);
          sketchMerge(sp + SLOT_SKETCH, op + SLOT_SKETCH);
          drop(a, s, o);
          o = next;
        }
        stu(slotAddr(slot) + SLOT_NEXT, after);
      }
      const sp = slotAddr(slot);
      if (changed || ldf(sp + SLOT_START) != mStart || ldf(sp + SLOT_END) != mEnd) {
        stf(sp + SLOT_START, mStart);
        stf(sp + SLOT_END, mEnd);
        // A merged or extended session is a new window: it fires when W reaches its end.
        stu(sp + SLOT_FLAGS, ldu(sp + SLOT_FLAGS) & ~SLOT_FIRED);
      }
    }
    const sp = slotAddr(slot);
    accAdd(sp, x);
    sketchAdd(sp + SLOT_SKETCH, x);
    // A new session is listed as changed here (an existing one was, above).
    let flags = ldu(sp + SLOT_FLAGS);
    if ((flags & SLOT_DIRTY) == 0) {
      slotTouch(slot);
      flags |= SLOT_DIRTY;
    }
    if (w >= mEnd) fireSession(a, s, slot, true); // late but allowed: fire again at once
    else if ((flags & (SLOT_FIRED | ARMED)) == 0) {
      stu(sp + SLOT_FLAGS, flags | ARMED);
      timersPush(fireTimers(s), mEnd, slot, ldu(sp + SLOT_SID));
    }
  }
  return notOk;
}

// Where touchSessions leaves what it read, so that the optimizer keeps the reads.
let touchBox: usize = 0;

/** Stores what the touch passes read, so that the optimizer keeps the reads. */
function keepReads(acc: u64): void {
  if (touchBox == 0) touchBox = heap.alloc(8);
  store<u64>(touchBox, acc);
}
/** Keys (the heads array's capacity) below which touchSessions is not worth its passes. */
const TOUCH_MIN_KEYS: u32 = 16384;

/**
 * Reads, for each event of the batch, its key's first session and that session's
 * positive bucket array, in two passes over the batch before any event is added: with
 * a session per user, each event would otherwise miss the cache on its session, then
 * on its buckets, one after the other; read ahead of need, the misses overlap.
 */
function touchSessions(s: usize, n: u32, keys: usize): void {
  const heads = <usize>ldu(s + S_HEADS), cap = ldu(s + S_HEADCAP);
  const pool = slotPool();
  let acc: u64 = 0;
  for (let i: u32 = 0; i < n; i++) {
    const key = ldu(keys + (<usize>i << 2));
    if (key >= cap) continue;
    const cur = ldu(heads + (<usize>key << 2));
    if (cur == NO_SLOT) continue;
    const sp = pool + <usize>cur * SLOT_BYTES;
    acc ^= load<u64>(sp) ^ load<u64>(sp + SLOT_END);
  }
  for (let i: u32 = 0; i < n; i++) {
    const key = ldu(keys + (<usize>i << 2));
    if (key >= cap) continue;
    const cur = ldu(heads + (<usize>key << 2));
    if (cur == NO_SLOT) continue;
    // An inline sketch (cap 0) has no array: its pointer word holds a bucket.
    const st = pool + <usize>cur * SLOT_BYTES + SLOT_SKETCH + SK_POS;
    if (ldu(st + ST_CAP) != 0) acc ^= load<u64>(<usize>ldu(st + ST_PTR));
  }
  keepReads(acc);
}

/**
 * Adds events i, i+1, ... of session aggregation `s` while each is the common case:
 * valid, no timer due at its W, and it falls into (or extends) exactly one live
 * session of its key, on time, whose fire timer is armed and that is already marked
 * changed, with a sketch store that covers the value. Returns the index of the first
 * event that is not (or n), unchanged. No calls, as tumblingRun in windows.ts.
 */
function sessionRun(s: usize, i: u32, n: u32, ts: usize, wm: usize, vals: usize, keys: usize): u32 {
  const gap = ldf(s + S_GAP);
  // No min(): V8 lowers f64 min to a NaN- and sign-aware branch chain it does not hoist.
  let limit = timersNext(fireTimers(s));
  const purge = purgeNext(s);
  if (purge < limit) limit = purge;
  const heads = <usize>ldu(s + S_HEADS), cap = ldu(s + S_HEADCAP);
  const pool = slotPool(); // no slot is allocated here: the pool stays put
  for (; i < n; i++) {
    const w = ldf(wm + (<usize>i << 3));
    if (w >= limit) return i;
    const t = ldf(ts + (<usize>i << 3));
    if (!(t > 0)) return i; // NaN too; t > 0 orders the ends below by their bits
    const key = ldu(keys + (<usize>i << 2));
    if (key >= cap) return i;
    // The first session that does not end before t, as the general path finds it.
    let cur = ldu(heads + (<usize>key << 2));
    if (cur == NO_SLOT) return i;
    let sp = pool + <usize>cur * SLOT_BYTES;
    while (ldf(sp + SLOT_END) < t) {
      cur = ldu(sp + SLOT_NEXT);
      if (cur == NO_SLOT) return i;
      sp = pool + <usize>cur * SLOT_BYTES;
    }
    const start = ldf(sp + SLOT_START);
    const pEnd = t + gap;
    if (start > pEnd) return i; // a new session
    const next = ldu(sp + SLOT_NEXT);
    if (next != NO_SLOT && ldf(pool + <usize>next * SLOT_BYTES + SLOT_START) <= pEnd) return i; // a merge
    // mEnd = max(end, pEnd) as an integer select (a cmov): whether an event extends
    // its session is a coin toss when many keys interleave, so a branch would
    // mispredict every other event. Both are positive: their bits order as they do.
    const endBits = reinterpret<i64>(ldf(sp + SLOT_END)), pEndBits = reinterpret<i64>(pEnd);
    const mEnd = reinterpret<f64>(select<i64>(pEndBits, endBits, pEndBits > endBits));
    if (w >= mEnd) return i; // late (allowed or not)
    if ((ldu(sp + SLOT_FLAGS) & (SLOT_DIRTY | SLOT_FIRED | ARMED)) != (SLOT_DIRTY | ARMED)) return i;
    const x = ldf(vals + (<usize>i << 3));
    const c = sketchCounter(sp + SLOT_SKETCH, x); // 0 for NaN x too
    if (c == 0) return i;
    if (t < start) stf(sp + SLOT_START, t);
    stf(sp + SLOT_END, mEnd);
    accAdd(sp, x);
    store<u32>(c, load<u32>(c) + 1);
  }
  return n;
}

/**
 * Restores one session [start, end) of `key` (restoreWindow, windows.ts): linked into
 * the key's list in start order, purge timer at end + lateness, and fired iff
 * w >= end, else armed to fire at end. NO_SLOT if it would intersect or touch a
 * session of the key already restored (they would have merged).
 */
export function sessionsRestore(a: u32, s: usize, key: u32, start: f64, end: f64, w: f64): u32 {
  let prev = NO_SLOT, cur = ldu(headOf(s, key));
  while (cur != NO_SLOT && ldf(slotAddr(cur) + SLOT_START) < start) {
    prev = cur;
    cur = ldu(slotAddr(cur) + SLOT_NEXT);
  }
  if (prev != NO_SLOT && ldf(slotAddr(prev) + SLOT_END) >= start) return NO_SLOT;
  if (cur != NO_SLOT && ldf(slotAddr(cur) + SLOT_START) <= end) return NO_SLOT;
  const slot = sessionNew(a, s, key, start, end, prev, cur);
  const sp = slotAddr(slot);
  const flags = ldu(sp + SLOT_FLAGS);
  if (w >= end) {
    stu(sp + SLOT_FLAGS, flags | SLOT_FIRED | PURGE_ARMED);
    purgePush(s, end + ldf(s + S_LATENESS), slot, serials);
  } else {
    stu(sp + SLOT_FLAGS, flags | ARMED);
    timersPush(fireTimers(s), end, slot, serials);
  }
  return slot;
}
