/**
 * Metrics: the instrumentation bus, the Prometheus families fed from a real
 * WindowOperator's output, the HTTP endpoints, and a real Prometheus (Debian's
 * `prometheus` binary) scraping them.
 */
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { performance } from 'node:perf_hooks';
import { WindowOperator, type Output } from '../src/pipeline/operator';
import { batchOfLines } from '../src/sources/lines';
import { WEIR_METRICS } from './helpers/metric-names';
import { generateLines } from '../src/sources/eventgen';
import { Instrumentation, createMetrics, instrumentOperator, instrumentOutput, startMetricsServer, METRIC_NAMES, type Metrics, type MetricsServer } from '../src/metrics';
import { testConfig } from './helpers/run';
import { freePort } from './helpers/ports';

const ROOT = path.resolve(__dirname, '..', '..');

// ------------------------------------------------------------ exposition parsing

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** Samples of the Prometheus text format (enough of it for prom-client's output). */
function parseExposition(text: string): Sample[] {
  const out: Sample[] = [];
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    assert.ok(m !== null, `unparseable exposition line: ${line}`);
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]!] = l[2]!;
    out.push({ name: m[1]!, labels, value: Number(m[3]) });
  }
  return out;
}

/** The value of the one sample of `name` whose labels include `labels`. */
function valueOf(samples: readonly Sample[], name: string, labels: Record<string, string> = {}): number {
  const hits = samples.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v));
  assert.equal(hits.length, 1, `${name}${JSON.stringify(labels)}: ${hits.length} samples`);
  return hits[0]!.value;
}

// ------------------------------------------------------------------ the workload

const AGGREGATIONS = [
  { name: 'latency_by_model', groupBy: ['data.model'], value: 'data.latency_ms', window: { type: 'tumbling', sizeMs: 60_000 } },
  { name: 'tokens_by_region', groupBy: ['data.region'], value: 'data.tokens', window: { type: 'sliding', sizeMs: 120_000, slideMs: 30_000 } },
  { name: 'cost_sessions', groupBy: ['data.model', 'data.region'], value: 'data.cost', window: { type: 'session', gapMs: 20_000 } },
];
const NAMES = AGGREGATIONS.map((a) => a.name);
const NOW_MS = Date.UTC(2024, 0, 1, 13, 0, 0);

/** What the operator's outputs said, summed: the metrics must say the same. */
interface Expected {
  records: number;
  late: number[];
  permanent: number;
  steps: number;
  fired: number[];
  openBeforeFinish: number[];
  watermarkBeforeFinishMs: number;
}

/**
 * Runs generated lines (late, invalid and malformed ones included) through a real
 * WindowOperator in batches of 64 and emits each step's events on `bus`, as the
 * runner does. Returns the totals read directly from the outputs. `beforeFinish`
 * runs after the last batch, before finish().
 */
async function runInstrumented(bus: Instrumentation, beforeFinish?: () => Promise<void>): Promise<Expected> {
  const cfg = testConfig({
    eventTime: { maxOutOfOrdernessMs: 5_000, allowedLatenessMs: 10_000 },
    aggregations: AGGREGATIONS,
    processing: { batchSize: 64 },
  });
  const lines = generateLines(600, { seed: 11, eventsPerSecond: 20, lateFraction: 0.05, invalidFraction: 0.05, malformedFraction: 0.03 });
  const op = new WindowOperator(cfg, { clock: () => NOW_MS });
  const exp: Expected = { records: 0, late: NAMES.map(() => 0), permanent: 0, steps: 0, fired: NAMES.map(() => 0), openBeforeFinish: [], watermarkBeforeFinishMs: NaN };
  const step = (run: () => Output): void => {
    const t0 = performance.now();
    const out = run();
    const seconds = (performance.now() - t0) / 1000;
    instrumentOutput(bus, out, NAMES, 0, seconds);
    instrumentOperator(bus, op, NAMES, NOW_MS);
    exp.steps++;
    exp.records += out.records;
    out.late.forEach((n, a) => (exp.late[a]! += n));
    exp.permanent += out.deadLetters.filter((d) => d.reason === 'malformed' || d.reason === 'invalid').length;
    for (const r of out.results.toObjects()) exp.fired[NAMES.indexOf(r.name)]!++;
  };
  for (let i = 0; i < lines.length; i += 64) step(() => op.process(batchOfLines(lines.slice(i, i + 64), 0, i), NOW_MS));
  exp.openBeforeFinish = NAMES.map((_, a) => op.openWindows(a));
  exp.watermarkBeforeFinishMs = op.watermarks.current;
  await beforeFinish?.();
  step(() => op.finish(NOW_MS));
  // Events the operator has no producer for yet (Kafka, checkpoints, retries).
  bus.emit('consumer.lag', { partition: 0, lag: 42 });
  bus.emit('checkpoint.completed', { id: 1, durationSeconds: 0.02, syncSeconds: 0.001, bytes: 4096 });
  bus.emit('error', { kind: 'transient' });
  bus.emit('sink.queue', { sink: 'sinks[0]', records: 3, bytes: 1200 });
  bus.emit('sink.up', { sink: 'sinks[0]', up: true });
  bus.emit('results.handed', { latenciesSeconds: [0.004, 0.03] });
  return exp;
}

