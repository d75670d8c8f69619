// Weir embedded in a Node.js program: events go in through push(), results and dead
// letters come back through callbacks. The same config as `weir run`, without a source.
//
//   npm run build && node dist/examples/library.js [events.jsonl]
//
// It reads a JSON-lines file in chunks (any stream of bytes would do: a socket, an
// HTTP body, a message queue's values), keeps the last result of every window (its
// final one: a late event fires a window again), and prints p99 latency per model.
import { createReadStream } from 'node:fs';
import { join } from 'node:path';
import { createProcessor, type DeadLetter, type ProcessorConfig, type WindowResult } from 'weir';

const config: ProcessorConfig = {
  eventTime: { field: 'timestamp', maxOutOfOrdernessMs: '30s', allowedLatenessMs: '60s' },
  aggregations: [
    {
      name: 'latency_by_model',
      groupBy: ['data.model'],
      value: 'data.latency_ms',
      window: { type: 'tumbling', sizeMs: '5m' },
    },
  ],
};

async function main(file: string): Promise<void> {
  const finals = new Map<string, WindowResult>();
  const rejected = new Map<DeadLetter['reason'], number>();
  const processor = createProcessor(config, {
    onResult: (r) => finals.set(`${r.key} ${r.window.start}`, r),
    onDeadLetter: (d) => rejected.set(d.reason, (rejected.get(d.reason) ?? 0) + 1),
  });
  // Chunks may end within a line: the processor keeps the rest for the next push.
  for await (const chunk of createReadStream(file)) processor.push(chunk as Buffer);
  // The end of the input: every open window fires.
  processor.end();

  for (const r of [...finals.values()].sort((a, b) => a.window.start - b.window.start || a.key.localeCompare(b.key))) {
    const at = new Date(r.window.start).toISOString().slice(11, 16);
    console.log(`${at} ${r.group['model']!.padEnd(16)} count ${String(r.results.count).padStart(4)}  p99 ${r.results.p99.toFixed(1)} ms`);
  }
  const { records, results } = processor.stats;
  console.log(`${records} records, ${results} results, dead letters: ${JSON.stringify(Object.fromEntries(rejected))}`);
}

main(process.argv[2] ?? join(__dirname, '..', '..', 'examples', 'events.jsonl')).catch((e: unknown) => {
  console.error(`library example: ${e instanceof Error ? e.message : String(e)}`);
  process.exitCode = 1;
});
