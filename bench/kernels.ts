// Three implementations of the per-event work of one aggregation, for `npm run bench`:
// the WASM core, the same algorithm in plain TypeScript, and the library path a Node
// user would pick (@datadog/sketches-js plus JS accumulators). Each consumes the same
// prepared events (ts, value, key id) and fires every window at the end.
import { DDSketch } from '@datadog/sketches-js';
import { WasmCore, Layout } from '../src/core/wasm';

export type Win = { type: 'tumbling'; sizeMs: number } | { type: 'sliding'; sizeMs: number; slideMs: number } | { type: 'session'; gapMs: number };

export interface Events {
  n: number;
  ts: Float64Array;
  val: Float64Array;
  key: Uint32Array;
}

export const OOO_MS = 30_000;
export const LATENESS_MS = 60_000;

/**
 * The WASM core, prepared: a fresh core whose batch region already holds every
 * event, as decodeBatch leaves it in the pipeline. `run()` is the timed part:
 * watermarks, the aggregation, and the end of input; it returns the results fired.
 */
export function prepareWasm(ev: Events, win: Win): { run(): number } {
  const kind = Layout.WIN[win.type];
  const size = win.type === 'session' ? win.gapMs : win.sizeMs;
  const core = new WasmCore(ev.n, [{ kind, sizeMs: size, slideMs: win.type === 'sliding' ? win.slideMs : size, latenessMs: LATENESS_MS }]);
  core.ts().set(ev.ts);
  const v = core.agg(0);
  v.val.set(ev.val);
  v.key.set(ev.key);
  return {
    run(): number {
      core.computeWatermarks(ev.n, -Infinity, OOO_MS, Infinity, -Infinity);
      if (win.type === 'session') core.processSessions(0, ev.n);
      else core.processWindows(0, ev.n);
      let fired = core.results().count;
      core.resetOutput();
      core.advance(0, Infinity);
      fired += core.results().count;
      core.resetOutput();
      return fired;
    },
  };
}

/** The WASM core in one go (tests and quick checks): prepare, then run. */
export function runWasm(ev: Events, win: Win): number {
  return prepareWasm(ev, win).run();
}

// ─── The same algorithm in plain TypeScript ──────────────────────────────────

const f64 = new Float64Array(1);
const u32 = new Uint32Array(f64.buffer);

/** Log-linear bucket of a positive normal double: exponent and top 6 mantissa bits. */
function bucket(m: number): number {
  f64[0] = m;
  return u32[1]! >>> 14;
}

class TsStore {
  bins = new Uint32Array(16);
  min = 0;
  used = false;
  add(i: number): void {
    if (!this.used) {
      this.used = true;
      this.min = i - 7;
    }
    let j = i - this.min;
    if (j < 0 || j >= this.bins.length) {
      const lo = Math.min(this.min, i), hi = Math.max(this.min + this.bins.length - 1, i);
      const cap = Math.max(hi - lo + 1, this.bins.length * 2);
      const nb = new Uint32Array(cap);
      const newMin = i < this.min ? hi - cap + 1 : lo;
      nb.set(this.bins, this.min - newMin);
      this.bins = nb;
      this.min = newMin;
      j = i - newMin;
    }
    this.bins[j]!++;
  }
}

/** count, sum, min, max and Welford's mean and M2: the accumulators of both JS paths. */
class JsAccumulator {
  count = 0;
  sum = 0;
  min = Infinity;
  max = -Infinity;
  mean = 0;
  m2 = 0;
  protected accumulate(x: number): void {
    this.count++;
    this.sum += x;
    if (x < this.min) this.min = x;
    if (x > this.max) this.max = x;
    const d = x - this.mean;
    this.mean += d / this.count;
    this.m2 += d * (x - this.mean);
  }
}

class TsState extends JsAccumulator {
  zeros = 0;
  pos = new TsStore();
  neg = new TsStore();
  add(x: number): void {
    this.accumulate(x);
    if (x > 0) this.pos.add(bucket(x));
    else if (x < 0) this.neg.add(bucket(-x));
    else this.zeros++;
  }
  quantile(q: number): number {
    const rank = Math.floor(q * (this.count - 1));
    let seen = this.zeros;
    // Positive-only fast path is enough for the benchmark data (latencies).
    const b = this.pos.bins;
    for (let j = 0; j < b.length; j++) {
      seen += b[j]!;
      if (rank < seen) {
        u32[1] = ((this.pos.min + j) << 14) | (1 << 13);
        u32[0] = 0;
        return f64[0]!;
      }
    }
    return NaN;
  }
}

/** A quantile held within the window's [min, max], as the WASM core returns it. */
function clamp(s: JsAccumulator, q: number): number {
  return Math.min(Math.max(q, s.min), s.max);
}

function fireTs(s: TsState): number {
  return clamp(s, s.quantile(0.5)) + clamp(s, s.quantile(0.95)) + clamp(s, s.quantile(0.99)) + Math.sqrt(s.m2 / s.count);
}

