// Soak: the generator at full speed with a million distinct users for a long run,
// resident memory sampled every 10 s. Memory must follow open windows (flat after
// warm-up), not the events or keys seen so far. WEIR_SOAK_SECONDS shortens the run
// (default 600), WEIR_SOAK_USERS sets the distinct users (default 1,000,000).
import { tuneHeap } from '../src/heap';
import { validateConfig } from '../src/config';
import { Instrumentation } from '../src/metrics';
import { runEmbedded } from '../src/runner';

/** Seconds between two samples of resident memory. */
const SAMPLE_SECONDS = 10;

export interface SoakSample {
  /** Since the start of the run. */
  seconds: number;
  rssMb: number;
  heapUsedMb: number;
  externalMb: number;
  events: number;
  /** Open windows over all aggregations at the sample. */
  openWindows: number;
}

export interface SoakFigures {
  seconds: number;
  users: number;
  events: number;
  eventsPerSecond: number;
  samples: SoakSample[];
  peakRssMb: number;
  /** Peak of the samples after the first minute (or the first third of a shorter run). */
  peakAfterWarmupRssMb: number;
  /** Last sample minus the first one after warm-up: near 0 when memory is flat. */
  growthAfterWarmupMb: number;
}

function envNumber(name: string, fallback: number): number {
  const v = process.env[name];
  if (v === undefined || v === '') return fallback;
  const n = Number(v);
  if (!(n > 0)) throw new Error(`${name} must be a positive number (got ${JSON.stringify(v)})`);
  return n;
}

export async function benchSoak(): Promise<SoakFigures> {
  const seconds = envNumber('WEIR_SOAK_SECONDS', 600);
  const users = Math.round(envNumber('WEIR_SOAK_USERS', 1_000_000));
  const cfg = validateConfig({
    source: { type: 'generator', eventsPerSecond: 1000, seed: 7, startMs: 1_767_225_600_000, users },
    eventTime: { maxOutOfOrdernessMs: 30_000, allowedLatenessMs: 60_000 },
    aggregations: [
      { name: 'latency_metrics', groupBy: ['data.model', 'data.region'], value: 'data.latency_ms', window: { type: 'tumbling', sizeMs: 300_000 } },
      { name: 'latency_sliding', groupBy: ['data.model'], value: 'data.latency_ms', window: { type: 'sliding', sizeMs: 120_000, slideMs: 30_000 } },
      { name: 'user_sessions', groupBy: ['metadata.user_id'], value: 'data.tokens', window: { type: 'session', gapMs: 45_000 } },
      { name: 'cost_by_region', groupBy: ['data.region'], value: 'data.cost', window: { type: 'tumbling', sizeMs: 300_000 } },
    ],
    sinks: [{ type: 'file', path: '/dev/null' }],
    deadLetter: { type: 'file', path: '/dev/null' },
    state: { backend: 'memory' },
  });
  // As `weir run` does at start (src/heap.ts).
  tuneHeap();
  const bus = new Instrumentation();
  let events = 0;
  const open = new Map<string, number>();
  bus.on('batch.processed', (e) => (events += e.records));
  bus.on('windows.open', (e) => open.set(e.aggregation, e.open));
  const samples: SoakSample[] = [];
  const t0 = performance.now();
  const sample = (): void => {
    const m = process.memoryUsage();
    const s: SoakSample = {
      seconds: Math.round((performance.now() - t0) / 1000),
      rssMb: Math.round(m.rss / 1e6),
      heapUsedMb: Math.round(m.heapUsed / 1e6),
      externalMb: Math.round(m.external / 1e6),
      events,
      openWindows: [...open.values()].reduce((a, b) => a + b, 0),
    };
    samples.push(s);
    console.log(`${String(s.seconds).padStart(4)} s  rss ${String(s.rssMb).padStart(5)} MB  heap ${String(s.heapUsedMb).padStart(4)} MB  external ${String(s.externalMb).padStart(4)} MB  ${s.events.toLocaleString('en-US')} events  ${s.openWindows.toLocaleString('en-US')} open windows`);
  };
  const ac = new AbortController();
  const timer = setInterval(sample, SAMPLE_SECONDS * 1000);
  const stop = setTimeout(() => ac.abort(), seconds * 1000);
  try {
    await runEmbedded(cfg, { progress: false, bus, signal: ac.signal });
  } finally {
    clearInterval(timer);
    clearTimeout(stop);
  }
  const elapsed = (performance.now() - t0) / 1000;
  const warm = Math.min(60, seconds / 3);
  const after = samples.filter((s) => s.seconds >= warm);
  const peak = (xs: SoakSample[]) => xs.reduce((p, s) => Math.max(p, s.rssMb), 0);
  return {
    seconds: Math.round(elapsed),
    users,
    events,
    eventsPerSecond: Math.round(events / elapsed),
    samples,
    peakRssMb: peak(samples),
    peakAfterWarmupRssMb: peak(after),
    growthAfterWarmupMb: after.length > 1 ? after[after.length - 1]!.rssMb - after[0]!.rssMb : 0,
  };
}

export function printSoak(f: SoakFigures): void {
  console.log(`\n${f.events.toLocaleString('en-US')} events in ${f.seconds} s (${f.eventsPerSecond.toLocaleString('en-US')} events/s), ${f.users.toLocaleString('en-US')} distinct users`);
  console.log(`peak RSS ${f.peakRssMb} MB; after warm-up: peak ${f.peakAfterWarmupRssMb} MB, growth ${f.growthAfterWarmupMb} MB (first to last sample)\n`);
}
