// Results as the sinks take them, from result objects.
import { ResultBatch } from '../../src/pipeline/results';
import type { WindowResult } from '../../src/pipeline/types';

/** The results, in order, as one write's batches (one batch, lines by JSON.stringify). */
export function batches(results: readonly WindowResult[]): ResultBatch[] {
  return [ResultBatch.fromObjects(results)];
}
