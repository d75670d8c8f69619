// The window operator: one batch in, results and dead letters out.
//
// Per batch: decode into the core's arrays, compute W before every event, run each
// aggregation through the core (one call each), then read
// what fired and what was rejected. Synchronous and free of I/O: the runner does that.
import type { AggregationConfig, Config } from '../config';
import { WasmCore, Layout } from '../core/wasm';
import { isoOf } from '../time/timestamp';
import { Watermarks } from '../time/watermarks';
import { JsonDecoder, explainInvalid, explainMalformed, REC_BLANK, REC_FAILED, REC_MALFORMED, REC_OK, type Decoder } from './decoder';
import { KeyRegistry } from './keys';
import { ScanDecoder } from './scandecoder';
import { offsetOf, stateKey, type DeadLetter, type RecordBatch, type WindowResult } from './types';

const { EV, RES, RES_BYTES, GONE, GONE_BYTES, SNAP, SNAP_HEADER } = Layout;

/**
 * A key registry that also keeps each key's group values in group-by order, so that
 * a window's state can carry them (two group-by paths may share a field name, so
 * `groups` alone cannot give them back).
 */
class ValuedKeyRegistry extends KeyRegistry {
  readonly values: string[][] = [];

  override idOf(values: readonly string[]): number {
    const id = super.idOf(values);
    if (id === this.values.length) this.values.push(values.slice());
    return id;
  }
}

/** Changes of the window state since the last drain, at the level of state keys. */
export interface StateChanges {
  /** Windows created or changed: (state key, value). */
  puts: Array<[string, Buffer]>;
  /** State keys no window holds any more (purged, merged away, or a session that grew). */
  deletes: string[];
}

/**
 * Value format of one window's state (version 1), little-endian:
 *
 *   u8 'W' (0x57), u8 version (1)
 *   u16 byte length, UTF-8: the aggregation's name
 *   u16 n, then n × (u32 byte length, UTF-8): the group values, in group-by order
 *   f64 start, f64 end
 *   the rest: the core's slot serialization (accumulators and sketch; assembly/layout.ts,
 *   versioned by its own leading u32 SER_VERSION)
 */
export const STATE_VALUE_VERSION = 1;
const STATE_MAGIC = 0x57;

interface DecodedState {
  name: string;
  values: string[];
  start: number;
  end: number;
  core: Uint8Array;
}

function stateHeader(name: string, values: readonly string[]): Buffer {
  const parts = [Buffer.from(name, 'utf8'), ...values.map((v) => Buffer.from(v, 'utf8'))];
  const b = Buffer.allocUnsafe(2 + 2 + parts[0]!.length + 2 + values.length * 4 + parts.slice(1).reduce((n, x) => n + x.length, 0));
  let o = b.writeUInt8(STATE_MAGIC, 0);
  o = b.writeUInt8(STATE_VALUE_VERSION, o);
  o = b.writeUInt16LE(parts[0]!.length, o);
  o += parts[0]!.copy(b, o);
  o = b.writeUInt16LE(values.length, o);
  for (const x of parts.slice(1)) {
    o = b.writeUInt32LE(x.length, o);
    o += x.copy(b, o);
  }
  return b;
}

/** Parses a state value; throws naming the state key when it is not one. */
export function decodeStateValue(key: string, v: Uint8Array): DecodedState {
  const b = Buffer.from(v.buffer, v.byteOffset, v.byteLength);
  const bad = (why: string): Error => new Error(`window state "${key}" cannot be restored: ${why}`);
  if (b.length < 2 || b[0] !== STATE_MAGIC) throw bad('not a window state value');
  if (b[1] !== STATE_VALUE_VERSION) throw bad(`unsupported state format version ${b[1]} (this build reads ${STATE_VALUE_VERSION})`);
  try {
    let o = 2;
    const nameLen = b.readUInt16LE(o);
    const name = b.toString('utf8', o + 2, o + 2 + nameLen);
    o += 2 + nameLen;
    const n = b.readUInt16LE(o);
    o += 2;
    const values: string[] = [];
    for (let j = 0; j < n; j++) {
      const len = b.readUInt32LE(o);
      if (o + 4 + len > b.length) throw new RangeError('truncated');
      values.push(b.toString('utf8', o + 4, o + 4 + len));
      o += 4 + len;
    }
    const start = b.readDoubleLE(o), end = b.readDoubleLE(o + 8);
    o += 16;
    return { name, values, start, end, core: b.subarray(o) };
  } catch {
    throw bad('the value is truncated');
  }
}

