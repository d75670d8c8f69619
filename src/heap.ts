// How far V8 lets its heap grow past what the last full collection found alive.
//
// By default V8 grows the old generation by a factor it picks from the allocation rate,
// up to 4x the live size on a fast-allocating process, before it collects again. Weir
// allocates few objects per event but keeps its keys for as long as they have open
// windows: with many users, keys are registered and released all the time, and the
// released ones are garbage in the old generation. A run with a million users and about
// 100 MB alive peaked near 600 MB of RSS that way. Growing by at most 1.5x keeps it
// near 420 MB at the same throughput (docs/benchmarks.md, Soak).
import { setFlagsFromString } from 'node:v8';

export const HEAP_GROWING_PERCENT = 50;

/**
 * Sets V8's heap growing factor to 1 + HEAP_GROWING_PERCENT / 100 for this process,
 * unless the node options given (execArgv, NODE_OPTIONS) set it already. `weir run`
 * calls it at start; a program that embeds Weir decides for itself.
 */
export function tuneHeap(): void {
  const given = [...process.execArgv, process.env['NODE_OPTIONS'] ?? ''].join(' ');
  if (/heap[-_]growing[-_]percent/.test(given)) return;
  setFlagsFromString(`--heap-growing-percent=${HEAP_GROWING_PERCENT}`);
}
