// What a person asks of a running processor, answered on GET /status (JSON) and the
// page at GET / (src/metrics/page.ts): where event time stands per partition, which
// window fires next and what it waits for, in words; checkpoints, dead letters, rates.
//
// Fed like the Prometheus metrics by the instrumentation bus (counts, lag, offsets,
// checkpoints, dead letters), plus a pull of the operator at the moment of asking
// (watermarks, open windows, the earliest unfired window): a few calls into WASM per
// request, nothing per event.
import type { Config } from '../config';
import type { PartitionWatermark, Watermarks } from '../time/watermarks';
import type { Instrumentation } from './events';

/** What the model reads of the operator when asked (PartitionedOperator and WindowOperator have it). */
export interface StatusOperator {
  readonly watermarks: Watermarks;
  openWindows(a: number): number;
  /** End (ms) of the earliest unfired window of aggregation `a`, +Infinity for none. */
  nextFireMs(a: number): number;
}

/**
 * The source's state as the page shows it. `waiting for partitions`: a Kafka
 * consumer that holds no partition (another member has them all, or the group is
 * still joining): nothing will be read until a rebalance gives it some.
 */
export type SourceState = 'starting' | 'running' | 'waiting for partitions' | 'ended' | 'stopped' | 'failed';

export interface PartitionStatus {
  partition: number;
  /** The partition's watermark (max event time - maxOutOfOrderness), epoch ms; null before its first event. */
  watermarkMs: number | null;
  maxEventTimeMs: number | null;
  idle: boolean;
  idleSinceMs: number | null;
  /** Messages behind the partition's high watermark; null until the first fetch says. */
  lag: number | null;
  /** Offset of the last record processed; null before the first. */
  offset: string | null;
  /** Whether this partition's watermark is the one W waits for (the lowest of the active ones). */
  holdsBack: boolean;
}

export interface AggregationStatus {
  name: string;
  /** e.g. "tumbling 1m", "sliding 2m every 30s", "session gap 30s". */
  window: string;
  openWindows: number;
  /** The earliest window that has not fired; null when every open window has fired (or none is open). */
  nextWindow: { startMs: number | null; endMs: number } | null;
  /** What that window waits for, in words. */
  waitingFor: string;
}

export interface StatusSnapshot {
  nowMs: number;
  source: { type: Config['source']['type']; topic?: string; state: SourceState };
  /** The source's W, epoch ms; null before any; "+inf" once a bounded input ended is shown as endedInput. */
  watermarkMs: number | null;
  endedInput: boolean;
  maxOutOfOrdernessMs: number;
  allowedLatenessMs: number;
  idleTimeoutMs: number | null;
  idleAdvance: boolean;
  partitions: PartitionStatus[];
  aggregations: AggregationStatus[];
  checkpoints: { completed: number; last: { id: number; completedAtMs: number; ageMs: number; durationMs: number; bytes: number } | null };
  deadLetters: {
    total: number;
    byReason: Record<string, number>;
    /** The last minute, by reason and aggregation, most first. */
    recent: Array<{ reason: string; aggregation: string | null; count: number }>;
  };
  totals: { records: number; results: number; late: number };
  /** Over the last few complete seconds. */
  rates: { eventsPerSecond: number; resultsPerSecond: number };
}

/** Seconds over which rates are averaged. */
const RATE_SECONDS = 5;
/** Seconds of dead letters the "recent" list covers. */
const RECENT_SECONDS = 60;

interface Second {
  records: number;
  results: number;
  dead: Map<string, number>;
}

function duration(ms: number): string {
  if (ms % 86_400_000 === 0) return `${ms / 86_400_000}d`;
  if (ms % 3_600_000 === 0) return `${ms / 3_600_000}h`;
  if (ms % 60_000 === 0) return `${ms / 60_000}m`;
  if (ms % 1000 === 0) return `${ms / 1000}s`;
  return `${ms}ms`;
}

/** An instant as people read it: the time of day in UTC, with the date when it is not today's. */
export function when(ms: number, nowMs: number): string {
  const iso = new Date(ms).toISOString();
  const time = iso.slice(11, iso.endsWith('.000Z') ? 19 : 23);
  return iso.slice(0, 10) === new Date(nowMs).toISOString().slice(0, 10) ? time : `${iso.slice(0, 10)} ${time}`;
}

/** "Partition 2", "Partitions 2 and 3": the start of a sentence. */
function list(xs: readonly number[]): string {
  if (xs.length === 1) return `Partition ${xs[0]}`;
  return `Partitions ${xs.slice(0, -1).join(', ')} and ${xs.at(-1)}`;
}

