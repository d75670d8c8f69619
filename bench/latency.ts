// Benchmark 5: does Weir keep up with a live stream, and how late are its results?
//
// Kafka in, Kafka out, on the real broker. For each rate:
//   - two fresh topics of 4 partitions (events, results), unique names, deleted after;
//   - `weir run` as a child process (as in production; its CPU is its own), reading the
//     events topic with three aggregations (sessions per user, gap 2 s; tumbling 1 s and
//     sliding 10 s / 1 s per model and region), RocksDB state, checkpoints every 2 s,
//     results to the results topic (lingerMs at its default);
//   - a producer child process (bench/latency-producer.ts) writing events at a steady
//     rate, event time = wall clock, keyed by user;
//   - a consumer of the results topic here, which takes the arrival time of every
//     on-time result (`late: false`) minus (window.end + maxOutOfOrdernessMs): how long
//     after the watermark could first have passed the window's end the result was
//     readable downstream. That includes the source's read, the batch, the loop, the
//     Kafka sink's linger and send, the broker and this consumer's fetch.
// After a warm-up, results arriving in the measurement window count; Weir's lag
// (events in the topic minus events Weir has read, from its /metrics) is sampled every
// second; its means over the window's first and last 3 s are the lag at start and end. A rate is sustained when the lag at the end is not larger
// than at the start by more than a margin (one second of events, at least four full
// batches: Weir counts events a batch at a time), and the producer delivered at least
// 95% of the rate (otherwise the load, not Weir, is what fell short).
//
// maxOutOfOrdernessMs is 100: the producer stamps each event as it hands it over, one
// producer, keyed by user, so a partition's events arrive in stamp order; 100 ms only
// absorbs the clock reads of a batch. The measured latency does not include it.
//
// `npm run bench -- latency`. Environment:
//   WEIR_LATENCY_RATES=5000,10000,20000,40000   events/s, one run each
//   WEIR_LATENCY_USERS=20000                    distinct users
//   WEIR_LATENCY_WARMUP_S=5 WEIR_LATENCY_SECONDS=20   warm-up and measurement, per rate
//   WEIR_LATENCY_PROFILE=<dir>                  run Weir with --cpu-prof into <dir>: one file per thread
//                                               (CPU.<date>.<time>.<pid>.<thread>...), summed up by
//                                               node dist/bench/cpuprofile.js <dir>/*.cpuprofile
//   WEIR_LATENCY_NODE_ARGS="--trace-gc ..."     more node options for Weir's process
//   WEIR_LATENCY_WEIR_OUT=<file>                append Weir's stdout and stderr to <file> (with --trace-gc: its collections)
//   WEIR_LATENCY_CONFIG='{"changelog":{"enabled":false}}'   top-level config sections replacing the benchmark's
//   WEIR_LATENCY_DUMP=<file>                    append each measured result as "arrival ms, latency ms, aggregation name" lines
//   WEIR_BENCH_NO_KAFKA=1                       skip
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { appendFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Kafka, logLevel } from 'kafkajs';
import { BROKERS, ensureBroker } from './kafka';

process.env['KAFKAJS_NO_PARTITIONER_WARNING'] = '1';

const ROOT = join(__dirname, '..', '..');
const PARTITIONS = 4;
const MAX_OOO_MS = 100;
const CHECKPOINT_MS = 2000;
/** Lag samples (one a second) averaged for the lag at the start and at the end of a measurement. */
const SPAN = 3;
/** Weir's default batchSize (events per batch). */
const BATCH = 4096;

export const LATENCY_AGGREGATIONS = [
  { name: 'user_sessions', groupBy: ['metadata.user_id'], value: 'data.tokens', window: { type: 'session', gapMs: 2000 } },
  { name: 'latency_1s', groupBy: ['data.model', 'data.region'], value: 'data.latency_ms', window: { type: 'tumbling', sizeMs: 1000 } },
  { name: 'latency_10s', groupBy: ['data.model', 'data.region'], value: 'data.latency_ms', window: { type: 'sliding', sizeMs: 10_000, slideMs: 1000 } },
] as const;

