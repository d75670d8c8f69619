// Benchmark 2: end to end over one million generated events with four aggregations:
// `weir run` (file source, WASM decoding and windows, file sinks) against the
// idiomatic Node.js implementation (readline, JSON.parse, a Map per aggregation,
// sketches-js) on the same file, alternating, in the same process.
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

/** The benchmark input: written once per size into the OS temp dir and reused. */
export function eventsFile(count: number): string {
  const dir = join(tmpdir(), 'weir-bench');
  mkdirSync(dir, { recursive: true });
  const file = join(dir, `events-${count}.jsonl`);
  if (!existsSync(file)) {
    const gen = new EventGenerator({ seed: 42, startMs: 1_767_225_600_000, eventsPerSecond: 1000 });
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

export async function benchE2e(count = 1_000_000, rounds = 3): Promise<{ file: string; bytes: number; figures: E2eFigure[] }> {
  const file = eventsFile(count);
  const out = join(tmpdir(), 'weir-bench');
  const cfg = validateConfig({
    source: { type: 'file', path: file },
    eventTime: { field: 'timestamp', maxOutOfOrdernessMs: 30_000, allowedLatenessMs: 60_000 },
    aggregations: AGGREGATIONS,
    sinks: [{ type: 'file', path: join(out, 'results.jsonl') }],
    deadLetter: { type: 'file', path: join(out, 'dead-letters.jsonl') },
  });
  const weirMs: number[] = [], idioMs: number[] = [];
  for (let r = 0; r < rounds; r++) {
    let t0 = process.hrtime.bigint();
    const s = await runEmbedded(cfg, { progress: false });
    weirMs.push(Number(process.hrtime.bigint() - t0) / 1e6);
    if (s.records !== count) throw new Error(`weir read ${s.records} of ${count} events`);
    t0 = process.hrtime.bigint();
    const i = await runIdiomatic(file, AGGREGATIONS, { timestampField: 'timestamp', maxOutOfOrdernessMs: 30_000, allowedLatenessMs: 60_000 });
    idioMs.push(Number(process.hrtime.bigint() - t0) / 1e6);
    if (i.events !== count) throw new Error(`idiomatic read ${i.events} of ${count} events`);
  }
  return {
    file,
    bytes: statSync(file).size,
    figures: [
      { impl: 'weir run', eventsPerSecond: (count * 1000) / median(weirMs), runsMs: weirMs },
      { impl: 'idiomatic Node.js', eventsPerSecond: (count * 1000) / median(idioMs), runsMs: idioMs },
    ],
  };
}
