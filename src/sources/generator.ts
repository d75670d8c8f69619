// The built-in generator source: realistic LLM metric events, bounded by `count` or not.
import { setTimeout as sleep } from 'node:timers/promises';
import type { RecordBatch } from '../pipeline/types';
import { batchOfLines } from './lines';
import { EventGenerator } from './eventgen';

export interface GeneratorSourceOptions {
  eventsPerSecond: number;
  count?: number | undefined;
  realtime: boolean;
  seed: number;
  startMs?: number | undefined;
  /** Distinct user ids. */
  users: number;
}

export async function* generatorBatches(opts: GeneratorSourceOptions, batchSize: number): AsyncGenerator<RecordBatch> {
  const gen = new EventGenerator({ seed: opts.seed, startMs: opts.startMs ?? Date.now(), eventsPerSecond: opts.eventsPerSecond, users: opts.users });
  const t0 = Date.now();
  let made = 0;
  while (opts.count === undefined || made < opts.count) {
    let n = batchSize;
    if (opts.count !== undefined) n = Math.min(n, opts.count - made);
    if (opts.realtime) {
      // Never run ahead of the wall clock; at low rates, emit smaller batches.
      const due = Math.floor(((Date.now() - t0) / 1000) * opts.eventsPerSecond) - made;
      if (due <= 0) {
        await sleep(Math.max(1, Math.min(100, 1000 / opts.eventsPerSecond)));
        continue;
      }
      n = Math.min(n, due);
    }
    const lines = new Array<string>(n);
    for (let i = 0; i < n; i++) lines[i] = gen.next();
    yield batchOfLines(lines, 0, made);
    made += n;
  }
}