export interface LatencyRun {
  /** Target events/s. */
  rate: number;
  /** Events/s the producer had acknowledged over the measurement window. */
  producedPerSecond: number;
  /** On-time results that arrived in the measurement window, and their rate. */
  results: number;
  resultsPerSecond: number;
  /** Arrival minus (window.end + maxOutOfOrdernessMs), ms. */
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
  /** Results later than 250 ms. */
  over250: number;
  /** Share of on-time results later than 50 ms, here and in Weir's own `result_latency_seconds` (when handed to its sinks): where the tail comes from. */
  over50: number;
  handedOver50: number;
  /** Events in the topic not yet read by Weir: means over the first and the last 3 s of the measurement window, and the most seen. */
  lagStart: number;
  lagEnd: number;
  lagMax: number;
  /** Events behind the group's committed offsets at the end (commits follow checkpoints, every 2 s). */
  committedLagEnd: number;
  /** Weir's CPU over the measurement window, in cores (1 = one core busy). */
  weirCpuCores: number;
  sustained: boolean;
}

export interface LatencyBenchResult {
  users: number;
  partitions: number;
  warmupSeconds: number;
  measureSeconds: number;
  maxOutOfOrdernessMs: number;
  checkpointIntervalMs: number;
  aggregations: typeof LATENCY_AGGREGATIONS;
  /** The load average when the bench started: a shared machine shows here. */
  loadAverage: number[];
  runs: LatencyRun[];
  /** The highest rate sustained; null when none was. */
  highestSustained: number | null;
  /** The 20,000 events/s scenario's targets: p99 < 50 ms, max <= 250 ms (null when that rate was not run). */
  target: { rate: number; p99Ok: boolean; maxOk: boolean } | null;
}

const unique = (prefix: string): string => `${prefix}-${Date.now().toString(36)}-${randomBytes(3).toString('hex')}`;
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.unref();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const a = s.address();
      const port = typeof a === 'object' && a !== null ? a.port : 0;
      s.close(() => resolve(port));
    });
  });
}

/** User + system CPU seconds of a process so far (Linux /proc; 0 elsewhere). */
function cpuSeconds(pid: number | undefined): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // Fields 14 and 15 (utime, stime), counted from field 3 after the command name; clock ticks of 1/100 s.
    return (Number(f[11]) + Number(f[12])) / 100;
  } catch {
    return 0;
  }
}

/** The value of a metric without labels, or the sum over its label sets, from a Prometheus text page. */
function metricSum(page: string, name: string, label?: string): number {
  let sum = 0;
  for (const line of page.split('\n')) {
    if (!line.startsWith(name)) continue;
    const rest = line.slice(name.length);
    if (rest[0] !== ' ' && rest[0] !== '{') continue;
    if (label !== undefined && !rest.includes(label)) continue;
    sum += Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return sum;
}

async function scrape(port: number): Promise<string> {
  const r = await fetch(`http://127.0.0.1:${port}/metrics`);
  return r.text();
}

function quantile(sorted: Float64Array, q: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)]!;
}

/** Waits for a child to exit; SIGKILL after `ms`. */
function exited(child: ChildProcess, ms: number): Promise<number | null> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(child.exitCode);
  return new Promise((resolve) => {
    const t = setTimeout(() => child.kill('SIGKILL'), ms);
    child.once('exit', (code) => {
      clearTimeout(t);
      resolve(code);
    });
  });
}

/** Extra node options for Weir's process (WEIR_LATENCY_NODE_ARGS, space-separated), and where its output goes (WEIR_LATENCY_WEIR_OUT). */
const extraNodeArgs = (process.env['WEIR_LATENCY_NODE_ARGS'] ?? '').split(' ').filter((a) => a !== '');
const outFile = process.env['WEIR_LATENCY_WEIR_OUT'];
/** Config sections that replace the benchmark's own (a JSON object of top-level keys), to try a setting side by side. */
const configPatch = JSON.parse(process.env['WEIR_LATENCY_CONFIG'] ?? '{}') as Record<string, unknown>;
/** Where each measured result's arrival and latency go (WEIR_LATENCY_DUMP), to line them up with Weir's log. */
const dumpFile = process.env['WEIR_LATENCY_DUMP'];

