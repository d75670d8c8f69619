// Timers of session windows: when a session fires, when it is purged.
//
// A timer is a 16-byte entry:  ┌──────────┬──────┬────────┐
//                              │ at (f64) │ slot │ serial │
//                              └──────────┴──────┴────────┘
// Two structures hold them, both read earliest first:
//
// - A 4-ary min-heap on `at`, for timers that come in no useful order.
// - A timer queue for timers that are never set earlier than the last one taken
//   out, which is how the watermark drives them: every timer is set for a time
//   after W, and taken out once W reaches it. It is a radix heap (Ahuja, Mehlhorn,
//   Orlin and Tarjan, 1990): with `last` the time of the timer taken out last,
//   bucket b holds the timers whose time differs from `last` first in bit b - 1
//   (bucket 0: equal to it). Setting a timer appends it to its bucket; taking out
//   the earliest empties the first non-empty bucket into lower ones around its
//   earliest entry. Every access runs along an array, where the heap would take a
//   cache miss per level once it outgrows the caches (a session per user: as many
//   timers as users). A timer set earlier than `last` anyway (nothing in the core
//   does, but the queue does not rely on it) goes into a heap beside it.
import { ldf, stf, ldu, stu } from './mem';

export const E_AT: usize = 0;
export const E_SLOT: usize = 8;
export const E_SERIAL: usize = 12;
export const E_BYTES: usize = 16;

// The entry taken out last (heapPop's and timersPop's result, and that of any
// other structure of entries through takeOut).
export let poppedSlot: u32 = 0;
export let poppedSerial: u32 = 0;

/** Records entry `e` as the one taken out last. */
// @ts-ignore: decorator
@inline export function takeOut(e: usize): void {
  poppedSlot = ldu(e + E_SLOT);
  poppedSerial = ldu(e + E_SERIAL);
}

/**
 * Copies one entry: a 16-byte load and store. memory.copy is a call out of the
 * generated code in V8, which costs more than the copy itself at this size.
 */
// @ts-ignore: decorator
@inline export function copyEntry(dst: usize, src: usize): void {
  v128.store(dst, v128.load(src));
}

// ─── 4-ary heap ───────────────────────────────────────────────────────────────
// ┌────────┬─────┬─────┐
// │ ptr    │ n   │ cap │   12 bytes, in the owner's record
// └────────┴─────┴─────┘
// Four children per node halve the levels of a binary heap, and the array is placed
// so that the four children of a node fill one 64-byte line (entry k at base +
// (k + 3) * 16, base 64-aligned: children 4k+1..4k+4 start at base + 64 (k + 1)),
// so a level costs one miss, not two.
export const HEAP_BYTES: usize = 12;
const H_PTR: usize = 0;
const H_N: usize = 4;
const H_CAP: usize = 8;

export function heapInit(h: usize): void {
  stu(h + H_PTR, <u32>heap.alloc(heapBytes(64)));
  stu(h + H_N, 0);
  stu(h + H_CAP, 64);
}

/** Bytes to allocate for `cap` entries: the 3 entries before the root, and room to align. */
// @ts-ignore: decorator
@inline function heapBytes(cap: u32): usize {
  return (<usize>cap + 3) * E_BYTES + 63;
}

/** Where entry 0 of the heap whose allocation starts at `raw` is. */
// @ts-ignore: decorator
@inline function heapRoot(raw: usize): usize {
  return ((raw + 63) & ~63) + 3 * E_BYTES;
}

// @ts-ignore: decorator
@inline function heapEntry(root: usize, k: u32): usize {
  return root + (<usize>k << 4);
}

/** When the earliest timer of `h` is due (+inf for none). */
// @ts-ignore: decorator
@inline export function heapNext(h: usize): f64 {
  return ldu(h + H_N) != 0 ? ldf(heapRoot(<usize>ldu(h + H_PTR)) + E_AT) : Infinity;
}

/** Whether the earliest timer is due at w (never for an empty heap, even at w = +inf). */
// @ts-ignore: decorator
@inline export function heapDue(h: usize, w: f64): bool {
  return ldu(h + H_N) != 0 && heapNext(h) <= w;
}

