// The status model (GET /status) against the real operator: per-partition W and
// idleness, the earliest unfired window per aggregation (from the WASM core) and the
// sentence that says what it waits for; and the page and JSON on the metrics port.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { validateConfig } from '../src/config';
import { PartitionedOperator } from '../src/pipeline/partitioned';
import { batchOfLines } from '../src/sources/lines';
import { Instrumentation, StatusModel, type StatusSnapshot, createMetrics, instrumentOperator, instrumentOutput, startMetricsServer } from '../src/metrics';
import type { WindowResult } from '../src/pipeline/types';

const T0 = Date.UTC(2026, 0, 1, 12, 0, 0);

function config(idleAdvance = false) {
  return validateConfig({
    source: { type: 'kafka', brokers: ['127.0.0.1:1'], topic: 't', idleTimeoutMs: 5000 },
    eventTime: { maxOutOfOrdernessMs: 30_000, allowedLatenessMs: 0, idleAdvance },
    aggregations: [
      { name: 'tumble', groupBy: ['k'], value: 'v', window: { type: 'tumbling', sizeMs: 60_000 } },
      { name: 'slide', groupBy: ['k'], value: 'v', window: { type: 'sliding', sizeMs: 60_000, slideMs: 20_000 } },
      { name: 'sess', groupBy: ['k'], value: 'v', window: { type: 'session', gapMs: 10_000 } },
    ],
  });
}

const nextOf = (s: StatusSnapshot, a: number) => s.aggregations[a]!.nextWindow;
const ev = (ts: number, k = 'a') => JSON.stringify({ timestamp: ts, k, v: 1 });

/** The earliest end among windows that hold events and have not fired, from the results seen. */
function reference(events: number[], fired: WindowResult[], name: string, ends: (ts: number) => number[]): number {
  const firedEnds = new Set(fired.filter((r) => r.name === name).map((r) => r.window.end));
  let m = Infinity;
  for (const ts of events) for (const e of ends(ts)) if (!firedEnds.has(e)) m = Math.min(m, e);
  return m;
}

test('StatusModel: partitions, the next window to fire per aggregation, and what it waits for', () => {
  let now = T0 + 3_600_000;
  const clock = () => now;
  const cfg = config();
  const bus = new Instrumentation();
  const op = new PartitionedOperator(cfg, { clock });
  const status = new StatusModel(bus, cfg, op, { clock });
  const names = cfg.aggregations.map((a) => a.name);
  op.watermarks.register(0, now);
  op.watermarks.register(1, now);
  op.operator(0);
  op.operator(1);
  let s = status.snapshot();
  assert.equal(s.watermarkMs, null);
  assert.deepEqual(s.partitions.map((p) => [p.partition, p.watermarkMs, p.idle]), [[0, null, false], [1, null, false]]);
  assert.equal(s.aggregations[0]!.nextWindow, null);
  assert.equal(s.aggregations[0]!.waitingFor, 'No open window.');

  const fired: WindowResult[] = [];
  const sent: number[] = [];
  const feed = (p: number, ts: number[]) => {
    const out = op.process(batchOfLines(ts.map((t) => ev(t)), p, 0), now);
    instrumentOutput(bus, out, names, p, 0.001);
    instrumentOperator(bus, op, names, now);
    fired.push(...out.results.toObjects());
    sent.push(...ts);
  };
  // Partition 0 runs ahead to 12:03:10; partition 1 is at 12:00:50: it holds W (12:00:20) back.
  feed(0, [T0 + 10_000, T0 + 70_000, T0 + 190_000]);
  feed(1, [T0 + 20_000, T0 + 50_000]);
  s = status.snapshot();
  assert.equal(s.watermarkMs, T0 + 20_000);
  assert.deepEqual(s.partitions.map((p) => [p.partition, p.holdsBack]), [[0, false], [1, true]]);
  assert.equal(s.totals.records, 5);
  const tumbleEnd = reference(sent, fired, 'tumble', (t) => [t - (t % 60_000) + 60_000]);
  assert.equal(nextOf(s, 0)?.endMs, tumbleEnd);
  assert.equal(nextOf(s, 0)?.startMs, tumbleEnd - 60_000);
  const slideEnds = (t: number) => [0, 1, 2].map((k) => t - (t % 20_000) + 20_000 * (k + 1)).filter((e) => e - 60_000 <= t);
  assert.equal(nextOf(s, 1)?.endMs, reference(sent, fired, 'slide', slideEnds));
  assert.equal(nextOf(s, 2)?.endMs, T0 + 30_000, 'the session [20 s, 30 s) of partition 1 (W 20 s fired [10 s, 20 s) of partition 0)');
  assert.equal(
    s.aggregations[0]!.waitingFor,
    'W is 12:00:20. The window [12:00:00, 12:01:00) fires when W reaches 12:01:00: once every active partition has an event at 12:01:30 or later (30s out-of-orderness). Partition 1 holds W back (max event time 12:00:50).',
  );

  // Partition 1 idles: it no longer holds W back; W moves to partition 0's 12:02:40.
  now += 6000;
  feed(0, [T0 + 191_000]);
  s = status.snapshot();
  assert.equal(s.watermarkMs, T0 + 161_000);
  assert.deepEqual(s.partitions.map((p) => [p.partition, p.idle, p.idleSinceMs]), [[0, false, null], [1, true, T0 + 3_600_000 + 5000]]);
  assert.ok(fired.some((r) => r.name === 'tumble' && r.window.end === T0 + 60_000), 'the first minute fired');
  assert.equal(nextOf(s, 0)?.endMs, reference(sent, fired, 'tumble', (t) => [t - (t % 60_000) + 60_000]));
  assert.match(s.aggregations[0]!.waitingFor, /Partition 1 is idle since 13:00:05 and does not hold W back\.$/);

  // Everyone idle, idleAdvance off: W stalls, and the page says so.
  now += 10_000;
  s = status.snapshot();
  assert.match(s.aggregations[0]!.waitingFor, /Every partition is idle since 13:00:11: W does not move until an event arrives \(eventTime\.idleAdvance is off\)\.$/);
  assert.equal(s.deadLetters.total, 0);
  assert.equal(s.totals.results, fired.length);
});