async function get(url: string, init?: RequestInit): Promise<{ status: number; type: string | null; body: string }> {
  const res = await fetch(url, init);
  return { status: res.status, type: res.headers.get('content-type'), body: await res.text() };
}

// -------------------------------------------------------------------- the bus

describe('Instrumentation', () => {
  test('delivers typed payloads to every listener in order; off and the returned function unsubscribe', () => {
    const bus = new Instrumentation();
    const seen: string[] = [];
    assert.equal(bus.listening('window.fired'), false);
    bus.emit('window.fired', { aggregation: 'a', count: 1 }); // nobody listens: nothing happens
    const off1 = bus.on('window.fired', (e) => seen.push(`1:${e.aggregation}:${e.count}`));
    const l2 = (e: { aggregation: string; count: number }): void => void seen.push(`2:${e.aggregation}:${e.count}`);
    bus.on('window.fired', l2);
    bus.on('error', (e) => seen.push(`error:${e.kind}`));
    assert.equal(bus.listening('window.fired'), true);
    bus.emit('window.fired', { aggregation: 'a', count: 3 });
    bus.emit('error', { kind: 'critical' });
    off1();
    bus.emit('window.fired', { aggregation: 'b', count: 1 });
    bus.off('window.fired', l2);
    bus.emit('window.fired', { aggregation: 'c', count: 1 });
    assert.equal(bus.listening('window.fired'), false);
    assert.deepEqual(seen, ['1:a:3', '2:a:3', 'error:critical', '2:b:1']);
  });

  test('a listener that unsubscribes during an emit does not make the next listener miss it', () => {
    const bus = new Instrumentation();
    const seen: number[] = [];
    const off = bus.on('consumer.lag', () => {
      seen.push(1);
      off();
    });
    bus.on('consumer.lag', () => seen.push(2));
    bus.emit('consumer.lag', { partition: 0, lag: 1 });
    bus.emit('consumer.lag', { partition: 0, lag: 1 });
    assert.deepEqual(seen, [1, 2, 2]);
  });

  test('instrumentOutput and instrumentOperator do nothing without listeners', async () => {
    const bus = new Instrumentation();
    await runInstrumented(bus); // must not throw or need a registry
  });
});

// ---------------------------------------------------- metrics from the operator