const finite = (x: number): number | null => (Number.isFinite(x) ? x : null);

export class StatusModel {
  private state: SourceState = 'starting';
  private readonly lag = new Map<number, number>();
  private readonly offsets = new Map<number, string>();
  private readonly seconds = new Map<number, Second>();
  private readonly totals = { records: 0, results: 0, late: 0 };
  private readonly byReason: Record<string, number> = {};
  private deadTotal = 0;
  private checkpointsDone = 0;
  private lastCheckpoint: { id: number; completedAtMs: number; durationMs: number; bytes: number } | null = null;
  private readonly subscriptions: Array<() => void>;
  private readonly clock: () => number;

  constructor(
    bus: Instrumentation,
    private readonly cfg: Pick<Config, 'source' | 'eventTime' | 'aggregations'>,
    private readonly op: StatusOperator,
    opts: { clock?: () => number } = {},
  ) {
    this.clock = opts.clock ?? Date.now;
    this.subscriptions = [
      bus.on('batch.processed', (e) => {
        const s = this.second();
        s.records += e.records;
        this.totals.records += e.records;
        for (const l of e.late) this.totals.late += l;
        for (const d of e.deadLetters) {
          this.byReason[d.reason] = (this.byReason[d.reason] ?? 0) + 1;
          this.deadTotal++;
          const id = `${d.reason}\0${d.aggregation ?? ''}`;
          s.dead.set(id, (s.dead.get(id) ?? 0) + 1);
        }
        if (e.records > 0 && this.state === 'starting') this.state = 'running';
      }),
      bus.on('window.fired', (e) => {
        this.second().results += e.count;
        this.totals.results += e.count;
      }),
      bus.on('consumer.lag', (e) => {
        this.lag.set(e.partition, e.lag);
        if (e.offset !== undefined) this.offsets.set(e.partition, e.offset);
      }),
      bus.on('checkpoint.completed', (e) => {
        this.checkpointsDone++;
        this.lastCheckpoint = { id: e.id, completedAtMs: this.clock(), durationMs: e.durationSeconds * 1000, bytes: e.bytes };
      }),
      bus.on('partition.revoked', (e) => {
        this.lag.delete(e.partition);
        this.offsets.delete(e.partition);
      }),
    ];
  }

  /** Sets the source's state (the runner at its end; the Kafka source when it holds no partition). */
  setSourceState(state: SourceState): void {
    this.state = state;
  }

  /** Stops listening to the bus. */
  dispose(): void {
    for (const off of this.subscriptions) off();
  }

  private second(): Second {
    const t = Math.floor(this.clock() / 1000);
    let s = this.seconds.get(t);
    if (s === undefined) {
      this.seconds.set(t, (s = { records: 0, results: 0, dead: new Map() }));
      for (const k of this.seconds.keys()) if (k <= t - RECENT_SECONDS) this.seconds.delete(k);
    }
    return s;
  }