/** What one step of the operator produced. */
export interface Output {
  results: WindowResult[];
  deadLetters: DeadLetter[];
  /** Windows whose state was purged: (aggregation index, key, start, end). */
  gone: { agg: number; key: string; start: number; end: number }[];
  /** Per aggregation: events too late for at least one of their windows. */
  late: number[];
  /** Records consumed (blank lines included). */
  records: number;
}

export interface OperatorOptions {
  /** Wall clock for emittedAt and dead-letter timestamps (injected by tests). @default Date.now */
  clock?: () => number;
  /** Watermarks shared with other operators (one per partition of a source); by default its own. */
  watermarks?: Watermarks;
  /** `scan`: the WASM byte scanner (default); `json`: JSON.parse per record (the reference path). */
  decoder?: 'scan' | 'json';
}

export class WindowOperator {
  readonly registries: KeyRegistry[];
  readonly watermarks: Watermarks;
  private readonly core: WasmCore;
  private readonly aggs: readonly AggregationConfig[];
  private readonly isSession: boolean[];
  private readonly decoder: Decoder;
  private readonly rec: Uint8Array;
  private readonly clock: () => number;
  private readonly tsField: string;
  private readonly instance: string;
  private readonly latenessMs: number;
  private readonly valued: ValuedKeyRegistry[];
  private readonly aggIndex = new Map<string, number>();
  // ─── Checkpoint bookkeeping ───
  private tracking = false;
  /** Whether any event went into the core (restore needs a fresh operator). */
  private fed = false;
  /** slot -> state key it is persisted under (as of the last drain or the restore). */
  private readonly persisted = new Map<number, string>();
  /** Persisted state keys whose window is gone since the last drain. */
  private readonly deleted = new Set<string>();
  /** Per aggregation, per key id: the encoded head of its state values. */
  private readonly headers: Buffer[][];

  constructor(cfg: Config, opts: OperatorOptions = {}) {
    const { eventTime, aggregations, processing } = cfg;
    this.aggs = aggregations;
    this.tsField = eventTime.field;
    this.instance = processing.instanceId;
    this.latenessMs = eventTime.allowedLatenessMs;
    this.clock = opts.clock ?? Date.now;
    this.valued = aggregations.map((a) => new ValuedKeyRegistry(a.groupBy));
    this.registries = this.valued;
    aggregations.forEach((a, i) => this.aggIndex.set(a.name, i));
    this.headers = aggregations.map(() => []);
    this.core = new WasmCore(
      processing.batchSize,
      aggregations.map((a) => {
        const w = a.window;
        const kind = Layout.WIN[w.type];
        const sizeMs = w.type === 'session' ? w.gapMs : w.sizeMs;
        const slideMs = w.type === 'sliding' ? w.slideMs : sizeMs;
        return { kind, sizeMs, slideMs, latenessMs: eventTime.allowedLatenessMs };
      }),
    );
    this.isSession = aggregations.map((a) => a.window.type === 'session');
    this.decoder =
      opts.decoder === 'json'
        ? new JsonDecoder(eventTime.field, aggregations, this.registries)
        : new ScanDecoder(this.core, eventTime.field, aggregations, this.registries);
    this.rec = new Uint8Array(processing.batchSize);
    const idle = cfg.source.type === 'kafka' ? cfg.source.idleTimeoutMs : Infinity;
    this.watermarks = opts.watermarks ?? new Watermarks(eventTime.maxOutOfOrdernessMs, idle);
  }

  get batchSize(): number {
    return this.core.capacity;
  }

