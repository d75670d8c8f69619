// Event-time parsing: epoch milliseconds (a JSON number) or ISO-8601 (a string).

const ISO = /^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(?:([Zz])|([+-])(\d{2}):?(\d{2}))?$/;
const MAX_ABS_MS = 8.64e15; // the range of a JavaScript Date

function daysInMonth(year: number, month: number): number {
  if (month === 2) return (year % 4 === 0 && year % 100 !== 0) || year % 400 === 0 ? 29 : 28;
  return month === 4 || month === 6 || month === 9 || month === 11 ? 30 : 31;
}

/**
 * Parses `2025-01-01T12:34:56Z`, `2025-01-01T12:34:56.789+02:00` (also `t`/space
 * separators, `z`, `+0200`, no offset meaning UTC) to epoch ms; digits past
 * milliseconds are truncated. NaN when the text is not such a timestamp.
 */
export function parseIsoMs(text: string): number {
  const m = ISO.exec(text);
  if (m === null) return NaN;
  const year = Number(m[1]), month = Number(m[2]), day = Number(m[3]);
  const hour = Number(m[4]), minute = Number(m[5]), second = Number(m[6]);
  if (month < 1 || month > 12 || day < 1 || day > daysInMonth(year, month)) return NaN;
  if (hour > 23 || minute > 59 || second > 59) return NaN;
  const ms = m[7] === undefined ? 0 : Number(m[7].slice(0, 3).padEnd(3, '0'));
  let offsetMin = 0;
  if (m[9] !== undefined) {
    const oh = Number(m[10]), om = Number(m[11]);
    if (oh > 23 || om > 59) return NaN;
    offsetMin = (m[9] === '-' ? -1 : 1) * (oh * 60 + om);
  }
  // Date.UTC maps years 0..99 to 1900..1999; setUTCFullYear does not.
  const d = new Date(Date.UTC(2000, month - 1, day, hour, minute, second, ms));
  d.setUTCFullYear(year);
  return d.getTime() - offsetMin * 60000;
}

/** Event time of a parsed JSON value in epoch ms, or NaN when it is not a valid timestamp. */
export function eventTimeOf(value: unknown): number {
  if (typeof value === 'number') return Number.isInteger(value) && Math.abs(value) <= MAX_ABS_MS ? value : NaN;
  if (typeof value === 'string') return parseIsoMs(value);
  return NaN;
}

/** Why a timestamp value was rejected, for dead-letter messages. */
export function describeBadTimestamp(field: string, value: unknown): string {
  if (value === undefined) return `timestamp field '${field}' is missing`;
  if (typeof value === 'number') return `timestamp field '${field}' is not an integer number of epoch milliseconds within ±8.64e15: ${value}`;
  return `timestamp field '${field}' is neither epoch milliseconds nor an ISO-8601 date-time: ${JSON.stringify(value)}`;
}

export function isoOf(ms: number): string {
  if (ms === Infinity) return '+inf';
  if (ms === -Infinity) return '-inf';
  return new Date(ms).toISOString();
}