describe('Prometheus metrics from a real WindowOperator', () => {
  test('METRIC_NAMES in src/metrics is the specified list', () => {
    assert.deepEqual([...METRIC_NAMES], [...WEIR_METRICS]);
  });

  test('counters equal the outputs, histograms count, gauges follow the operator; /metrics /healthz /readyz', async () => {
    const bus = new Instrumentation();
    const metrics = createMetrics(bus, { aggregations: NAMES });
    let ready = false;
    const server = await startMetricsServer({ host: '127.0.0.1', port: 0, registry: metrics.registry, ready: () => ready });
    try {
      assert.ok(server.port > 0);
      const base = `http://127.0.0.1:${server.port}`;

      // Before any event: every family is exported, counters at 0.
      const empty = await get(`${base}/metrics`);
      assert.equal(empty.status, 200);
      for (const name of WEIR_METRICS) assert.match(empty.body, new RegExp(`^# TYPE ${name} `, 'm'), `${name} missing`);
      const s0 = parseExposition(empty.body);
      for (const a of NAMES) assert.equal(valueOf(s0, 'events_processed_total', { aggregation: a }), 0);
      for (const kind of ['transient', 'permanent', 'critical']) assert.equal(valueOf(s0, 'errors_total', { kind }), 0);
      // No watermark yet: no sample (a 0 would read "caught up").
      assert.ok(!s0.some((x) => x.name === 'watermark_lag_seconds'), 'a watermark_lag_seconds sample before any watermark');
      assert.equal(valueOf(s0, 'records_consumed_total'), 0);

      assert.equal((await get(`${base}/healthz`)).status, 200);
      assert.equal((await get(`${base}/healthz`)).body.trim(), 'ok');
      assert.equal((await get(`${base}/readyz`)).status, 503);
      ready = true;
      assert.equal((await get(`${base}/readyz`)).status, 200);
      assert.equal((await get(`${base}/nope`)).status, 404);
      assert.equal((await get(`${base}/metrics`, { method: 'POST' })).status, 405);

      let mid: Sample[] = [];
      const exp = await runInstrumented(bus, async () => {
        mid = parseExposition((await get(`${base}/metrics`)).body);
      });
      // The workload must exercise what is checked.
      assert.equal(exp.records, 600);
      for (const a of NAMES.keys()) {
        assert.ok(exp.late[a]! > 0, `no late events for ${NAMES[a]}`);
        assert.ok(exp.fired[a]! > 0, `nothing fired for ${NAMES[a]}`);
        assert.ok(exp.openBeforeFinish[a]! > 0, `no open window for ${NAMES[a]}`);
      }
      assert.ok(exp.permanent > 0);

      // Gauges before finish() follow the operator.
      NAMES.forEach((a, i) => assert.equal(valueOf(mid, 'window_count', { aggregation: a }), exp.openBeforeFinish[i]));
      assert.equal(valueOf(mid, 'watermark_lag_seconds', { partition: 'all' }), (NOW_MS - exp.watermarkBeforeFinishMs) / 1000);
      assert.ok(Number.isFinite(valueOf(mid, 'watermark_lag_seconds', { partition: '0' })));
      assert.ok(valueOf(mid, 'state_size_bytes', { partition: 'all' }) > 0);

      const res = await get(`${base}/metrics`);
      assert.equal(res.type, 'text/plain; version=0.0.4; charset=utf-8');
      const s = parseExposition(res.body);
      NAMES.forEach((a, i) => {
        assert.equal(valueOf(s, 'events_processed_total', { aggregation: a }), exp.records);
        assert.equal(valueOf(s, 'late_events_total', { aggregation: a }), exp.late[i]);
        assert.equal(valueOf(s, 'window_count', { aggregation: a }), 0, 'finish() purges every window');
      });
      assert.equal(valueOf(s, 'errors_total', { kind: 'permanent' }), exp.permanent);
      assert.equal(valueOf(s, 'errors_total', { kind: 'transient' }), 1);
      assert.equal(valueOf(s, 'errors_total', { kind: 'critical' }), 0);
      assert.equal(valueOf(s, 'processing_latency_seconds_count'), exp.steps);
      assert.ok(valueOf(s, 'processing_latency_seconds_sum') > 0);
      assert.equal(valueOf(s, 'processing_latency_seconds_bucket', { le: '+Inf' }), exp.steps);
      assert.equal(valueOf(s, 'checkpoint_duration_seconds_count'), 1);
      assert.equal(valueOf(s, 'kafka_consumer_lag', { partition: '0' }), 42);
      assert.equal(valueOf(s, 'watermark_lag_seconds', { partition: 'all' }), 0, 'W = +inf after finish: nothing pending');
      // Each record once, whatever the number of aggregations.
      assert.equal(valueOf(s, 'records_consumed_total'), exp.records);
      assert.equal(valueOf(s, 'partition_idle', { partition: '0' }), 0);
      for (const name of WEIR_METRICS) {
        assert.ok(s.some((x) => x.name === name || x.name.startsWith(`${name}_`)), `${name} has no sample`);
      }
      // Node's default metrics are there too.
      assert.ok(s.some((x) => x.name === 'process_cpu_user_seconds_total'));
      assert.ok(s.some((x) => x.name === 'nodejs_eventloop_lag_seconds'));

      // Bounded labels only (sinks come from the config): never a group-by value (model, region) in a Weir series.
      const allowed = new Set(['aggregation', 'partition', 'kind', 'sink', 'le']);
      for (const x of s.filter((x) => WEIR_METRICS.some((n) => x.name === n || x.name.startsWith(`${n}_`)))) {
        for (const k of Object.keys(x.labels)) assert.ok(allowed.has(k), `${x.name} has label ${k}`);
      }
      assert.doesNotMatch(res.body, /claude|gpt-4o|llama/);

      // A revoked partition's gauges go away.
      bus.emit('partition.revoked', { partition: 0 });
      const after = parseExposition((await get(`${base}/metrics`)).body);
      assert.ok(!after.some((x) => x.labels['partition'] === '0'));

      // dispose() unsubscribes.
      metrics.dispose();
      bus.emit('error', { kind: 'critical' });
      assert.equal(valueOf(parseExposition(await metrics.registry.metrics()), 'errors_total', { kind: 'critical' }), 0);
    } finally {
      await server.close();
      metrics.dispose();
    }
  });

  test('prefix applies to every family; two registries do not collide', async () => {
    const bus = new Instrumentation();
    const a = createMetrics(bus, { prefix: 'weir_', defaultMetrics: false });
    const b = createMetrics(bus);
    bus.emit('error', { kind: 'critical' });
    const sa = parseExposition(await a.registry.metrics());
    const sb = parseExposition(await b.registry.metrics());
    assert.equal(valueOf(sa, 'weir_errors_total', { kind: 'critical' }), 1);
    assert.equal(valueOf(sb, 'errors_total', { kind: 'critical' }), 1);
    for (const name of WEIR_METRICS) assert.match(await a.registry.metrics(), new RegExp(`^# TYPE weir_${name} `, 'm'));
    assert.ok(!sa.some((x) => x.name.startsWith('process_') || x.name.startsWith('nodejs_')));
    a.dispose();
    b.dispose();
  });

  test('a busy port is an error, not a silent fallback', async () => {
    const bus = new Instrumentation();
    const m = createMetrics(bus, { defaultMetrics: false });
    const first = await startMetricsServer({ host: '127.0.0.1', port: 0, registry: m.registry, ready: () => true });
    try {
      await assert.rejects(startMetricsServer({ host: '127.0.0.1', port: first.port, registry: m.registry, ready: () => true }), /EADDRINUSE/);
    } finally {
      await first.close();
      m.dispose();
    }
  });
});

