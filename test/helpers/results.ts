// Results as the sinks take them, from result objects.
import { ResultBatch } from '../../src/pipeline/results';
import type { Output } from '../../src/pipeline/operator';
import type { WindowResult } from '../../src/pipeline/types';

/** The results, in order, as one write's batches (one batch, lines by JSON.stringify). */
export function batches(results: readonly WindowResult[]): ResultBatch[] {
  return [ResultBatch.fromObjects(results)];
}

/** What an operator step gave, as comparable data: result lines, dead letters, late counts, records. */
export function stepSeen(out: Output): unknown {
  const lines: string[] = [];
  for (let i = 0; i < out.results.n; i++) lines.push(out.results.textOf(i));
  return { lines, deadLetters: out.deadLetters, late: out.late, records: out.records };
}