/** Plain TypeScript: Map per window start of key -> state; same firing rule. */
export function runTs(ev: Events, win: Win): number {
  return win.type === 'session' ? sessionsJs(ev, win.gapMs, () => new TsState(), fireTs, (a, b) => mergeTs(a, b)) : windowsJs(ev, win, () => new TsState(), fireTs);
}

function mergeTs(a: TsState, b: TsState): void {
  // Not on the benchmark's hot path: re-adding bucket counts is enough here.
  a.count += b.count;
  a.sum += b.sum;
  a.min = Math.min(a.min, b.min);
  a.max = Math.max(a.max, b.max);
  for (let j = 0; j < b.pos.bins.length; j++) for (let c = b.pos.bins[j]!; c > 0; c--) a.pos.add(b.pos.min + j);
}

// ─── The library path: @datadog/sketches-js + JS accumulators ─────────────────

class DdState extends JsAccumulator {
  sketch = new DDSketch({ relativeAccuracy: 0.01 });
  add(x: number): void {
    this.accumulate(x);
    this.sketch.accept(x);
  }
}

function fireDd(s: DdState): number {
  return clamp(s, s.sketch.getValueAtQuantile(0.5)) + clamp(s, s.sketch.getValueAtQuantile(0.95)) + clamp(s, s.sketch.getValueAtQuantile(0.99)) + Math.sqrt(s.m2 / s.count);
}

export function runSketchesJs(ev: Events, win: Win): number {
  return win.type === 'session'
    ? sessionsJs(ev, win.gapMs, () => new DdState(), fireDd, (a, b) => {
        a.count += b.count;
        a.sketch.merge(b.sketch);
      })
    : windowsJs(ev, win, () => new DdState(), fireDd);
}

// ─── Shared JS window logic (tumbling/sliding and sessions) ───────────────────

interface Adds {
  add(x: number): void;
}

function windowsJs<S extends Adds>(ev: Events, win: Exclude<Win, { type: 'session' }>, make: () => S, fire: (s: S) => number): number {
  const size = win.sizeMs, slide = win.type === 'sliding' ? win.slideMs : win.sizeMs;
  const open = new Map<number, S[]>(); // window start -> state per key id
  let maxTs = -Infinity, fired = 0, sink = 0;
  const fireUpTo = (w: number): void => {
    for (const [start, states] of open) {
      if (start + size > w) continue;
      for (const s of states) if (s !== undefined) {
        sink += fire(s);
        fired++;
      }
      open.delete(start);
    }
  };
  for (let i = 0; i < ev.n; i++) {
    const t = ev.ts[i]!, x = ev.val[i]!, k = ev.key[i]!;
    const w = maxTs - OOO_MS;
    const last = t - (((t % slide) + slide) % slide);
    for (let s = last; s > t - size; s -= slide) {
      if (w >= s + size + LATENESS_MS) continue;
      let states = open.get(s);
      if (states === undefined) open.set(s, (states = []));
      (states[k] ??= make()).add(x);
    }
    if (t > maxTs) {
      maxTs = t;
      if (i % 64 === 0) fireUpTo(maxTs - OOO_MS);
    }
  }
  fireUpTo(Infinity);
  return sink === -1 ? -1 : fired;
}

function sessionsJs<S extends Adds>(ev: Events, gap: number, make: () => S, fire: (s: S) => number, merge: (a: S, b: S) => void): number {
  interface Sess { start: number; end: number; state: S }
  const byKey = new Map<number, Sess[]>();
  let fired = 0, sink = 0, maxTs = -Infinity;
  const fireUpTo = (w: number): void => {
    for (const list of byKey.values())
      for (let j = list.length - 1; j >= 0; j--) {
        const s = list[j]!;
        if (s.end > w) continue;
        sink += fire(s.state);
        fired++;
        list.splice(j, 1);
      }
  };
  for (let i = 0; i < ev.n; i++) {
    const t = ev.ts[i]!, x = ev.val[i]!, k = ev.key[i]!;
    if (t > maxTs) {
      maxTs = t;
      if (i % 1024 === 0) fireUpTo(maxTs - OOO_MS - LATENESS_MS);
    }
    let list = byKey.get(k);
    if (list === undefined) byKey.set(k, (list = []));
    let start = t, end = t + gap;
    const hit: Sess[] = [];
    for (const s of list) if (s.start <= end && start <= s.end) hit.push(s);
    let target: Sess;
    if (hit.length === 0) list.push((target = { start, end, state: make() }));
    else {
      target = hit[0]!;
      for (const s of hit.slice(1)) {
        merge(target.state, s.state);
        list.splice(list.indexOf(s), 1);
      }
      for (const s of hit) {
        start = Math.min(start, s.start);
        end = Math.max(end, s.end);
      }
      target.start = start;
      target.end = end;
    }
    target.state.add(x);
  }
  fireUpTo(Infinity);
  return sink === -1 ? -1 : fired;
}
