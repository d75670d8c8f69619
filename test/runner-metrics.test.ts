// A running `weir` serves /metrics, /healthz and /readyz, and its counters follow the run.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { validateConfig } from '../src/config';
import { runEmbedded } from '../src/runner';

function metricValue(text: string, name: string, labels: string): number {
  const line = text.split('\n').find((l) => l.startsWith(`${name}{${labels}}`));
  assert.ok(line, `${name}{${labels}} in /metrics`);
  return Number(line.split(' ').pop());
}

test('metrics server during a run: health, readiness and counters that match the run', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'weir-run-metrics-'));
  const cfg = validateConfig({
    source: { type: 'generator', count: 600, eventsPerSecond: 300, realtime: true, seed: 3, startMs: 1_767_225_600_000 },
    aggregations: [{ name: 'lat', groupBy: ['data.model'], value: 'data.latency_ms', window: { type: 'tumbling', sizeMs: 1000 } }],
    sinks: [{ type: 'file', path: join(dir, 'r.jsonl') }],
    deadLetter: { type: 'file', path: join(dir, 'd.jsonl') },
    metrics: { host: '127.0.0.1', port: 0 },
  });
  let port = 0;
  const scrapes: string[] = [];
  let health = 0, readiness = 0;
  const run = runEmbedded(cfg, {
    progress: false,
    onMetricsListening: (p) => (port = p),
  });
  // Scrape while the generator paces itself (~2 s).
  while (port === 0) await new Promise((r) => setTimeout(r, 10));
  await new Promise((r) => setTimeout(r, 800));
  health = (await fetch(`http://127.0.0.1:${port}/healthz`)).status;
  readiness = (await fetch(`http://127.0.0.1:${port}/readyz`)).status;
  scrapes.push(await (await fetch(`http://127.0.0.1:${port}/metrics`)).text());
  const summary = await run;
  assert.equal(health, 200);
  assert.equal(readiness, 200);
  const mid = metricValue(scrapes[0]!, 'events_processed_total', 'aggregation="lat"');
  assert.ok(mid > 0 && mid < 600, `part of the run counted mid-way: ${mid}`);
  assert.equal(summary.records, 600);
  // The server is closed with the run.
  await assert.rejects(fetch(`http://127.0.0.1:${port}/healthz`));
});
