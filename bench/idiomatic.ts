// The baseline Weir is benchmarked against: the event-time aggregator a competent
// Node.js developer would write without WebAssembly. readline over a file stream,
// JSON.parse per line, a Map of window states per aggregation (and a heap of their
// timers: when each fires, when each goes), Welford for the
// variance and @datadog/sketches-js for the quantiles. It does the same work as
// Weir (every quantile, every result serialized, every dead letter built). On
// generated streams its results and dead letters agreed with Weir's (quantiles
// within sketch error), but it is not held to every edge of docs/semantics.md.
import { createReadStream } from 'node:fs';
import { createInterface } from 'node:readline';
import { DDSketch } from '@datadog/sketches-js';

export interface IdiomaticAgg {
  name: string;
  groupBy: string[];
  value: string;
  window: { type: 'tumbling'; sizeMs: number } | { type: 'sliding'; sizeMs: number; slideMs: number } | { type: 'session'; gapMs: number };
}

export interface IdiomaticOptions {
  timestampField: string;
  maxOutOfOrdernessMs: number;
  allowedLatenessMs: number;
  /** Receives each result and dead-letter record as a JSON line; by default they are counted and dropped. */
  sink?: (json: string, kind: 'result' | 'deadLetter') => void;
}

interface WindowState {
  key: string;
  group: Record<string, string>;
  start: number;
  end: number;
  count: number;
  sum: number;
  min: number;
  max: number;
  mean: number;
  m2: number;
  sketch: DDSketch;
  fired: boolean;
  /** Merged into another session or dropped past allowed lateness: its timers are void. */
  gone: boolean;
  /** Its key in AggState.windows (tumbling and sliding). */
  id: string;
}

interface AggState {
  agg: IdiomaticAgg;
  groupPaths: string[][];
  groupNames: string[];
  valuePath: string[];
  /** Tumbling and sliding windows, by `${key}|${start}`. */
  windows: Map<string, WindowState>;
  /** Open sessions, by key. */
  sessions: Map<string, WindowState[]>;
}

const get = (obj: unknown, path: string[]): unknown => {
  let cur = obj;
  for (const seg of path) {
    if (cur === null || typeof cur !== 'object') return undefined;
    cur = (cur as Record<string, unknown>)[seg];
  }
  return cur;
};

/** A group-by value as Weir keys it: missing as "null", objects as JSON. */
const groupString = (v: unknown): string => {
  if (v === undefined || v === null) return 'null';
  if (typeof v === 'string') return v;
  if (typeof v === 'number' || typeof v === 'boolean') return String(v);
  return JSON.stringify(v);
};

const parseTimestamp = (v: unknown): number => {
  if (typeof v === 'number') return Number.isFinite(v) ? v : NaN;
  if (typeof v === 'string') return Date.parse(v);
  return NaN;
};

const newState = (key: string, group: Record<string, string>, start: number, end: number): WindowState => ({
  key, group, start, end, count: 0, sum: 0, min: Infinity, max: -Infinity, mean: 0, m2: 0,
  sketch: new DDSketch({ relativeAccuracy: 0.01 }), fired: false, gone: false, id: '',
});

const add = (s: WindowState, x: number): void => {
  s.count++;
  s.sum += x;
  if (x < s.min) s.min = x;
  if (x > s.max) s.max = x;
  const delta = x - s.mean;
  s.mean += delta / s.count;
  s.m2 += delta * (x - s.mean);
  s.sketch.accept(x);
};

/** Folds `b` into `a` (Chan et al. for the variance). */
const merge = (a: WindowState, b: WindowState): void => {
  const n = a.count + b.count;
  const delta = b.mean - a.mean;
  a.m2 += b.m2 + (delta * delta * a.count * b.count) / n;
  a.mean += (delta * b.count) / n;
  a.count = n;
  a.sum += b.sum;
  a.min = Math.min(a.min, b.min);
  a.max = Math.max(a.max, b.max);
  a.sketch.merge(b.sketch);
  a.start = Math.min(a.start, b.start);
  a.end = Math.max(a.end, b.end);
};

