// Reference implementation of the event-time contract in docs/semantics.md.
//
// This file is a specification written as code. Property tests run the real
// (WebAssembly) pipeline and this file on the same input and compare results.
// It is meant to be slow, plain and obviously correct: no clever data
// structures, no incremental aggregates. Every window keeps every value it was
// given, and results are computed from those values by the tests.
//
// Choices this file makes where docs/semantics.md is silent are marked "CHOICE:".

// ---------------------------------------------------------------------------
// Public types
// ---------------------------------------------------------------------------

export type WindowSpec =
  | { type: 'tumbling'; sizeMs: number }
  | { type: 'sliding'; sizeMs: number; slideMs: number }
  | { type: 'session'; gapMs: number };

export interface RefAggregation {
  name: string;
  groupBy: string[];
  value: string;
  window: WindowSpec;
}

export interface RefEventTime {
  field: string;
  maxOutOfOrdernessMs: number;
  allowedLatenessMs: number;
}

export interface RefEmission {
  name: string;
  key: string;
  group: Record<string, string>;
  window: { start: number; end: number };
  late: boolean;
  /** Every value added to the window, in the order the events were read. */
  values: number[];
}

export interface RefDeadLetter {
  original_event: string;
  reason: 'malformed' | 'invalid' | 'late';
  /** Absent (not undefined) for `malformed`. */
  aggregation?: string;
  /** 0-based index of the input line (blank lines count). */
  line: number;
}

export interface RefResult {
  emissions: RefEmission[];
  deadLetters: RefDeadLetter[];
  /** Per aggregation name: events too late for at least one of their windows. */
  lateCounts: Record<string, number>;
}

// ---------------------------------------------------------------------------
// Reading fields
// ---------------------------------------------------------------------------

type JsonObject = Record<string, unknown>;