  /** Processes one batch (batch.n <= batchSize) of one partition. */
  process(batch: RecordBatch, nowMs = this.clock()): Output {
    const n = batch.n;
    const core = this.core;
    const out = this.emptyOutput(n);
    if (n === 0) return out;
    this.fed = true;
    this.decoder.decode(batch, core, this.rec);
    const wmk = this.watermarks;
    const p = batch.partition;
    const maxAfter = core.computeWatermarks(n, wmk.maxOf(p), wmk.ooo, wmk.othersMin(p, nowMs), wmk.current);
    const bad: Array<[number, number, number]> = []; // (record, agg, EV_*)
    for (let a = 0; a < this.aggs.length; a++) {
      const notOk = this.isSession[a] ? core.processSessions(a, n) : core.processWindows(a, n);
      if (notOk > 0) {
        const status = core.agg(a).status;
        for (let i = 0; i < n; i++) if (status[i] !== EV.OK) bad.push([i, a, status[i]!]);
      }
    }
    wmk.update(p, maxAfter, nowMs);
    // W after the last event may already close windows.
    this.advanceAll(wmk.current);
    this.collect(out, nowMs);
    this.deadLetter(batch, bad, out, nowMs);
    return out;
  }

  /** Moves W without new events (idle partitions, ticks). */
  tick(nowMs = this.clock()): Output {
    const out = this.emptyOutput(0);
    const before = this.watermarks.current;
    const w = this.watermarks.refresh(nowMs);
    if (w > before) {
      this.advanceAll(w);
      this.collect(out, nowMs);
    }
    return out;
  }

  /** End of a bounded input: W = +inf, every open window fires (once more if changed) and is purged. */
  finish(nowMs = this.clock()): Output {
    const out = this.emptyOutput(0);
    this.watermarks.finish();
    this.advanceAll(Infinity);
    this.collect(out, nowMs);
    return out;
  }

  /** Fires and purges what W = w makes due (W moved by another partition of the source). */
  advance(w: number, nowMs = this.clock()): Output {
    const out = this.emptyOutput(0);
    this.advanceAll(w);
    this.collect(out, nowMs);
    return out;
  }

  openWindows(a: number): number {
    return this.core.openWindows(a);
  }

  // ─── Checkpoints ─────────────────────────────────────────────────────────────

  /**
   * Turns change tracking on (idempotent): from now on drainChanges() gives the
   * changes of the window state. Windows the operator already holds from events count
   * as changed (the first drain has them all); restored ones do not.
   */
  trackChanges(): void {
    if (this.tracking) return;
    this.tracking = true;
    this.core.trackChanges(true, this.fed);
  }

  /**
   * The state-key-level changes since the last drain (or since trackChanges /
   * restore): puts of every window created or changed, deletes of every persisted
   * key no window holds any more. A window created and purged in between appears in
   * neither; a persisted one changed and then purged only in deletes. Cost:
   * proportional to the windows changed. Applying deletes, then puts, to the state
   * of the last drain gives exactly the live windows.
   */
  drainChanges(): StateChanges {
    if (!this.tracking) throw new Error('drainChanges() needs trackChanges() first');
    const recs = this.serialize(false);
    // A session that grew or absorbed others is stored under a new key: the old one goes.
    for (const r of recs) {
      const old = this.persisted.get(r.slot);
      if (old !== undefined && old !== r.key) this.deleted.add(old);
    }
    const puts: Array<[string, Buffer]> = [];
    for (const r of recs) {
      this.persisted.set(r.slot, r.key);
      this.deleted.delete(r.key);
      puts.push([r.key, r.value]);
    }
    const deletes = [...this.deleted];
    this.deleted.clear();
    return { puts, deletes };
  }

  /** Every live window's (state key, value), as drainChanges would put them; changes nothing. */
  snapshot(): Array<[string, Buffer]> {
    return this.serialize(true).map((r) => [r.key, r.value]);
  }

