// Every region of linear memory the TypeScript side reads or writes, in one place.
//
// All regions are allocated from the runtime's heap (TLSF) at `init`, so they never
// collide with each other and memory may grow at any call. The TypeScript side must
// therefore re-create its typed-array views after every call that can allocate
// (see src/core/wasm.ts: it compares `memory.buffer` before each read).

// ─── Batch region (written by TS before a call, one value per event) ────────────
//
//   ts      f64[cap]   event time in epoch ms; NaN = invalid timestamp
//   wm      f64[cap]   watermark W before event i (written by computeWatermarks)
//   per aggregation a:
//   val[a]  f64[cap]   the aggregation's value; NaN = invalid value
//   key[a]  u32[cap]   the aggregation's key id (dense ids owned by TS)
//   evs[a]  u8[cap]    out: EV_* status of the event for this aggregation

/** Status of one event for one aggregation, written by the window kernel. */
export const EV_OK: u8 = 0; // added to every window it belongs to
export const EV_INVALID: u8 = 1; // timestamp or value invalid: not added
export const EV_PARTLY_LATE: u8 = 2; // too late for some of its windows, added to the rest
export const EV_LATE: u8 = 3; // too late for all of its windows: dead letter

// ─── Slot: the state of one window of one key ─────────────────────────────────
//
//   ┌────────┬────────┬────────┬────────┬────────┬────────┬────────┬────────┐
//   │ count  │  sum   │ sumErr │  min   │  max   │  mean  │   m2   │ start  │  f64 × 8
//   ├────────┼────────┼────────┼────────┴────────┴────────┴────────┴────────┤
//   │  end   │ keyId  │ flags  │ next   │ sid    │ sketch header (28 B)│agg │
//   └────────┴────────┴────────┴────────┴────────┴─────────────────────┴────┘
//      f64      u32      u32      u32      u32                          u32
export const SLOT_COUNT: usize = 0;
export const SLOT_SUM: usize = 8;
export const SLOT_SUM_ERR: usize = 16; // Neumaier compensation term
export const SLOT_MIN: usize = 24;
export const SLOT_MAX: usize = 32;
export const SLOT_MEAN: usize = 40;
export const SLOT_M2: usize = 48; // sum of squared deviations (Welford)
export const SLOT_START: usize = 56; // window start, epoch ms (f64 holding an integer)
export const SLOT_END: usize = 64; // window end (exclusive)
export const SLOT_KEY: usize = 72;
export const SLOT_FLAGS: usize = 76;
export const SLOT_NEXT: usize = 80; // next slot of the same window group (tumbling/sliding)
export const SLOT_SID: usize = 84; // sessions: serial number checked by timers; 0 otherwise
export const SLOT_SKETCH: usize = 88;
export const SLOT_AGG: usize = 116; // the aggregation the window belongs to
export const SLOT_BYTES: usize = 120;

export const SLOT_FIRED: u32 = 1; // fired at least once
// Changed since the last serializeChanges: the slot is on the dirty list (slots.ts).
// While change tracking is off, every slot carries it, so that the one test the hot
// path makes (`flags & SLOT_DIRTY`) never leads to a call.
export const SLOT_DIRTY: u32 = 2;
export const SLOT_LIVE: u32 = 4; // allocated
// (8 and 16 are sessions.ts's ARMED and PURGE_ARMED)
// Changed before the last serializeChanges and not serialized yet: the change set it
// took holds a record whose body waits for this slot's bytes as they were then. The
// first change or free after that writes them first (copy on write; snapshot.ts).
export const SLOT_PENDING: u32 = 32;
// Kept by a compaction of the dirty list, while it runs (slots.ts).
export const SLOT_LISTED: u32 = 64;
export const NO_SLOT: u32 = 0xffffffff;

// ─── Sketch header (inside a slot) ────────────────────────────────────────────
//
//   ┌──────────┬──────────┬──────────┬──────────┬──────────┬──────────┬─────┐
//   │ zeros u32│ pos ptr  │ pos min  │ pos cap  │ neg ptr  │ neg min  │ cap │
//   └──────────┴──────────┴──────────┴──────────┴──────────┴──────────┴─────┘
//   Each store is a dense u32 array of bucket counts; bucket j holds index min + j.
//   Inline (sketch.ts): while a sketch holds at most four positive buckets, eight
//   values and no negative one, both caps are 0 and the words at pos ptr, pos min,
//   neg ptr and neg min hold one bucket each, index and count packed (no array).
export const SK_ZEROS: usize = 0;
export const SK_POS: usize = 4; // store: ptr u32, min i32, cap u32
export const SK_NEG: usize = 16;
export const ST_PTR: usize = 0;
export const ST_MIN: usize = 4;
export const ST_CAP: usize = 8;
export const SK_BYTES: usize = 28;