/** A JSON object: not null, not an array. (JSON.parse never yields other objects.) */
function isPlainObject(v: unknown): v is JsonObject {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

type Lookup = { found: true; value: unknown } | { found: false };

/**
 * Follows a dotted path (`data.model`) through plain objects, own properties
 * only. An array or a primitive on the way means the field is missing.
 */
export function getPath(obj: JsonObject, path: string): Lookup {
  let current: unknown = obj;
  for (const segment of path.split('.')) {
    if (!isPlainObject(current)) return { found: false };
    if (!Object.prototype.hasOwnProperty.call(current, segment)) return { found: false };
    current = current[segment];
  }
  return { found: true, value: current };
}

function lastSegment(path: string): string {
  const segments = path.split('.');
  return segments[segments.length - 1] ?? path;
}

// ---------------------------------------------------------------------------
// Event time
// ---------------------------------------------------------------------------

/** Largest |epoch ms| a JavaScript Date can hold. */
const MAX_EPOCH_MS = 8.64e15;

const ISO_PATTERN =
  /^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(\.\d{1,9})?([Zz]|[+-]\d{2}:?\d{2})?$/;

function isLeapYear(year: number): boolean {
  return (year % 4 === 0 && year % 100 !== 0) || year % 400 === 0;
}

function daysInMonth(year: number, month: number): number {
  switch (month) {
    case 2:
      return isLeapYear(year) ? 29 : 28;
    case 4:
    case 6:
    case 9:
    case 11:
      return 30;
    default:
      return 31;
  }
}

/**
 * Milliseconds since the epoch of a UTC calendar date and time. Same as
 * Date.UTC(year, month - 1, ...), except that Date.UTC maps years 0..99 to
 * 1900..1999; setUTCFullYear does not, so years 0000..0099 are right too.
 */
function utcMillis(year: number, month: number, day: number, hour: number, minute: number, second: number, ms: number): number {
  const date = new Date(0);
  date.setUTCFullYear(year, month - 1, day);
  date.setUTCHours(hour, minute, second, ms);
  return date.getTime();
}

/** Parses an ISO-8601 timestamp string to epoch ms, or undefined if it is not one. */
export function parseIsoTimestamp(text: string): number | undefined {
  const m = ISO_PATTERN.exec(text);
  if (m === null) return undefined;
  const year = Number(m[1]);
  const month = Number(m[2]);
  const day = Number(m[3]);
  const hour = Number(m[4]);
  const minute = Number(m[5]);
  const second = Number(m[6]);
  const fraction = m[7]; // like ".7899", or undefined
  const offset = m[8]; // like "Z", "+02:00", "-0530", or undefined

  if (month < 1 || month > 12) return undefined;
  if (day < 1 || day > daysInMonth(year, month)) return undefined;
  if (hour > 23 || minute > 59 || second > 59) return undefined;

  // Fraction digits beyond milliseconds are dropped: ".7899" is 789 ms, ".5" is 500 ms.
  const ms = fraction === undefined ? 0 : Number(fraction.slice(1).padEnd(3, '0').slice(0, 3));

  // No offset means UTC.
  let offsetMinutes = 0;
  if (offset !== undefined && offset !== 'Z' && offset !== 'z') {
    const sign = offset.startsWith('-') ? -1 : 1;
    const digits = offset.slice(1).replace(':', ''); // "hhmm"
    const offH = Number(digits.slice(0, 2));
    const offM = Number(digits.slice(2, 4));
    if (offH > 23 || offM > 59) return undefined;
    offsetMinutes = sign * (offH * 60 + offM);
  }

  return utcMillis(year, month, day, hour, minute, second, ms) - offsetMinutes * 60000;
}

/**
 * The event time of a field value: an integer JSON number of epoch ms with
 * |v| <= 8.64e15, or an ISO-8601 string. Anything else is undefined (invalid).
 */
export function parseEventTime(value: unknown): number | undefined {
  if (typeof value === 'number') {
    if (!Number.isInteger(value) || Math.abs(value) > MAX_EPOCH_MS) return undefined;
    // CHOICE: -0 (JSON "-0") is the same instant as 0; normalise it so that
    // window bounds never come out as -0.
    return value + 0;
  }
  if (typeof value === 'string') return parseIsoTimestamp(value);
  return undefined;
}

/** A value to aggregate: a finite JavaScript number. */
function parseValue(value: unknown): number | undefined {
  if (typeof value !== 'number' || !Number.isFinite(value)) return undefined;
  return value;
}

/** How a group-by field's value appears in the key. */
function groupValueString(lookup: Lookup): string {
  if (!lookup.found) return 'null';
  const v = lookup.value;
  if (typeof v === 'string') return v;
  if (typeof v === 'number' || typeof v === 'boolean' || v === null) return String(v);
  return JSON.stringify(v); // object or array
}

// ---------------------------------------------------------------------------
// Windows
// ---------------------------------------------------------------------------

/** Modulo whose result has the sign of the divisor: floorMod(-1, 10) = 9. */
function floorMod(a: number, b: number): number {
  return ((a % b) + b) % b;
}

interface Bounds {
  start: number;
  end: number;
}

/** The tumbling or sliding windows an event time belongs to, ascending by start. */
function fixedWindowsFor(ts: number, spec: WindowSpec): Bounds[] {
  if (spec.type === 'tumbling') {
    const start = ts - floorMod(ts, spec.sizeMs);
    return [{ start, end: start + spec.sizeMs }];
  }
  if (spec.type === 'sliding') {
    // Every start = k * slideMs with start <= ts < start + sizeMs.
    // The latest such start is the multiple of slideMs at or below ts.
    const windows: Bounds[] = [];
    for (let start = ts - floorMod(ts, spec.slideMs); start > ts - spec.sizeMs; start -= spec.slideMs) {
      windows.unshift({ start, end: start + spec.sizeMs });
    }
    return windows;
  }
  throw new Error('session windows are not fixed windows');
}

type Judgement = 'on-time' | 'late-allowed' | 'too-late';

/** docs/semantics.md "Watermark, firing, lateness": judge a window's end against W. */
function judge(watermark: number, end: number, allowedLatenessMs: number): Judgement {
  if (watermark < end) return 'on-time';
  if (watermark < end + allowedLatenessMs) return 'late-allowed';
  return 'too-late';
}

/** The live state of one window of one aggregation and key. */
interface WindowState {
  aggIndex: number;
  key: string;
  group: Record<string, string>;
  start: number;
  end: number;
  /** Values with the index of the line they came from; always ascending by line. */
  values: { line: number; value: number }[];
  /** Has fired at least once. */
  fired: boolean;
  /** Has been added to since it last fired. */
  changedSinceFire: boolean;
}

function stateId(aggIndex: number, key: string, start: number, end: number): string {
  return JSON.stringify([aggIndex, key, start, end]);
}

/**
 * CHOICE: when several windows fire in the same step, they fire in order of
 * end, then aggregation (config order), then key (code-unit order), then start.
 */
function firingOrder(a: WindowState, b: WindowState): number {
  if (a.end !== b.end) return a.end - b.end;
  if (a.aggIndex !== b.aggIndex) return a.aggIndex - b.aggIndex;
  if (a.key !== b.key) return a.key < b.key ? -1 : 1;
  return a.start - b.start;
}

// ---------------------------------------------------------------------------
// Configuration checks
// ---------------------------------------------------------------------------

function checkConfig(eventTime: RefEventTime, aggs: RefAggregation[]): void {
  const isPositiveInteger = (n: number) => Number.isSafeInteger(n) && n > 0;
  if (!(eventTime.maxOutOfOrdernessMs >= 0)) throw new Error('maxOutOfOrdernessMs must be >= 0');
  if (!(eventTime.allowedLatenessMs >= 0)) throw new Error('allowedLatenessMs must be >= 0');
  const names = new Set<string>();
  for (const agg of aggs) {
    if (names.has(agg.name)) throw new Error(`duplicate aggregation name ${agg.name}`);
    names.add(agg.name);
    const w = agg.window;
    if (w.type === 'tumbling' && !isPositiveInteger(w.sizeMs)) throw new Error('sizeMs must be a positive integer');
    if (w.type === 'sliding' && !(isPositiveInteger(w.sizeMs) && isPositiveInteger(w.slideMs))) {
      throw new Error('sizeMs and slideMs must be positive integers');
    }
    if (w.type === 'session' && !isPositiveInteger(w.gapMs)) throw new Error('gapMs must be a positive integer');
  }
}

// ---------------------------------------------------------------------------
// The processor
// ---------------------------------------------------------------------------

export function runReference(lines: string[], eventTime: RefEventTime, aggs: RefAggregation[]): RefResult {
  checkConfig(eventTime, aggs);

  const emissions: RefEmission[] = [];
  const deadLetters: RefDeadLetter[] = [];
  const lateCounts: Record<string, number> = Object.fromEntries(aggs.map((agg) => [agg.name, 0]));

  /** Live (not purged) windows of all aggregations, by stateId. */
  const live = new Map<string, WindowState>();
  /** Largest valid timestamp seen so far. */
  let maxTimestamp = -Infinity;

  function aggregationAt(index: number): RefAggregation {
    const agg = aggs[index];
    if (agg === undefined) throw new Error(`no aggregation ${index}`);
    return agg;
  }

  function fire(state: WindowState, late: boolean): void {
    emissions.push({
      name: aggregationAt(state.aggIndex).name,
      key: state.key,
      group: { ...state.group },
      window: { start: state.start, end: state.end },
      late,
      values: state.values.map((v) => v.value),
    });
    state.fired = true;
    state.changedSinceFire = false;
  }

  /** Steps (1) and (2): fire windows that W has passed, then purge expired ones. */
  function advanceTo(watermark: number): void {
    const due = [...live.values()].filter((s) => !s.fired && s.end <= watermark).sort(firingOrder);
    for (const state of due) fire(state, false);
    for (const [id, state] of live) {
      if (state.end + eventTime.allowedLatenessMs <= watermark) live.delete(id);
    }
  }

  function deadLetter(line: string, lineIndex: number, reason: 'invalid' | 'late', aggregation: string): void {
    deadLetters.push({ original_event: line, reason, aggregation, line: lineIndex });
  }

  /** Step (3) for a tumbling or sliding aggregation. Returns the number of windows the event was too late for, and how many it had. */
  function addToFixedWindows(aggIndex: number, agg: RefAggregation, ts: number, value: number, key: string, group: Record<string, string>, lineIndex: number, watermark: number): { tooLate: number; windows: number } {
    const windows = fixedWindowsFor(ts, agg.window);
    let tooLate = 0;
    for (const w of windows) {
      const judgement = judge(watermark, w.end, eventTime.allowedLatenessMs);
      if (judgement === 'too-late') {
        tooLate++;
        continue;
      }
      const id = stateId(aggIndex, key, w.start, w.end);
      let state = live.get(id);
      if (state === undefined) {
        state = { aggIndex, key, group, start: w.start, end: w.end, values: [], fired: false, changedSinceFire: false };
        live.set(id, state);
      }
      state.values.push({ line: lineIndex, value });
      state.changedSinceFire = true;
      if (judgement === 'late-allowed') fire(state, true);
    }
    return { tooLate, windows: windows.length };
  }

  /** Step (3) for a session aggregation. Returns the number of windows the event was too late for (0 or 1), and how many it had (1). */
  function addToSession(aggIndex: number, gapMs: number, ts: number, value: number, key: string, group: Record<string, string>, lineIndex: number, watermark: number): { tooLate: number; windows: number } {
    const sameKey = [...live.values()].filter((s) => s.aggIndex === aggIndex && s.key === key);
    // Grow the proposed window [ts, ts + gap) by every live session that
    // intersects or touches it, until nothing more touches (transitive merge).
    let start = ts;
    let end = ts + gapMs;
    const merged: WindowState[] = [];
    let grew = true;
    while (grew) {
      grew = false;
      for (const s of sameKey) {
        if (!merged.includes(s) && s.start <= end && start <= s.end) {
          merged.push(s);
          start = Math.min(start, s.start);
          end = Math.max(end, s.end);
          grew = true;
        }
      }
    }

    const judgement = judge(watermark, end, eventTime.allowedLatenessMs);
    if (judgement === 'too-late') return { tooLate: 1, windows: 1 }; // nothing changes

    // The merged session replaces its parts and counts as a new window.
    for (const s of merged) live.delete(stateId(aggIndex, s.key, s.start, s.end));
    const values = merged.flatMap((s) => s.values).sort((a, b) => a.line - b.line);
    values.push({ line: lineIndex, value });
    const state: WindowState = { aggIndex, key, group, start, end, values, fired: false, changedSinceFire: true };
    live.set(stateId(aggIndex, key, start, end), state);
    if (judgement === 'late-allowed') fire(state, true);
    return { tooLate: 0, windows: 1 };
  }

  lines.forEach((line, lineIndex) => {
    if (line.trim() === '') return; // blank: no record at all

    const watermark = maxTimestamp - eventTime.maxOutOfOrdernessMs; // W before this event
    advanceTo(watermark);

    let parsed: unknown;
    try {
      parsed = JSON.parse(line);
    } catch {
      parsed = undefined;
    }
    if (!isPlainObject(parsed)) {
      deadLetters.push({ original_event: line, reason: 'malformed', line: lineIndex });
      return;
    }
    const event = parsed;

    const tsLookup = getPath(event, eventTime.field);
    const ts = tsLookup.found ? parseEventTime(tsLookup.value) : undefined;
    if (ts === undefined) {
      // Invalid for every aggregation; does not move the watermark.
      for (const agg of aggs) deadLetter(line, lineIndex, 'invalid', agg.name);
      return;
    }

    aggs.forEach((agg, aggIndex) => {
      const valueLookup = getPath(event, agg.value);
      const value = valueLookup.found ? parseValue(valueLookup.value) : undefined;
      if (value === undefined) {
        deadLetter(line, lineIndex, 'invalid', agg.name);
        return;
      }

      const pairs = agg.groupBy.map((path): [string, string] => [lastSegment(path), groupValueString(getPath(event, path))]);
      // In the key, each value has '%', ':' and '=' percent-encoded ('%' first).
      const encode = (v: string): string => v.split('%').join('%25').split(':').join('%3A').split('=').join('%3D');
      const key = pairs.map(([field, v]) => `${field}=${encode(v)}`).join(':');
      // CHOICE: two group-by paths with the same last segment both appear in
      // the key; in `group` the later one wins (plain object semantics).
      const group: Record<string, string> = Object.fromEntries(pairs);

      const outcome =
        agg.window.type === 'session'
          ? addToSession(aggIndex, agg.window.gapMs, ts, value, key, group, lineIndex, watermark)
          : addToFixedWindows(aggIndex, agg, ts, value, key, group, lineIndex, watermark);

      if (outcome.tooLate > 0) lateCounts[agg.name] = (lateCounts[agg.name] ?? 0) + 1;
      // CHOICE: a sliding event that falls in no window at all (sizeMs < slideMs,
      // between windows) is not "too late for all its windows": it is dropped
      // without a dead letter and without being counted.
      if (outcome.windows > 0 && outcome.tooLate === outcome.windows) deadLetter(line, lineIndex, 'late', agg.name);
    });

    maxTimestamp = Math.max(maxTimestamp, ts);
  });

  // End of input: W = +Infinity. Every live window fires once more if it never
  // fired (late: false) or changed since it last fired (late: true).
  const remaining = [...live.values()].sort(firingOrder);
  for (const state of remaining) {
    if (!state.fired) fire(state, false);
    else if (state.changedSinceFire) fire(state, true);
  }

  return { emissions, deadLetters, lateCounts };
}

// ---------------------------------------------------------------------------
// Final results
// ---------------------------------------------------------------------------

function compareStrings(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/**
 * The final result of every window: the last emission per (name, key, start,
 * end), minus every result superseded by a later-emitted result of the same
 * name and key whose window contains it (and is not identical). Sorted by name,
 * key, start, end (strings in code-unit order).
 *
 * The containment rule is meant for session windows. It is applied to all
 * emissions because it cannot fire for tumbling or sliding ones: all windows
 * of such an aggregation have the same size, so none strictly contains another.
 *
 * OPEN POINT: docs/semantics.md means "superseded because it was merged in", but a
 * list of emissions does not say what merged into what, so containment stands
 * in for it. The two differ in one case: a session that fired and was purged
 * can later be covered by a different session that grew backwards over it
 * through late-but-allowed events (purged sessions never merge). Containment
 * then drops the purged session's result although its values are in no other
 * result. See the test "finalResults: a purged session later covered ...".
 */
export function finalResults(emissions: RefEmission[]): RefEmission[] {
  const last = new Map<string, { emission: RefEmission; index: number }>();
  emissions.forEach((emission, index) => {
    last.set(JSON.stringify([emission.name, emission.key, emission.window.start, emission.window.end]), { emission, index });
  });
  const candidates = [...last.values()];

  const superseded = (c: { emission: RefEmission; index: number }): boolean =>
    candidates.some((other) => {
      const a = c.emission;
      const b = other.emission;
      const contains = b.window.start <= a.window.start && a.window.end <= b.window.end;
      const identical = b.window.start === a.window.start && b.window.end === a.window.end;
      return b.name === a.name && b.key === a.key && other.index > c.index && contains && !identical;
    });

  return candidates
    .filter((c) => !superseded(c))
    .map((c) => c.emission)
    .sort(
      (a, b) =>
        compareStrings(a.name, b.name) ||
        compareStrings(a.key, b.key) ||
        a.window.start - b.window.start ||
        a.window.end - b.window.end,
    );
}