  /** The changed (or all) windows from the core, as state keys and values. */
  private serialize(all: boolean): Array<{ slot: number; key: string; value: Buffer }> {
    const snap = this.core.serialize(all);
    const out: Array<{ slot: number; key: string; value: Buffer }> = [];
    let off = snap.base;
    for (let k = 0; k < snap.count; k++) {
      const w = off >>> 2, d = off >>> 3;
      const a = snap.u32[w + SNAP.AGG / 4]!, keyId = snap.u32[w + SNAP.KEY / 4]!, len = snap.u32[w + SNAP.LEN / 4]!;
      const start = snap.f64[d + SNAP.START / 8]!, end = snap.f64[d + SNAP.END / 8]!;
      const head = this.headerOf(a, keyId);
      const value = Buffer.allocUnsafe(head.length + 16 + len);
      head.copy(value, 0);
      value.writeDoubleLE(start, head.length);
      value.writeDoubleLE(end, head.length + 8);
      value.set(snap.bytes.subarray(off + SNAP_HEADER, off + SNAP_HEADER + len), head.length + 16);
      out.push({ slot: snap.u32[w + SNAP.SLOT / 4]!, key: stateKey(this.aggs[a]!.name, this.registries[a]!.keys[keyId]!, start, end), value });
      off += SNAP_HEADER + ((len + 7) & ~7);
    }
    return out;
  }

  /**
   * Rebuilds the window state of a fresh operator (no event processed yet) from the
   * (state key, value) pairs of the last checkpoint, as it stood at watermark
   * `watermarkMs`: windows with end <= W count as fired. The keys are registered
   * again, so new events of the same keys reuse them; later drains replace or delete
   * these entries. The operator's watermarks are not touched: the caller restores
   * them (watermarks.register(partition, now, maxEventTime), watermarks.current).
   */
  restore(entries: Iterable<[string, Uint8Array]>, watermarkMs: number): void {
    if (this.fed) throw new Error('restore() needs a fresh operator: this one has processed events');
    for (const [key, value] of entries) {
      const st = decodeStateValue(key, value);
      const a = this.aggIndex.get(st.name);
      if (a === undefined) throw new Error(`window state "${key}" cannot be restored: no aggregation named "${st.name}" in this config (aggregations: ${this.aggs.map((x) => x.name).join(', ')})`);
      const reg = this.registries[a]!;
      if (st.values.length !== reg.fields.length)
        throw new Error(`window state "${key}" cannot be restored: it has ${st.values.length} group values, aggregation "${st.name}" groups by ${reg.fields.length} fields`);
      const id = reg.idOf(st.values);
      const expect = stateKey(st.name, reg.keys[id]!, st.start, st.end);
      // State written before key values were percent-encoded is read as well; the next drain rewrites it.
      const unencoded = stateKey(st.name, reg.fields.map((f, j) => `${f}=${st.values[j]!}`).join(':'), st.start, st.end);
      if (expect !== key && unencoded !== key) throw new Error(`window state "${key}" cannot be restored: its value describes the window "${expect}"`);
      const slot = this.core.restoreWindow(a, id, st.start, st.end, watermarkMs, st.core);
      if (slot === Layout.NO_SLOT)
        throw new Error(
          `window state "${key}" cannot be restored: the core rejected it (corrupt or unsupported state, a window that is not one of "${st.name}"'s ${this.aggs[a]!.window.type} windows, or one that overlaps another restored window)`,
        );
      this.persisted.set(slot, key);
    }
  }

  private headerOf(a: number, keyId: number): Buffer {
    const hs = this.headers[a]!;
    let h = hs[keyId];
    if (h === undefined) hs[keyId] = h = stateHeader(this.aggs[a]!.name, this.valued[a]!.values[keyId]!);
    return h;
  }

  memoryBytes(): number {
    return this.core.memoryBytes();
  }

  private emptyOutput(records: number): Output {
    return { results: [], deadLetters: [], gone: [], late: this.aggs.map(() => 0), records };
  }

  private advanceAll(w: number): void {
    for (let a = 0; a < this.aggs.length; a++) this.core.advance(a, w);
  }

