// Tiny typed load/store helpers: every memory access of the core goes through these.

// @ts-ignore: decorator
@inline export function ldf(p: usize): f64 { return load<f64>(p); }
// @ts-ignore: decorator
@inline export function stf(p: usize, v: f64): void { store<f64>(p, v); }
// @ts-ignore: decorator
@inline export function ldu(p: usize): u32 { return load<u32>(p); }
// @ts-ignore: decorator
@inline export function stu(p: usize, v: u32): void { store<u32>(p, v); }
// @ts-ignore: decorator
@inline export function ldi(p: usize): i32 { return load<i32>(p); }
// @ts-ignore: decorator
@inline export function sti(p: usize, v: i32): void { store<i32>(p, v); }
// @ts-ignore: decorator
@inline export function ldb(p: usize): u8 { return load<u8>(p); }
// @ts-ignore: decorator
@inline export function stb(p: usize, v: u8): void { store<u8>(p, v); }

/**
 * Zeroes [p, p + len) for a small len (a multiple of 4) with stores in the generated
 * code: memory.fill is a call out of it in V8, which costs more than a fill this short.
 */
// @ts-ignore: decorator
@inline export function zeroSmall(p: usize, len: usize): void {
  let i: usize = 0;
  for (; i + 16 <= len; i += 16) v128.store(p + i, i64x2.splat(0));
  if (i + 8 <= len) {
    store<u64>(p + i, 0);
    i += 8;
  }
  if (i + 4 <= len) store<u32>(p + i, 0);
}

/** Zeroed allocation from the runtime heap. */
export function zalloc(size: usize): usize {
  const p = heap.alloc(size);
  memory.fill(p, 0, size);
  return p;
}

/** Grows a heap block to `newSize` bytes, zeroing the new tail. */
export function zrealloc(p: usize, oldSize: usize, newSize: usize): usize {
  const q = heap.realloc(p, newSize);
  memory.fill(q + oldSize, 0, newSize - oldSize);
  return q;
}

/**
 * Copies `len` bytes (a multiple of 4) from `src` to `dst` (not overlapping). Short
 * copies with loads and stores: memory.copy is a call out of the generated code in
 * V8, which costs more than a copy of a few dozen bytes.
 */
export function copyWords(dst: usize, src: usize, len: usize): void {
  if (len > 256) {
    memory.copy(dst, src, len);
    return;
  }
  let o: usize = 0;
  for (; o + 16 <= len; o += 16) v128.store(dst + o, v128.load(src + o));
  for (; o < len; o += 4) store<u32>(dst + o, load<u32>(src + o));
}