// ------------------------------------------------------------- a real Prometheus

function prometheusBinary(): string {
  const which = (): string => spawnSync('bash', ['-c', 'command -v prometheus'], { encoding: 'utf8' }).stdout.trim();
  if (which() === '') {
    const r = spawnSync('bash', [path.join(ROOT, 'scripts', 'ensure-prometheus.sh')], { encoding: 'utf8' });
    assert.equal(r.status, 0, `scripts/ensure-prometheus.sh failed:\n${r.stdout}${r.stderr}`);
  }
  const bin = which();
  assert.notEqual(bin, '', 'prometheus is not on PATH');
  return bin;
}

/** Polls `probe` every 200 ms until it returns a value (not undefined) or `ms` pass. */
async function until<T>(what: string, ms: number, probe: () => Promise<T | undefined>, diagnostics: () => string): Promise<T> {
  const deadline = Date.now() + ms;
  let last: unknown;
  for (;;) {
    try {
      const v = await probe();
      if (v !== undefined) return v;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}${last === undefined ? '' : ` (last error: ${last instanceof Error ? last.message : JSON.stringify(last)})`}\n${diagnostics()}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

interface PromVector {
  status: string;
  data: { resultType: string; result: Array<{ metric: Record<string, string>; value: [number, string] }> };
}

describe('a real Prometheus scraping /metrics', () => {
  test('reports the target up and the counters the operator produced', { timeout: 60_000 }, async () => {
    const bin = prometheusBinary();
    const bus = new Instrumentation();
    const metrics: Metrics = createMetrics(bus, { aggregations: NAMES });
    const exp = await runInstrumented(bus);
    let server: MetricsServer | undefined;
    let prom: ChildProcess | undefined;
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'weir-prometheus-'));
    let log = '';
    try {
      server = await startMetricsServer({ host: '127.0.0.1', port: 0, registry: metrics.registry, ready: () => true });
      const promPort = await freePort();
      const configFile = path.join(dir, 'prometheus.yml');
      fs.writeFileSync(
        configFile,
        [
          'global:',
          '  scrape_interval: 1s',
          '  scrape_timeout: 1s',
          '  evaluation_interval: 1s',
          'scrape_configs:',
          '  - job_name: weir',
          '    static_configs:',
          `      - targets: ['127.0.0.1:${server.port}']`,
          '',
        ].join('\n'),
      );
      prom = spawn(
        bin,
        [`--config.file=${configFile}`, `--storage.tsdb.path=${path.join(dir, 'data')}`, `--web.listen-address=127.0.0.1:${promPort}`, '--log.level=warn'],
        { stdio: ['ignore', 'pipe', 'pipe'] },
      );
      const child = prom;
      child.stdout?.on('data', (b: Buffer) => (log += b.toString()));
      child.stderr?.on('data', (b: Buffer) => (log += b.toString()));
      const diagnostics = (): string => `prometheus ${child.exitCode === null ? 'running' : `exited with ${child.exitCode}`}; its log:\n${log.slice(-4000)}`;
      const api = `http://127.0.0.1:${promPort}/api/v1`;

      await until('the weir target to be up', 25_000, async () => {
        if (child.exitCode !== null) assert.fail('prometheus exited');
        const body = (await (await fetch(`${api}/targets?state=active`)).json()) as { data: { activeTargets: Array<{ health: string; lastError: string; labels: Record<string, string> }> } };
        const t = body.data.activeTargets.find((x) => x.labels['job'] === 'weir');
        return t?.health === 'up' ? t : undefined;
      }, diagnostics);

      const query = async (q: string): Promise<PromVector['data']['result'] | undefined> => {
        const body = (await (await fetch(`${api}/query?query=${encodeURIComponent(q)}`)).json()) as PromVector;
        assert.equal(body.status, 'success');
        return body.data.result.length > 0 ? body.data.result : undefined;
      };
      const byAggregation = (r: PromVector['data']['result']): Map<string, number> => new Map(r.map((x) => [x.metric['aggregation']!, Number(x.value[1])]));

      const processed = byAggregation(await until('events_processed_total', 10_000, () => query('events_processed_total{job="weir"}'), diagnostics));
      const late = byAggregation(await until('late_events_total', 10_000, () => query('late_events_total{job="weir"}'), diagnostics));
      assert.deepEqual([...processed.keys()].sort(), [...NAMES].sort());
      NAMES.forEach((a, i) => {
        assert.equal(processed.get(a), exp.records, `events_processed_total{aggregation="${a}"}`);
        assert.equal(late.get(a), exp.late[i], `late_events_total{aggregation="${a}"}`);
      });
      const permanent = await until('errors_total', 10_000, () => query('errors_total{job="weir",kind="permanent"}'), diagnostics);
      assert.equal(Number(permanent[0]!.value[1]), exp.permanent);

      // Live: a new batch shows up at the next scrape.
      bus.emit('batch.processed', { aggregationNames: NAMES, records: 10, durationSeconds: 0.001, late: [1, 0, 0], deadLetters: [], partition: 0 });
      await until('the next scrape to see 10 more events', 10_000, async () => {
        const r = await query(`events_processed_total{job="weir",aggregation="${NAMES[0]}"}`);
        return r !== undefined && Number(r[0]!.value[1]) === exp.records + 10 ? true : undefined;
      }, diagnostics);
    } finally {
      if (prom !== undefined && prom.exitCode === null && prom.signalCode === null) {
        const child = prom;
        const exited = new Promise<void>((r) => child.once('exit', () => r()));
        child.kill('SIGTERM');
        const killTimer = setTimeout(() => child.kill('SIGKILL'), 5_000);
        await exited;
        clearTimeout(killTimer);
      }
      await server?.close();
      metrics.dispose();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