async function runRate(rate: number, users: number, warmupS: number, measureS: number, profileDir: string | undefined): Promise<LatencyRun> {
  const kafka = new Kafka({ clientId: 'weir-bench-latency', brokers: BROKERS, logLevel: logLevel.NOTHING });
  const admin = kafka.admin();
  const inTopic = unique('weir-bench-latency-in');
  const outTopic = unique('weir-bench-latency-out');
  const weirGroup = unique('weir-bench-latency');
  const readerGroup = unique('weir-bench-latency-reader');
  const dir = mkdtempSync(join(tmpdir(), 'weir-bench-latency-'));
  const port = await freePort();
  let weir: ChildProcess | undefined, producer: ChildProcess | undefined;
  const reader = kafka.consumer({ groupId: readerGroup, maxWaitTimeInMs: 20 });
  await admin.connect();
  try {
    await admin.createTopics({
      topics: [inTopic, outTopic].map((topic) => ({ topic, numPartitions: PARTITIONS, replicationFactor: 1 })),
      waitForLeaders: true,
    });
    const cfgFile = join(dir, 'weir.json');
    writeFileSync(
      cfgFile,
      JSON.stringify({
        source: { type: 'kafka', brokers: BROKERS, topic: inTopic, groupId: weirGroup, fromBeginning: true, clientId: 'weir-bench-latency' },
        eventTime: { field: 'timestamp', maxOutOfOrdernessMs: MAX_OOO_MS, allowedLatenessMs: 1000 },
        aggregations: LATENCY_AGGREGATIONS,
        sinks: [{ type: 'kafka', topic: outTopic, brokers: BROKERS }],
        deadLetter: { type: 'file', path: join(dir, 'dead-letters.jsonl') },
        state: { backend: 'rocksdb', dir: join(dir, 'state') },
        checkpoint: { dir: join(dir, 'checkpoints'), intervalMs: CHECKPOINT_MS },
        metrics: { host: '127.0.0.1', port },
        log: { level: 'error' },
        ...configPatch,
      }),
    );
    const nodeArgs = [...(profileDir === undefined ? [] : ['--cpu-prof', `--cpu-prof-dir=${profileDir}`]), ...extraNodeArgs];
    const weirErr: Buffer[] = [];
    weir = spawn(process.execPath, [...nodeArgs, join(ROOT, 'bin', 'weir.js'), 'run', '--config', cfgFile], { stdio: ['ignore', outFile === undefined ? 'ignore' : 'pipe', 'pipe'] });
    weir.stderr!.on('data', (b: Buffer) => {
      weirErr.push(b);
      if (outFile !== undefined) appendFileSync(outFile, b);
    });
    if (outFile !== undefined) weir.stdout!.on('data', (b: Buffer) => appendFileSync(outFile, b));
    const weirFailed = (): Error => new Error(`weir exited early (${weir?.exitCode}): ${Buffer.concat(weirErr).toString().slice(-2000)}`);

    // Ready: consuming, with its partitions assigned.
    for (let i = 0; ; i++) {
      if (weir.exitCode !== null) throw weirFailed();
      if (i > 600) throw new Error('weir was not ready after 60 s');
      const ok = await fetch(`http://127.0.0.1:${port}/readyz`).then((r) => r.ok, () => false);
      if (ok) break;
      await sleep(100);
    }

    // The results reader: arrival time of each on-time result minus the time it could first exist.
    let measuring = false;
    const lat: number[] = [];
    await reader.connect();
    await reader.subscribe({ topics: [outTopic], fromBeginning: true });
    await reader.run({
      autoCommit: false,
      eachBatch: async ({ batch }) => {
        const now = Date.now();
        if (!measuring) return;
        let dump = '';
        for (const m of batch.messages) {
          const r = JSON.parse(m.value!.toString()) as { name: string; late: boolean; window: { end: number } };
          if (r.late) continue;
          const latency = now - (r.window.end + MAX_OOO_MS);
          lat.push(latency);
          if (dumpFile !== undefined) dump += `${now},${latency},${r.name}\n`;
        }
        if (dump !== '') appendFileSync(dumpFile!, dump);
      },
    });

    let acked = 0;
    const prodErr: Buffer[] = [];
    producer = spawn(process.execPath, [join(__dirname, 'latency-producer.js'), BROKERS.join(','), inTopic, String(rate), String(users), '7'], {
      stdio: ['ignore', 'ignore', 'pipe', 'ipc'],
    });
    producer.stderr!.on('data', (b: Buffer) => prodErr.push(b));
    producer.on('message', (m: { acked: number }) => (acked = m.acked));

    const lagNow = async (): Promise<number> => {
      const [offs, page] = await Promise.all([admin.fetchTopicOffsets(inTopic), scrape(port)]);
      const inTopicCount = offs.reduce((n, o) => n + Number(o.high), 0);
      return inTopicCount - metricSum(page, 'events_processed_total', `aggregation="${LATENCY_AGGREGATIONS[0].name}"`);
    };

    await sleep(warmupS * 1000);
    if (weir.exitCode !== null) throw weirFailed();
    if (producer.exitCode !== null) throw new Error(`producer exited: ${Buffer.concat(prodErr).toString()}`);
    const lags = [await lagNow()];
    // Weir's own latency histogram: results handed to its sinks, and those later than 50 ms.
    const handed = (page: string): [number, number] => [metricSum(page, 'result_latency_seconds_count'), metricSum(page, 'result_latency_seconds_bucket', 'le="0.05"')];
    const handed0 = handed(await scrape(port));
    const cpu0 = cpuSeconds(weir.pid), acked0 = acked, t0 = Date.now();
    measuring = true;
    while (Date.now() - t0 < measureS * 1000) {
      await sleep(1000);
      if (weir.exitCode !== null) throw weirFailed();
      lags.push(await lagNow());
    }
    measuring = false;
    const seconds = (Date.now() - t0) / 1000;
    const cpu1 = cpuSeconds(weir.pid), acked1 = acked;
    const handed1 = handed(await scrape(port));
    const handedCount = handed1[0] - handed0[0];
    // Lag swings with batches and checkpoints: the start and the end are means over
    // the first and the last SPAN samples (a second apart), longer than a checkpoint interval.
    const span = Math.min(SPAN, Math.floor(lags.length / 2));
    const mean = (xs: number[]): number => xs.reduce((a, b) => a + b, 0) / xs.length;
    const lagStart = mean(lags.slice(0, span)), lagEnd = mean(lags.slice(-span));
    const lagMax = Math.max(...lags);
    const committed = await admin.fetchOffsets({ groupId: weirGroup, topics: [inTopic] });
    const ends = await admin.fetchTopicOffsets(inTopic);
    const committedLagEnd = ends.reduce((n, o) => {
      const c = Number(committed[0]?.partitions.find((p) => p.partition === o.partition)?.offset ?? -1);
      return n + Number(o.high) - Math.max(0, c);
    }, 0);

    const sorted = Float64Array.from(lat).sort();
    const producedPerSecond = (acked1 - acked0) / seconds;
    return {
      rate,
      producedPerSecond,
      results: sorted.length,
      resultsPerSecond: sorted.length / seconds,
      p50Ms: quantile(sorted, 0.5),
      p99Ms: quantile(sorted, 0.99),
      maxMs: sorted.length > 0 ? sorted[sorted.length - 1]! : NaN,
      over250: sorted.filter((x) => x > 250).length,
      over50: sorted.filter((x) => x > 50).length / Math.max(1, sorted.length),
      handedOver50: (handedCount - (handed1[1] - handed0[1])) / Math.max(1, handedCount),
      lagStart,
      lagEnd,
      lagMax,
      committedLagEnd,
      weirCpuCores: (cpu1 - cpu0) / seconds,
      sustained: lagEnd <= lagStart + Math.max(rate, 4 * BATCH) && producedPerSecond >= 0.95 * rate,
    };
  } finally {
    // Stop the load first, then Weir (graceful: a final checkpoint), then the reader.
    if (producer !== undefined) {
      if (producer.connected) producer.send('stop');
      await exited(producer, 10_000);
    }
    if (weir !== undefined) {
      weir.kill('SIGTERM');
      await exited(weir, 20_000);
    }
    await reader.disconnect().catch(() => {});
    await admin.deleteGroups([weirGroup, readerGroup]).catch(() => {});
    await admin.deleteTopics({ topics: [inTopic, outTopic], timeout: 30_000 }).catch(() => {});
    await admin.disconnect();
    rmSync(dir, { recursive: true, force: true });
  }
}