  /** Reads the out and gone regions into result objects, then clears them. */
  private collect(out: Output, nowMs: number): void {
    const r = this.core.results();
    for (let k = 0; k < r.count; k++) {
      const b = r.base + k * RES_BYTES;
      const w = b >>> 2, d = b >>> 3;
      const agg = this.aggs[r.u32[w + RES.AGG / 4]!]!;
      const reg = this.registries[r.u32[w + RES.AGG / 4]!]!;
      const keyId = r.u32[w + RES.KEY / 4]!;
      const f = r.f64;
      out.results.push({
        name: agg.name,
        key: reg.keys[keyId]!,
        group: reg.groups[keyId]!,
        window: { start: f[d + RES.START / 8]!, end: f[d + RES.END / 8]! },
        results: {
          count: f[d + RES.COUNT / 8]!,
          sum: f[d + RES.SUM / 8]!,
          avg: f[d + RES.AVG / 8]!,
          min: f[d + RES.MIN / 8]!,
          max: f[d + RES.MAX / 8]!,
          p50: f[d + RES.P50 / 8]!,
          p95: f[d + RES.P95 / 8]!,
          p99: f[d + RES.P99 / 8]!,
          stddev: f[d + RES.STDDEV / 8]!,
        },
        late: (r.u32[w + RES.FLAGS / 4]! & Layout.RES_LATE) !== 0,
        emittedAt: nowMs,
      });
    }
    const g = this.core.gone();
    const persisted = this.persisted.size > 0 ? this.persisted : undefined;
    for (let k = 0; k < g.count; k++) {
      const b = g.base + k * GONE_BYTES;
      const a = g.u32[(b >>> 2) + GONE.AGG / 4]!;
      out.gone.push({ agg: a, key: this.registries[a]!.keys[g.u32[(b >>> 2) + GONE.KEY / 4]!]!, start: g.f64[(b >>> 3) + GONE.START / 8]!, end: g.f64[(b >>> 3) + GONE.END / 8]! });
      if (persisted !== undefined) {
        // The slot's persisted key (a session may have grown since) is no window's any more.
        const slot = g.u32[(b >>> 2) + GONE.SLOT / 4]!;
        const sk = persisted.get(slot);
        if (sk !== undefined) {
          this.deleted.add(sk);
          persisted.delete(slot);
        }
      }
    }
    this.core.resetOutput();
  }

  /** Dead letters in input order: malformed once per record, invalid and late per aggregation. */
  private deadLetter(batch: RecordBatch, bad: Array<[number, number, number]>, out: Output, nowMs: number): void {
    const rec = this.rec;
    const stamp = new Date(nowMs).toISOString();
    for (let i = 0; i < batch.n; i++) {
      if (rec[i] === REC_MALFORMED || rec[i] === REC_FAILED || (rec[i] === REC_BLANK && batch.messages === true)) bad.push([i, -1, EV.INVALID]);
    }
    if (bad.length === 0) return;
    bad.sort((x, y) => x[0] - y[0] || x[1] - y[1]);
    const wm = this.core.wm();
    const ts = this.core.ts();
    for (const [i, a, st] of bad) {
      if (st === EV.PARTLY_LATE) {
        out.late[a]!++;
        continue;
      }
      if (rec[i] !== REC_OK && a >= 0) continue;
      const text = batch.buf.toString('utf8', batch.starts[i], batch.ends[i]);
      const base = {
        retry_count: 0,
        timestamp: stamp,
        processor_instance: this.instance,
        partition: batch.partition,
        offset: String(offsetOf(batch, i)),
      };
      if (a < 0) {
        const error =
          rec[i] === REC_FAILED ? this.decoder.failures.get(i)!
          : batch.nullOffsets?.includes(offsetOf(batch, i)) === true ? 'null Kafka message value (a tombstone)'
          : text === '' ? 'empty Kafka message value'
          : explainMalformed(text);
        out.deadLetters.push({ original_event: text, reason: 'malformed', error, ...base });
        continue;
      }
      const agg = this.aggs[a]!;
      if (st === EV.LATE) {
        out.late[a]!++;
        out.deadLetters.push({
          original_event: text,
          reason: 'late',
          error: `event time ${isoOf(ts[i]!)} is past the allowed lateness (${this.latenessMs} ms) of every window it belongs to; watermark ${isoOf(wm[i]!)}`,
          aggregation: agg.name,
          ...base,
        });
      } else {
        out.deadLetters.push({ original_event: text, reason: 'invalid', error: explainInvalid(text, this.tsField, agg.value), aggregation: agg.name, ...base });
      }
    }
  }

}
