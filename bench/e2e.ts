// Benchmark 2: end to end over one million generated events: `weir run` (file source,
// WASM decoding and windows, file sinks) against the idiomatic Node.js implementation
// (readline, JSON.parse, a Map per aggregation, sketches-js) on the same file,
// alternating, in the same process. Two workloads (WORKLOADS below): four aggregations
// over few keys, and sessions per user over many keys, about one result per two events.
import { existsSync, mkdirSync, writeFileSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { validateConfig } from '../src/config';
import { runEmbedded } from '../src/runner';
import { EventGenerator } from '../src/sources/eventgen';
import { runIdiomatic, type IdiomaticAgg } from './idiomatic';
import { median } from './stats';

export const AGGREGATIONS: IdiomaticAgg[] = [
  { name: 'latency_metrics', groupBy: ['data.model', 'data.region'], value: 'data.latency_ms', window: { type: 'tumbling', sizeMs: 300_000 } },
  { name: 'latency_sliding', groupBy: ['data.model'], value: 'data.latency_ms', window: { type: 'sliding', sizeMs: 120_000, slideMs: 30_000 } },
  { name: 'user_sessions', groupBy: ['metadata.user_id'], value: 'data.tokens', window: { type: 'session', gapMs: 300_000 } },
  { name: 'cost_by_region', groupBy: ['data.region'], value: 'data.cost', window: { type: 'tumbling', sizeMs: 300_000 } },
];

/**
 * What a bench run aggregates, and over which data. `aggregates`: today's four
 * aggregations over the generator's default 500 users (few keys, few results: about
 * one result per 600 events). `sessions`: the high-output case, sessions per user
 * over 100,000 users with a 60 s gap, about one result per two events (0.48 on the
 * 1M-event input), so result building, serialization and writing weigh as much as
 * reading.
 */
export interface Workload {
  name: 'aggregates' | 'sessions';
  aggregations: IdiomaticAgg[];
  /** The generator's `users`; undefined keeps its default (and today's file names). */
  users?: number;
  /** What Kafka messages are keyed by: each aggregation's group-by fields must stay in one partition. */
  kafkaKey: 'model/region' | 'user';
}

export const WORKLOADS: Readonly<Record<Workload['name'], Workload>> = {
  aggregates: { name: 'aggregates', aggregations: AGGREGATIONS, kafkaKey: 'model/region' },
  sessions: {
    name: 'sessions',
    aggregations: [{ name: 'user_sessions', groupBy: ['metadata.user_id'], value: 'data.tokens', window: { type: 'session', gapMs: 60_000 } }],
    users: 100_000,
    kafkaKey: 'user',
  },
};

/** The generator of a workload's input: the same events on every machine. */
export function workloadGenerator(w: Workload): EventGenerator {
  return new EventGenerator({ seed: 42, startMs: 1_767_225_600_000, eventsPerSecond: 1000, ...(w.users === undefined ? {} : { users: w.users }) });
}

/** The benchmark input: written once per size (and user count) into the OS temp dir and reused. */
export function eventsFile(count: number, w: Workload = WORKLOADS.aggregates): string {
  const dir = join(tmpdir(), 'weir-bench');
  mkdirSync(dir, { recursive: true });
  const file = join(dir, w.users === undefined ? `events-${count}.jsonl` : `events-${count}-u${w.users}.jsonl`);
  if (!existsSync(file)) {
    const gen = workloadGenerator(w);
    const chunk: string[] = [];
    writeFileSync(file, '');
    for (let i = 0; i < count; i++) {
      chunk.push(gen.next());
      if (chunk.length === 10_000 || i === count - 1) {
        writeFileSync(file, chunk.join('\n') + '\n', { flag: 'a' });
        chunk.length = 0;
      }
    }
  }
  return file;
}

export interface E2eFigure {
  impl: string;
  eventsPerSecond: number;
  runsMs: number[];
}

export interface E2eResult {
  workload: Workload['name'];
  file: string;
  bytes: number;
  /** Results per event written by Weir and by the idiomatic implementation: the same work, or the comparison says little. */
  resultsPerEvent: number;
  idiomaticResultsPerEvent: number;
  figures: E2eFigure[];
  /** weir / idiomatic events/s. */
  ratio: number;
}

export async function benchE2e(count = 1_000_000, rounds = 3, w: Workload = WORKLOADS.aggregates): Promise<E2eResult> {
  const file = eventsFile(count, w);
  const out = join(tmpdir(), 'weir-bench');
  const cfg = validateConfig({
    source: { type: 'file', path: file },
    eventTime: { field: 'timestamp', maxOutOfOrdernessMs: 30_000, allowedLatenessMs: 60_000 },
    aggregations: w.aggregations,
    sinks: [{ type: 'file', path: join(out, 'results.jsonl') }],
    deadLetter: { type: 'file', path: join(out, 'dead-letters.jsonl') },
  });
  const weirMs: number[] = [], idioMs: number[] = [];
  let weirResults = 0, idioResults = 0;
  for (let r = 0; r < rounds; r++) {
    let t0 = process.hrtime.bigint();
    const s = await runEmbedded(cfg, { progress: false });
    weirMs.push(Number(process.hrtime.bigint() - t0) / 1e6);
    if (s.records !== count) throw new Error(`weir read ${s.records} of ${count} events`);
    weirResults = s.results;
    t0 = process.hrtime.bigint();
    const i = await runIdiomatic(file, w.aggregations, { timestampField: 'timestamp', maxOutOfOrdernessMs: 30_000, allowedLatenessMs: 60_000 });
    idioMs.push(Number(process.hrtime.bigint() - t0) / 1e6);
    if (i.events !== count) throw new Error(`idiomatic read ${i.events} of ${count} events`);
    idioResults = i.results;
  }
  const weirEps = (count * 1000) / median(weirMs), idioEps = (count * 1000) / median(idioMs);
  return {
    workload: w.name,
    file,
    resultsPerEvent: weirResults / count,
    idiomaticResultsPerEvent: idioResults / count,
    ratio: weirEps / idioEps,
    bytes: statSync(file).size,
    figures: [
      { impl: 'weir run', eventsPerSecond: weirEps, runsMs: weirMs },
      { impl: 'idiomatic Node.js', eventsPerSecond: idioEps, runsMs: idioMs },
    ],
  };
}