export async function benchLatency(): Promise<LatencyBenchResult> {
  ensureBroker();
  const env = process.env;
  const rates = (env['WEIR_LATENCY_RATES'] ?? '5000,10000,20000,40000').split(',').map(Number);
  const users = Number(env['WEIR_LATENCY_USERS'] ?? 20_000);
  const warmupS = Number(env['WEIR_LATENCY_WARMUP_S'] ?? 5);
  const measureS = Number(env['WEIR_LATENCY_SECONDS'] ?? 20);
  const profileDir = env['WEIR_LATENCY_PROFILE'];
  if (!existsSync(join(__dirname, 'latency-producer.js'))) throw new Error('dist/bench/latency-producer.js is missing: npm run build');
  const loadAverage = (await import('node:os')).loadavg();
  const runs: LatencyRun[] = [];
  for (const rate of rates) {
    console.error(`latency: ${rate} events/s for ${warmupS} + ${measureS} s ...`);
    runs.push(await runRate(rate, users, warmupS, measureS, profileDir));
  }
  const ok = runs.filter((r) => r.sustained).map((r) => r.rate);
  const at = runs.find((r) => r.rate === 20_000);
  return {
    users,
    partitions: PARTITIONS,
    warmupSeconds: warmupS,
    measureSeconds: measureS,
    maxOutOfOrdernessMs: MAX_OOO_MS,
    checkpointIntervalMs: CHECKPOINT_MS,
    aggregations: LATENCY_AGGREGATIONS,
    loadAverage,
    runs,
    highestSustained: ok.length > 0 ? Math.max(...ok) : null,
    target: at === undefined ? null : { rate: at.rate, p99Ok: at.p99Ms < 50, maxOk: at.maxMs <= 250 },
  };
}

