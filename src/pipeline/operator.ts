// The window operator: one batch in, results and dead letters out.
//
// Per batch: decode into the core's arrays, compute W before every event, run each
// aggregation through the core (one call each), then read
// what fired and what was rejected. Synchronous and free of I/O: the runner does that.
import type { AggregationConfig, Config } from '../config';
import { WasmCore, Layout } from '../core/wasm';
import { isoOf } from '../time/timestamp';
import { Watermarks } from '../time/watermarks';
import { JsonDecoder, explainInvalid, explainMalformed, REC_BLANK, REC_MALFORMED, type Decoder } from './decoder';
import { KeyRegistry } from './keys';
import { ScanDecoder } from './scandecoder';
import type { DeadLetter, RecordBatch, WindowResult } from './types';

const { EV, RES, RES_BYTES, GONE, GONE_BYTES } = Layout;

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

  constructor(cfg: Config, opts: OperatorOptions = {}) {
    const { eventTime, aggregations, processing } = cfg;
    this.aggs = aggregations;
    this.tsField = eventTime.field;
    this.instance = processing.instanceId;
    this.latenessMs = eventTime.allowedLatenessMs;
    this.clock = opts.clock ?? Date.now;
    this.registries = aggregations.map((a) => new KeyRegistry(a.groupBy));
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
    this.watermarks = new Watermarks(eventTime.maxOutOfOrdernessMs, idle);
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

  openWindows(a: number): number {
    return this.core.openWindows(a);
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
    for (let k = 0; k < g.count; k++) {
      const b = g.base + k * GONE_BYTES;
      const a = g.u32[(b >>> 2) + GONE.AGG / 4]!;
      out.gone.push({ agg: a, key: this.registries[a]!.keys[g.u32[(b >>> 2) + GONE.KEY / 4]!]!, start: g.f64[(b >>> 3) + GONE.START / 8]!, end: g.f64[(b >>> 3) + GONE.END / 8]! });
    }
    this.core.resetOutput();
  }

  /** Dead letters in input order: malformed once per record, invalid and late per aggregation. */
  private deadLetter(batch: RecordBatch, bad: Array<[number, number, number]>, out: Output, nowMs: number): void {
    const rec = this.rec;
    const stamp = new Date(nowMs).toISOString();
    for (let i = 0; i < batch.n; i++) {
      if (rec[i] === REC_MALFORMED) bad.push([i, -1, EV.INVALID]);
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
      if (rec[i] === REC_BLANK || (rec[i] === REC_MALFORMED && a >= 0)) continue;
      const text = batch.buf.toString('utf8', batch.starts[i]!, batch.ends[i]!);
      const base = {
        retry_count: 0,
        timestamp: stamp,
        processor_instance: this.instance,
        partition: batch.partition,
        offset: batch.offsets?.[i] ?? String(batch.firstOffset + i),
      };
      if (a < 0) {
        out.deadLetters.push({ original_event: text, reason: 'malformed', error: explainMalformed(text), ...base });
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