/** Start of every tumbling or sliding window that contains `ts`. */
const windowStarts = (w: IdiomaticAgg['window'], ts: number): number[] => {
  if (w.type === 'tumbling') return [ts - (((ts % w.sizeMs) + w.sizeMs) % w.sizeMs)];
  if (w.type !== 'sliding') return [];
  const starts: number[] = [];
  for (let start = ts - (((ts % w.slideMs) + w.slideMs) % w.slideMs); start > ts - w.sizeMs; start -= w.slideMs) starts.push(start);
  return starts;
};

export async function runIdiomatic(path: string, aggs: IdiomaticAgg[], opts: IdiomaticOptions): Promise<{ events: number; results: number; deadLetters: number }> {
  const states: AggState[] = aggs.map((agg) => ({
    agg,
    groupPaths: agg.groupBy.map((f) => f.split('.')),
    groupNames: agg.groupBy.map((f) => f.split('.').pop() ?? f),
    valuePath: agg.value.split('.'),
    windows: new Map(),
    sessions: new Map(),
  }));
  const tsPath = opts.timestampField.split('.');
  const lateness = opts.allowedLatenessMs;
  let events = 0;
  let results = 0;
  let deadLetters = 0;
  let sinkBytes = 0;
  const sink = opts.sink ?? ((json: string) => void (sinkBytes += json.length + 1));
  let maxTs = -Infinity;
  let watermark = -Infinity;
  // Timers: when the watermark passes a window's end it fires, when it passes end +
  // lateness the window goes. A binary min-heap of (time, window); an entry whose
  // window moved on (grew, fired, merged, went) is stale and skipped when popped. A
  // scan of every open window on each watermark step would be quadratic once there
  // are many keys (sessions per user).
  const heapAt: number[] = [];
  const heapS: WindowState[] = [];
  const heapA: AggState[] = [];
  const dueOf = (s: WindowState): number => (s.fired ? s.end + lateness : s.end);
  const schedule = (a: AggState, s: WindowState): void => {
    const at = dueOf(s);
    let i = heapAt.length;
    heapAt.push(at);
    heapS.push(s);
    heapA.push(a);
    while (i > 0) {
      const up = (i - 1) >> 1;
      if (heapAt[up]! <= at) break;
      heapAt[i] = heapAt[up]!;
      heapS[i] = heapS[up]!;
      heapA[i] = heapA[up]!;
      i = up;
    }
    heapAt[i] = at;
    heapS[i] = s;
    heapA[i] = a;
  };
  const popMin = (): void => {
    const at = heapAt.pop()!, s = heapS.pop()!, a = heapA.pop()!;
    const n = heapAt.length;
    if (n === 0) return;
    let i = 0;
    for (;;) {
      let c = 2 * i + 1;
      if (c >= n) break;
      if (c + 1 < n && heapAt[c + 1]! < heapAt[c]!) c++;
      if (heapAt[c]! >= at) break;
      heapAt[i] = heapAt[c]!;
      heapS[i] = heapS[c]!;
      heapA[i] = heapA[c]!;
      i = c;
    }
    heapAt[i] = at;
    heapS[i] = s;
    heapA[i] = a;
  };

  const emit = (a: AggState, s: WindowState, late: boolean): void => {
    const stddev = s.count > 0 ? Math.sqrt(s.m2 / s.count) : 0;
    // sketches-js answers a bucket's value, which can lie past the window's extremes; Weir clamps.
    const q = (p: number): number => Math.min(Math.max(s.sketch.getValueAtQuantile(p), s.min), s.max);
    const result = {
      name: a.agg.name, key: s.key, group: s.group,
      window: { start: s.start, end: s.end },
      results: {
        count: s.count, sum: s.sum, avg: s.sum / s.count, min: s.min, max: s.max,
        p50: q(0.5), p95: q(0.95), p99: q(0.99), stddev,
      },
      late, emittedAt: Date.now(),
    };
    sink(JSON.stringify(result), 'result');
    results++;
    s.fired = true;
  };

  const deadLetter = (line: string, reason: 'malformed' | 'invalid' | 'late', error: string, aggregation?: string): void => {
    const record = { original_event: line, reason, error, aggregation, retry_count: 0, timestamp: new Date().toISOString(), processor_instance: 'idiomatic', partition: 0, offset: String(events - 1) };
    sink(JSON.stringify(record), 'deadLetter');
    deadLetters++;
  };

  /** Fires windows whose end the watermark passed and drops those past allowed lateness. */
  const advance = (): void => {
    while (heapAt.length > 0 && heapAt[0]! <= watermark) {
      const at = heapAt[0]!, s = heapS[0]!, a = heapA[0]!;
      popMin();
      if (s.gone || dueOf(s) !== at) continue;
      if (!s.fired && s.end <= watermark) emit(a, s, false);
      if (s.end + lateness > watermark) {
        schedule(a, s);
        continue;
      }
      s.gone = true;
      if (a.agg.window.type !== 'session') a.windows.delete(s.id);
      else {
        const list = a.sessions.get(s.key)!;
        list.splice(list.indexOf(s), 1);
        if (list.length === 0) a.sessions.delete(s.key);
      }
    }
  };

  /** Adds `x` to a window that is not too late; a window the watermark already passed fires again at once. */
  const accept = (a: AggState, s: WindowState, x: number): void => {
    add(s, x);
    if (s.end <= watermark) emit(a, s, true);
    schedule(a, s);
  };

  /** Merges [ts, ts + gap) with the key's sessions it touches; false when the result is too late. */
  const addToSession = (a: AggState, key: string, group: () => Record<string, string>, ts: number, x: number): boolean => {
    const gap = (a.agg.window as { gapMs: number }).gapMs;
    const list = a.sessions.get(key) ?? [];
    const touching = list.filter((s) => s.start <= ts + gap && ts <= s.end);
    if (watermark >= Math.max(ts + gap, ...touching.map((s) => s.end)) + lateness) return false;
    let target = touching[0];
    if (!target) {
      target = newState(key, group(), ts, ts + gap);
      list.push(target);
      a.sessions.set(key, list);
    }
    for (const other of touching.slice(1)) {
      merge(target, other);
      list.splice(list.indexOf(other), 1);
      other.gone = true;
    }
    target.start = Math.min(target.start, ts);
    target.end = Math.max(target.end, ts + gap);
    if (target.end > watermark) target.fired = false; // grew past the watermark: fires again later
    accept(a, target, x);
    return true;
  };

  const lines = createInterface({ input: createReadStream(path), crlfDelay: Infinity });
  for await (const line of lines) {
    if (line.trim() === '') continue;
    events++;
    let event: unknown;
    try {
      event = JSON.parse(line);
    } catch {
      deadLetter(line, 'malformed', 'not valid JSON');
      continue;
    }
    if (event === null || typeof event !== 'object' || Array.isArray(event)) {
      deadLetter(line, 'malformed', 'not a JSON object');
      continue;
    }
    const ts = parseTimestamp(get(event, tsPath));
    for (const a of states) {
      const x = get(event, a.valuePath);
      if (Number.isNaN(ts)) deadLetter(line, 'invalid', `${opts.timestampField} is missing or unparseable`, a.agg.name);
      else if (typeof x !== 'number' || !Number.isFinite(x)) deadLetter(line, 'invalid', `${a.agg.value} is not a number`, a.agg.name);
      else {
        const values = a.groupPaths.map((p) => groupString(get(event, p)));
        const key = values.map((v, i) => `${a.groupNames[i]}=${v}`).join(':');
        const group = (): Record<string, string> => Object.fromEntries(values.map((v, i): [string, string] => [a.groupNames[i]!, v]));
        let added = false;
        if (a.agg.window.type === 'session') added = addToSession(a, key, group, ts, x);
        else {
          const size = a.agg.window.sizeMs;
          for (const start of windowStarts(a.agg.window, ts)) {
            if (watermark >= start + size + lateness) continue;
            const id = `${key}|${start}`;
            let s = a.windows.get(id);
            if (!s) {
              a.windows.set(id, (s = newState(key, group(), start, start + size)));
              s.id = id;
            }
            accept(a, s, x);
            added = true;
          }
        }
        if (!added) deadLetter(line, 'late', `event time ${ts} is past allowed lateness of all its windows`, a.agg.name);
      }
    }
    if (!Number.isNaN(ts) && ts > maxTs) {
      maxTs = ts;
      watermark = maxTs - opts.maxOutOfOrdernessMs;
      advance();
    }
  }
  watermark = Infinity; // end of a bounded input: everything fires
  advance();
  return { events, results, deadLetters };
}
