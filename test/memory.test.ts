// Memory that must follow what is open, not what has passed: batches already
// processed are not kept, whatever the source.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { validateConfig } from '../src/config';
import { Instrumentation } from '../src/metrics';
import { runEmbedded } from '../src/runner';

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

/** ArrayBuffer bytes still reachable after a full collection. */
function liveArrayBuffers(): number {
  // Twice: the buffers a collection finds dead are released by the next one (they are
  // swept concurrently), so one collection can still count the batches just processed.
  gc();
  gc();
  return process.memoryUsage().arrayBuffers;
}

test('a run keeps no batch it has processed: array buffers stay flat over 50 generator batches of ~0.8 MB', async () => {
  const cfg = validateConfig({
    source: { type: 'generator', eventsPerSecond: 1000, seed: 3, startMs: 1_704_110_400_000 },
    aggregations: [{ name: 'latency', groupBy: ['data.model'], value: 'data.latency_ms', window: { type: 'tumbling', sizeMs: 60_000 } }],
    sinks: [{ type: 'file', path: '/dev/null' }],
    deadLetter: { type: 'file', path: '/dev/null' },
    state: { backend: 'memory' },
  });
  const batchSize = cfg.processing.batchSize;
  const bus = new Instrumentation();
  const ac = new AbortController();
  let batches = 0;
  let base = 0;
  let last = 0;
  bus.on('batch.processed', (e) => {
    if (e.records !== batchSize) return;
    batches++;
    if (batches === 10) base = liveArrayBuffers();
    if (batches === 60) {
      last = liveArrayBuffers();
      ac.abort();
    }
  });
  const summary = await runEmbedded(cfg, { progress: false, bus, signal: ac.signal });
  assert.ok(summary.stopped && batches >= 60, `${batches} batches`);
  const grew = last - base;
  // Each batch of 4096 generated events is one ~0.8 MB buffer: kept, 50 of them are ~40 MB.
  assert.ok(grew < 8e6, `array buffers grew by ${(grew / 1e6).toFixed(1)} MB over 50 batches`);
});