export function printLatency(l: LatencyBenchResult): void {
  const fmt = (x: number): string => Math.round(x).toLocaleString('en-US');
  const ms = (x: number): string => (Number.isNaN(x) ? '-' : x.toFixed(0));
  console.log(
    `${l.users.toLocaleString('en-US')} users, ${l.partitions} partitions, warm-up ${l.warmupSeconds} s, measured ${l.measureSeconds} s per rate; load average at start ${l.loadAverage.map((x) => x.toFixed(1)).join(' ')}`,
  );
  console.log('| target events/s | produced events/s | on-time results/s | p50 ms | p99 ms | max ms | > 250 ms | > 50 ms: read / handed to sinks | lag start / end / max (events) | weir CPU (cores) | sustained |');
  console.log('| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |');
  const pct = (x: number): string => `${(100 * x).toFixed(1)}%`;
  for (const r of l.runs)
    console.log(
      `| ${fmt(r.rate)} | ${fmt(r.producedPerSecond)} | ${fmt(r.resultsPerSecond)} | ${ms(r.p50Ms)} | ${ms(r.p99Ms)} | ${ms(r.maxMs)} | ${r.over250} | ${pct(r.over50)} / ${pct(r.handedOver50)} | ${fmt(r.lagStart)} / ${fmt(r.lagEnd)} / ${fmt(r.lagMax)} | ${r.weirCpuCores.toFixed(2)} | ${r.sustained ? 'yes' : 'no'} |`,
    );
  console.log(`\nhighest rate sustained: ${l.highestSustained === null ? 'none' : `${fmt(l.highestSustained)} events/s`}`);
  if (l.target !== null) console.log(`20,000 events/s: p99 < 50 ms ${l.target.p99Ok ? 'met' : 'NOT met'}; no result later than 250 ms ${l.target.maxOk ? 'met' : 'NOT met'}`);
  console.log();
}