// ─── Result record (out region, appended by firings) ──────────────────────────
//
//   ┌──────┬───────┬───────┬──────┬───────┬─────┬───────┬─────┬─────┬─────┬─────┬────────┬─────┬─────┬─────┐
//   │ agg  │ keyId │ flags │ slot │ start │ end │ count │ sum │ min │ max │ avg │ stddev │ p50 │ p95 │ p99 │
//   └──────┴───────┴───────┴──────┴───────┴─────┴───────┴─────┴─────┴─────┴─────┴────────┴─────┴─────┴─────┘
//     u32    u32     u32     u32    f64 ...
export const RES_AGG: usize = 0;
export const RES_KEY: usize = 4;
export const RES_FLAGS: usize = 8; // RES_LATE
export const RES_SID: usize = 12; // session serial for sessions, else 0
export const RES_START: usize = 16;
export const RES_END: usize = 24;
export const RES_COUNT: usize = 32;
export const RES_SUM: usize = 40;
export const RES_MIN: usize = 48;
export const RES_MAX: usize = 56;
export const RES_AVG: usize = 64;
export const RES_STDDEV: usize = 72;
export const RES_P50: usize = 80;
export const RES_P95: usize = 88;
export const RES_P99: usize = 96;
export const RES_BYTES: usize = 104;
export const RES_LATE: u32 = 1;

// ─── Purge record (gone region): a window whose state was dropped ─────────────
// (purged, or a session merged into another). `slot` is the slot it occupied, so
// the state backend can drop what it stored for that slot.
//   ┌──────┬───────┬───────┬───────┬──────┬───────┐
//   │ agg  │ keyId │ start │  end  │ slot │ (pad) │   u32 u32 f64 f64 u32 u32
//   └──────┴───────┴───────┴───────┴──────┴───────┘
export const GONE_AGG: usize = 0;
export const GONE_KEY: usize = 4;
export const GONE_START: usize = 8;
export const GONE_END: usize = 16;
export const GONE_SLOT: usize = 24;
export const GONE_BYTES: usize = 32;

// ─── Window kinds (per aggregation) ───────────────────────────────────────────
export const WIN_TUMBLING: i32 = 0;
export const WIN_SLIDING: i32 = 1;
export const WIN_SESSION: i32 = 2;

// ─── Slot serialization (checkpoints) ─────────────────────────────────────────
//   ┌─────────┬──────────────────┬───────┬─────────┬────────┬─────────┬─────────┬────────┬─────────┐
//   │ version │ 7 × f64 acc      │ zeros │ pos min │ pos n  │ pos u32…│ neg min │ neg n  │ neg u32…│
//   └─────────┴──────────────────┴───────┴─────────┴────────┴─────────┴─────────┴────────┴─────────┘
//     u32 (=2)  count..m2          u32     i32       u32                i32       u32
// Little-endian, unaligned. A store holds only its occupied bucket range (n may be 0).
// Version 2 (written) sets SPARSE (the top bit) in n when the range's counts follow
// as (empty buckets skipped, count) varint pairs of its occupied buckets instead of
// n × u32, whichever is shorter (sketch.ts); version 1 (read) is always dense.
// Window bounds, key and aggregation are not in it: they travel in the snapshot
// record header below, and restoreWindow takes them as arguments.
export const SER_VERSION: u32 = 2;
export const SER_VERSION_DENSE: u32 = 1;
export const SER_ACC: usize = 4; // SLOT_COUNT..SLOT_M2, 56 bytes
export const SER_SKETCH: usize = 60;
export const SER_MIN_BYTES: usize = 60 + 4 + 8 + 8; // empty sketch

// ─── Snapshot record (snap region, written by serializeChanges/serializeAll) ──
// A region is an array of fixed-size headers and, apart, a body area that holds
// each record's slot serialization at the offset its header names. serializeAll
// writes both at once. serializeChanges writes the headers only, reserves each body
// (room for the slot's sketch as it is then), and leaves LEN at SNAP_UNWRITTEN: the
// body is written by snapFill, or before the slot's next change or free.
//   ┌──────┬───────┬──────┬─────┬───────┬─────┬──────┬───────┐
//   │ agg  │ keyId │ slot │ len │ start │ end │ body │ (pad) │
//   └──────┴───────┴──────┴─────┴───────┴─────┴──────┴───────┘
//     u32    u32     u32    u32   f64     f64   u32    u32
export const SNAP_AGG: usize = 0;
export const SNAP_KEY: usize = 4;
export const SNAP_SLOT: usize = 8;
export const SNAP_LEN: usize = 12;
export const SNAP_START: usize = 16;
export const SNAP_END: usize = 24;
export const SNAP_BODY: usize = 32; // byte offset of the body in the region's body area
export const SNAP_HEADER: usize = 40;
export const SNAP_UNWRITTEN: u32 = 0xffffffff;