  snapshot(nowMs = this.clock()): StatusSnapshot {
    const wm = this.op.watermarks;
    const W = wm.current;
    const parts = wm.status(nowMs);
    const active = parts.filter((p) => !p.idle);
    const lowest = active.length === 0 ? Infinity : Math.min(...active.map((p) => p.watermarkMs));
    const partitions: PartitionStatus[] = parts.map((p) => ({
      partition: p.partition,
      watermarkMs: finite(p.watermarkMs),
      maxEventTimeMs: finite(p.maxEventTimeMs),
      idle: p.idle,
      idleSinceMs: p.idleSinceMs ?? null,
      lag: this.lag.get(p.partition) ?? null,
      offset: this.offsets.get(p.partition) ?? null,
      holdsBack: !p.idle && p.watermarkMs === lowest && W !== Infinity,
    }));
    const s = this.cfg.source;
    const idleTimeoutMs = s.type === 'file' ? null : s.idleTimeoutMs;
    let state = this.state;
    if (s.type === 'kafka' && parts.length === 0 && (state === 'starting' || state === 'running')) state = 'waiting for partitions';

    const aggregations = this.cfg.aggregations.map((a, i): AggregationStatus => {
      const w = a.window;
      const desc = w.type === 'tumbling' ? `tumbling ${duration(w.sizeMs)}` : w.type === 'sliding' ? `sliding ${duration(w.sizeMs)} every ${duration(w.slideMs)}` : `session gap ${duration(w.gapMs)}`;
      const open = this.op.openWindows(i);
      const end = this.op.nextFireMs(i);
      const nextWindow = Number.isFinite(end) ? { startMs: w.type === 'session' ? null : end - w.sizeMs, endMs: end } : null;
      return { name: a.name, window: desc, openWindows: open, nextWindow, waitingFor: this.explain(nextWindow, open, W, parts, state, nowMs) };
    });

    const rate = { records: 0, results: 0 };
    const t = Math.floor(nowMs / 1000);
    for (let k = t - RATE_SECONDS; k < t; k++) {
      const x = this.seconds.get(k);
      if (x === undefined) continue;
      rate.records += x.records;
      rate.results += x.results;
    }
    const recent = new Map<string, number>();
    for (const [k, x] of this.seconds) if (k > t - RECENT_SECONDS) for (const [id, n] of x.dead) recent.set(id, (recent.get(id) ?? 0) + n);

    return {
      nowMs,
      source: { type: s.type, ...(s.type === 'kafka' ? { topic: s.topic } : {}), state },
      watermarkMs: finite(W),
      endedInput: W === Infinity,
      maxOutOfOrdernessMs: this.cfg.eventTime.maxOutOfOrdernessMs,
      allowedLatenessMs: this.cfg.eventTime.allowedLatenessMs,
      idleTimeoutMs,
      idleAdvance: this.cfg.eventTime.idleAdvance,
      partitions,
      aggregations,
      checkpoints: {
        completed: this.checkpointsDone,
        last: this.lastCheckpoint === null ? null : { ...this.lastCheckpoint, ageMs: nowMs - this.lastCheckpoint.completedAtMs },
      },
      deadLetters: {
        total: this.deadTotal,
        byReason: { ...this.byReason },
        recent: [...recent]
          .map(([id, count]) => {
            const [reason, aggregation] = id.split('\0') as [string, string];
            return { reason, aggregation: aggregation === '' ? null : aggregation, count };
          })
          .sort((x, y) => y.count - x.count),
      },
      totals: { ...this.totals },
      rates: { eventsPerSecond: rate.records / RATE_SECONDS, resultsPerSecond: rate.results / RATE_SECONDS },
    };
  }

  /** The sentence under an aggregation: why its next window has not fired yet. */
  private explain(next: { startMs: number | null; endMs: number } | null, open: number, W: number, parts: PartitionWatermark[], state: SourceState, nowMs: number): string {
    const ooo = this.cfg.eventTime.maxOutOfOrdernessMs;
    const at = (ms: number): string => when(ms, nowMs);
    if (state === 'waiting for partitions') return 'This instance holds no partition of the topic: it waits for the consumer group to assign it some.';
    if (W === Infinity) return 'The input ended: every window fired.';
    if (next === null) {
      return open === 0
        ? 'No open window.'
        : `Every open window has fired; their state is kept until W passes their end + ${duration(this.cfg.eventTime.allowedLatenessMs)} allowed lateness, for late events.`;
    }
    const span = next.startMs === null ? `The next session window, ending ${at(next.endMs)},` : `The window [${at(next.startMs)}, ${at(next.endMs)})`;
    const firesAt = `${span} fires when W reaches ${at(next.endMs)}: once every active partition has an event at ${at(next.endMs + ooo)} or later (${duration(ooo)} out-of-orderness).`;
    const wIs = Number.isFinite(W) ? `W is ${at(W)}.` : 'There is no watermark yet: no event with a valid event time has arrived.';
    const idle = parts.filter((p) => p.idle);
    const active = parts.filter((p) => !p.idle);
    const idleText =
      idle.length === 0
        ? ''
        : ` ${list(idle.map((p) => p.partition))} ${idle.length === 1 ? 'is' : 'are'} idle since ${at(Math.min(...idle.map((p) => p.idleSinceMs ?? nowMs)))} and do${idle.length === 1 ? 'es' : ''} not hold W back.`;
    if (parts.length > 0 && active.length === 0) {
      const since = at(Math.max(...idle.map((p) => p.idleSinceMs ?? nowMs)));
      return this.cfg.eventTime.idleAdvance
        ? `${wIs} ${firesAt} Every partition is idle since ${since}, so W follows the wall clock (eventTime.idleAdvance): it fires at about ${at(next.endMs + ooo)} wall-clock time.`
        : `${wIs} ${firesAt} Every partition is idle since ${since}: W does not move until an event arrives (eventTime.idleAdvance is off).`;
    }
    const behind = active.filter((p) => p.watermarkMs < next.endMs);
    const holders = behind.length === 0 ? '' : ` ${list(behind.map((p) => p.partition))} hold${behind.length === 1 ? 's' : ''} W back (max event time ${behind.map((p) => (Number.isFinite(p.maxEventTimeMs) ? at(p.maxEventTimeMs) : 'none yet')).join(', ')}).`;
    return `${wIs} ${firesAt}${holders}${idleText}`;
  }
}