test('StatusModel: a Kafka instance without partitions says it waits for them; dead letters and rates', () => {
  let now = T0;
  const cfg = config();
  const bus = new Instrumentation();
  const op = new PartitionedOperator(cfg, { clock: () => now });
  const status = new StatusModel(bus, cfg, op, { clock: () => now });
  let s = status.snapshot();
  assert.equal(s.source.state, 'waiting for partitions');
  assert.match(s.aggregations[0]!.waitingFor, /holds no partition/);
  op.watermarks.register(3, now);
  for (let i = 0; i < 5; i++) {
    bus.emit('batch.processed', { aggregationNames: ['tumble'], records: 100, durationSeconds: 0, late: [1], deadLetters: [{ reason: 'late', aggregation: 'tumble' }, { reason: 'malformed' }], partition: 3 });
    bus.emit('window.fired', { aggregation: 'tumble', count: 10 });
    now += 1000;
  }
  bus.emit('consumer.lag', { partition: 3, lag: 7, offset: '499' });
  bus.emit('checkpoint.completed', { id: 4, durationSeconds: 0.25, syncSeconds: 0.001, bytes: 1234 });
  now += 2000;
  s = status.snapshot();
  assert.equal(s.source.state, 'running');
  assert.deepEqual(s.rates, { eventsPerSecond: 60, resultsPerSecond: 6 }, 'the last 5 complete seconds: 3 of them had 100 events and 10 results');
  assert.deepEqual(s.deadLetters.byReason, { late: 5, malformed: 5 });
  assert.deepEqual(s.deadLetters.recent.map((d) => [d.reason, d.aggregation, d.count]).sort(), [['late', 'tumble', 5], ['malformed', null, 5]]);
  assert.deepEqual([s.partitions[0]!.lag, s.partitions[0]!.offset], [7, '499']);
  assert.deepEqual(s.checkpoints, { completed: 1, last: { id: 4, completedAtMs: T0 + 5000, ageMs: 2000, durationMs: 250, bytes: 1234 } });
});

test('the metrics port serves /status as JSON and the page at /', async () => {
  const cfg = config(true);
  const bus = new Instrumentation();
  const op = new PartitionedOperator(cfg);
  const status = new StatusModel(bus, cfg, op);
  const { registry } = createMetrics(bus, { defaultMetrics: false });
  const server = await startMetricsServer({ host: '127.0.0.1', port: 0, registry, ready: () => true, status: () => status.snapshot() });
  try {
    const base = `http://127.0.0.1:${server.port}`;
    const json = await fetch(`${base}/status`);
    assert.equal(json.headers.get('content-type'), 'application/json; charset=utf-8');
    const body = (await json.json()) as { source: { state: string }; idleAdvance: boolean };
    assert.equal(body.source.state, 'waiting for partitions');
    assert.equal(body.idleAdvance, true);
    const page = await fetch(`${base}/`);
    assert.equal(page.headers.get('content-type'), 'text/html; charset=utf-8');
    assert.match(await page.text(), /<title>Weir status<\/title>/);
    assert.equal((await fetch(`${base}/nope`)).status, 404);
  } finally {
    await server.close();
  }
  // Without a status model, / stays 404 (a metrics server of its own, as before).
  const bare = await startMetricsServer({ host: '127.0.0.1', port: 0, registry, ready: () => true });
  try {
    assert.equal((await fetch(`http://127.0.0.1:${bare.port}/`)).status, 404);
  } finally {
    await bare.close();
  }
});
