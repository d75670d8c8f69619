// ISO-8601 timestamps (the string form of an event time) to epoch milliseconds.
//
// Accepted, exactly (a JSON string body, without its quotes):
//   ^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(\.\d{1,9})?([Zz]|[+-]\d{2}:?\d{2})?$
// month 1-12, day 1..days in that month (proleptic Gregorian), hour 0-23,
// minute 0-59, second 0-59 (no leap second), offset hours 0-23, minutes 0-59.
// No offset means UTC. Fraction digits past the millisecond are truncated.
// Years are taken literally (0000-9999): unlike Date.UTC, 0050 is year 50, not 1950.
//
//   0    4  5  7  8  10 11 13 14 16 17 19 [20 .. ]             [ ... end]
//   ┌────┬─┬──┬─┬──┬─┬──┬─┬──┬─┬──┬─────────────────────────┬─────────────────┐
//   │yyyy│-│mm│-│dd│T│hh│:│mi│:│ss│ . fraction (1-9 digits) │ Z | ±hh[:]mm    │
//   └────┴─┴──┴─┴──┴─┴──┴─┴──┴─┴──┴─────────────────────────┴─────────────────┘

// @ts-ignore: decorator
@inline function ld8(p: usize): u32 { return <u32>load<u8>(p); }

const C_0: u32 = 0x30;
const MS_PER_MINUTE: f64 = 60000;
const MS_PER_DAY: f64 = 86400000;
const BASE_LEN: u32 = 19; // "yyyy-mm-ddThh:mi:ss"
const MAX_FRACTION_DIGITS: u32 = 9;

/** Two decimal digits at p, or -1. */
// @ts-ignore: decorator
@inline function d2(p: usize): i32 {
  const a = ld8(p) - C_0;
  const b = ld8(p + 1) - C_0;
  return a < 10 && b < 10 ? <i32>(a * 10 + b) : -1;
}

// @ts-ignore: decorator
@inline function isLeap(y: i32): bool {
  return (y & 3) == 0 && (y % 100 != 0 || y % 400 == 0);
}

// @ts-ignore: decorator
@inline function daysInMonth(y: i32, m: i32): i32 {
  if (m == 2) return isLeap(y) ? 29 : 28;
  return m == 4 || m == 6 || m == 9 || m == 11 ? 30 : 31;
}

/** Days since 1970-01-01 of a proleptic Gregorian date (Hinnant's days_from_civil). */
// @ts-ignore: decorator
@inline function daysFromCivil(y: i32, m: i32, d: i32): i32 {
  y -= <i32>(m <= 2);
  const era = (y >= 0 ? y : y - 399) / 400;
  const yoe = y - era * 400;
  const doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
  const doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + doe - 719468;
}

/**
 * Parses an ISO-8601 timestamp. Reads [ptr, ptr+len). Returns epoch ms, or NaN
 * if the text is not accepted (see the grammar at the top of this file).
 */
export function parseIsoMs(ptr: usize, len: u32): f64 {
  if (len < BASE_LEN) return NaN;
  const y0 = d2(ptr);
  const y1 = d2(ptr + 2);
  const mo = d2(ptr + 5);
  const d = d2(ptr + 8);
  const h = d2(ptr + 11);
  const mi = d2(ptr + 14);
  const s = d2(ptr + 17);
  if ((y0 | y1 | mo | d | h | mi | s) < 0) return NaN;
  if (ld8(ptr + 4) != 0x2d || ld8(ptr + 7) != 0x2d || ld8(ptr + 13) != 0x3a || ld8(ptr + 16) != 0x3a) return NaN;
  const t = ld8(ptr + 10);
  if (t != 0x54 && t != 0x74 && t != 0x20) return NaN;
  const y = y0 * 100 + y1;
  if (mo < 1 || mo > 12 || d < 1 || d > daysInMonth(y, mo) || h > 23 || mi > 59 || s > 59) return NaN;

  const end = ptr + <usize>len;
  let p = ptr + BASE_LEN;
  let ms: i32 = 0;
  if (p < end && ld8(p) == 0x2e) {
    p++;
    let n: u32 = 0;
    while (p < end && ld8(p) - C_0 < 10) {
      if (n < 3) ms = ms * 10 + <i32>(ld8(p) - C_0);
      n++;
      p++;
    }
    if (n == 0 || n > MAX_FRACTION_DIGITS) return NaN;
    if (n == 1) ms *= 100;
    else if (n == 2) ms *= 10;
  }
  let offMin: i32 = 0;
  if (p < end) {
    const c = ld8(p);
    if (c == 0x5a || c == 0x7a) {
      p++;
    } else if (c == 0x2b || c == 0x2d) {
      const rest = end - p;
      let oh: i32;
      let om: i32;
      if (rest == 6 && ld8(p + 3) == 0x3a) {
        oh = d2(p + 1);
        om = d2(p + 4);
      } else if (rest == 5) {
        oh = d2(p + 1);
        om = d2(p + 3);
      } else {
        return NaN;
      }
      if (oh < 0 || om < 0 || oh > 23 || om > 59) return NaN;
      offMin = oh * 60 + om;
      if (c == 0x2d) offMin = -offMin;
      p = end;
    } else {
      return NaN;
    }
  }
  if (p != end) return NaN;
  const days = daysFromCivil(y, mo, d);
  const msOfDay = <f64>(((h * 60 + mi) * 60 + s) * 1000 + ms);
  return <f64>days * MS_PER_DAY + msOfDay - <f64>offMin * MS_PER_MINUTE;
}