export function heapPush(h: usize, at: f64, slot: u32, serial: u32): void {
  let n = ldu(h + H_N);
  if (n == ldu(h + H_CAP)) {
    // A new block rather than realloc: the entries must keep their alignment.
    const old = <usize>ldu(h + H_PTR);
    const raw = heap.alloc(heapBytes(n << 1));
    memory.copy(heapRoot(raw), heapRoot(old), <usize>n * E_BYTES);
    heap.free(old);
    stu(h + H_PTR, <u32>raw);
    stu(h + H_CAP, n << 1);
  }
  const e = heapRoot(<usize>ldu(h + H_PTR));
  let i = n;
  while (i > 0) {
    const parent = (i - 1) >> 2;
    const pe = heapEntry(e, parent);
    if (ldf(pe + E_AT) <= at) break;
    copyEntry(heapEntry(e, i), pe);
    i = parent;
  }
  const d = heapEntry(e, i);
  stf(d + E_AT, at);
  stu(d + E_SLOT, slot);
  stu(d + E_SERIAL, serial);
  stu(h + H_N, n + 1);
}

/** Removes the earliest timer of a non-empty heap into poppedSlot/poppedSerial. */
export function heapPop(h: usize): void {
  const e = heapRoot(<usize>ldu(h + H_PTR));
  takeOut(e);
  const n = ldu(h + H_N) - 1;
  stu(h + H_N, n);
  if (n == 0) return;
  const last = heapEntry(e, n);
  const at = ldf(last + E_AT);
  let i: u32 = 0;
  while (true) {
    const first: u32 = 4 * i + 1;
    if (first >= n) break;
    // The earliest of the (up to) four children.
    let c = first;
    let cAt = ldf(heapEntry(e, c) + E_AT);
    const end = min(first + 4, n);
    for (let k = first + 1; k < end; k++) {
      const kAt = ldf(heapEntry(e, k) + E_AT);
      if (kAt < cAt) {
        c = k;
        cAt = kAt;
      }
    }
    if (cAt >= at) break;
    copyEntry(heapEntry(e, i), heapEntry(e, c));
    i = c;
  }
  copyEntry(heapEntry(e, i), last);
}

// ─── Timer queue (radix heap) ─────────────────────────────────────────────────
// ┌───────────┬──────────┬──────────────┬──────────────────────┬────────────────────────┐
// │ last (u64)│ min (f64)│ n (u32), pad │ behind: heap (12 B)  │ 65 buckets: ptr/n/cap  │
// └───────────┴──────────┴──────────────┴──────────────────────┴────────────────────────┘
// `last` is the time of the timer taken out last as an ordered integer (orderOf),
// `min` the earliest time in the buckets (+inf for none), n how many they hold.
const T_LAST: usize = 0;
const T_MIN: usize = 8;
const T_N: usize = 16;
const T_BEHIND: usize = 20;
const T_BUCKETS: usize = 32;
const BUCKETS: usize = 65;
const B_PTR: usize = 0;
const B_N: usize = 4;
const B_CAP: usize = 8;
const B_BYTES: usize = 12;
const T_BYTES: usize = T_BUCKETS + BUCKETS * B_BYTES;

/** A double as a u64 that orders as the double does (negative ones flipped whole, positive ones by the sign bit). */
// @ts-ignore: decorator
@inline function orderOf(at: f64): u64 {
  const bits = reinterpret<u64>(at);
  return bits ^ (<u64>(<i64>bits >> 63) | 0x8000_0000_0000_0000);
}

/** The bucket of a time `k` (ordered, not before `last`): 0 if equal, else 1 + the highest bit in which they differ. */
// @ts-ignore: decorator
@inline function bucketOf(k: u64, last: u64): usize {
  return <usize>(64 - clz<u64>(k ^ last));
}

// @ts-ignore: decorator
@inline function bucketAt(q: usize, b: usize): usize {
  return q + T_BUCKETS + b * B_BYTES;
}

export function timersNew(): usize {
  const q = heap.alloc(T_BYTES);
  memory.fill(q, 0, T_BYTES);
  store<u64>(q + T_LAST, orderOf(-Infinity));
  stf(q + T_MIN, Infinity);
  heapInit(q + T_BEHIND);
  return q;
}

/** Appends an entry to bucket `b` (the address of its ptr/n/cap). */
function append(b: usize, src: usize): void {
  const n = ldu(b + B_N);
  let cap = ldu(b + B_CAP);
  if (n == cap) {
    cap = cap ? cap << 1 : 16;
    const old = <usize>ldu(b + B_PTR);
    stu(b + B_PTR, <u32>(old ? heap.realloc(old, <usize>cap * E_BYTES) : heap.alloc(<usize>cap * E_BYTES)));
    stu(b + B_CAP, cap);
  }
  copyEntry(<usize>ldu(b + B_PTR) + (<usize>n << 4), src);
  stu(b + B_N, n + 1);
}

// Where timersPush builds its entry before appending it.
const scratch: usize = memory.data(16, 16);

/** Sets a timer for `at`. */
export function timersPush(q: usize, at: f64, slot: u32, serial: u32): void {
  const k = orderOf(at);
  const last = load<u64>(q + T_LAST);
  if (k < last) {
    heapPush(q + T_BEHIND, at, slot, serial);
    return;
  }
  stf(scratch + E_AT, at);
  stu(scratch + E_SLOT, slot);
  stu(scratch + E_SERIAL, serial);
  append(bucketAt(q, bucketOf(k, last)), scratch);
  stu(q + T_N, ldu(q + T_N) + 1);
  if (at < ldf(q + T_MIN)) stf(q + T_MIN, at);
}

/** When the earliest timer is due (+inf for none). */
// @ts-ignore: decorator
@inline export function timersNext(q: usize): f64 {
  const at = ldf(q + T_MIN);
  const behind = heapNext(q + T_BEHIND);
  return behind < at ? behind : at;
}

/** Whether a timer is due at w (never with none, even at w = +inf). */
// @ts-ignore: decorator
@inline export function timersDue(q: usize, w: f64): bool {
  return (ldu(q + T_N) != 0 && ldf(q + T_MIN) <= w) || heapDue(q + T_BEHIND, w);
}

/** Removes the earliest timer (timersNext's; there must be one) into poppedSlot/poppedSerial. */
export function timersPop(q: usize): void {
  const min = ldf(q + T_MIN);
  if (heapNext(q + T_BEHIND) < min) {
    heapPop(q + T_BEHIND);
    return;
  }
  const b0 = bucketAt(q, 0);
  if (ldu(b0 + B_N) == 0) {
    // The earliest timer is in the first non-empty bucket: it becomes `last`, and
    // that bucket's timers move into lower buckets around it (it into bucket 0).
    let b: usize = 1;
    while (ldu(bucketAt(q, b) + B_N) == 0) b++;
    const last = orderOf(min);
    store<u64>(q + T_LAST, last);
    const from = bucketAt(q, b);
    const p = <usize>ldu(from + B_PTR), n = ldu(from + B_N);
    stu(from + B_N, 0);
    for (let i: u32 = 0; i < n; i++) {
      const e = p + (<usize>i << 4);
      append(bucketAt(q, bucketOf(orderOf(ldf(e + E_AT)), last)), e);
    }
  }
  const n0 = ldu(b0 + B_N) - 1;
  stu(b0 + B_N, n0);
  takeOut(<usize>ldu(b0 + B_PTR) + (<usize>n0 << 4));
  const n = ldu(q + T_N) - 1;
  stu(q + T_N, n);
  // Bucket 0 holds timers at `last` only; once it is empty, the earliest is in the
  // first non-empty bucket above.
  if (n0 != 0) return;
  let next = Infinity;
  if (n != 0) {
    let b: usize = 1;
    while (ldu(bucketAt(q, b) + B_N) == 0) b++;
    const from = bucketAt(q, b);
    const p = <usize>ldu(from + B_PTR), m = ldu(from + B_N);
    for (let i: u32 = 0; i < m; i++) {
      const at = ldf(p + (<usize>i << 4) + E_AT);
      if (at < next) next = at;
    }
  }
  stf(q + T_MIN, next);
}
