// Benchmark 3: end to end from a real Kafka broker (scripts/kafka-up.sh). One million
// generated events are produced once into a topic of 4 partitions, keyed by model and
// region; then, alternating:
//   - a bare kafkajs consumer (its own group, fromBeginning, eachBatch, autoCommit off)
//     that only counts messages until it has seen them all: the most a processor built
//     on kafkajs can read (bench/bare.ts, in a process of its own: plain kafkajs);
//   - Weir: runEmbedded with a bounded Kafka source over the same topic, the
//     aggregations of an end-to-end workload (bench/e2e.ts: four aggregations keyed by
//     model and region, or sessions per user in a topic keyed by user), RocksDB state,
//     checkpoints at the default interval (and the final one), results to a file.
// The time of a run is from its start (connect, group join) to the last message seen
// (bare) or to runEmbedded resolving (Weir: includes firing every window at the end,
// the final checkpoint and leaving the group): if anything, unfair to Weir. The steady
// rate leaves start-up and shutdown out: events over the time from the first to the
// last batch of records.
//
// `node dist/bench/kafka.js` runs this bench alone (WEIR_BENCH_ROUNDS=n for n rounds).
// WEIR_BENCH_NO_KAFKA=1 skips it. WEIR_BENCH_PARTITIONS=n reads a topic of n partitions
// instead of 4 (n = 1: one consumer thread and one operator, nothing in parallel).
// First, as `weir` does: a Kafka consumer on this thread decodes with Weir's decoder (run alone).
import '../src/sources/consumer-on-main';
import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Kafka, logLevel, Partitioners, type Message } from 'kafkajs';
import { validateConfig } from '../src/config';
import { Instrumentation } from '../src/metrics/events';
import { runEmbedded } from '../src/runner';
import { WORKLOADS, workloadGenerator, type Workload } from './e2e';
import { median } from './stats';

process.env['KAFKAJS_NO_PARTITIONER_WARNING'] = '1';

const PORT = process.env['KAFKA_PORT'] ?? '9092';
export const BROKERS = [`127.0.0.1:${PORT}`];
const ROOT = join(__dirname, '..', '..');

/** One run: ms from its start to its first and last record, and to its end. */
export interface KafkaRun {
  firstMs: number;
  lastMs: number;
  totalMs: number;
}

export interface KafkaFigure {
  impl: string;
  /** events / median totalMs. */
  eventsPerSecond: number;
  /** events / median (lastMs - firstMs): the rate once records flow, without start-up and shutdown. */
  steadyEventsPerSecond: number;
  runs: KafkaRun[];
}

export interface KafkaBenchResult {
  workload: Workload['name'];
  topic: string;
  partitions: number;
  events: number;
  /** Time to produce the events; null when the topic of an earlier run was reused. */
  produceMs: number | null;
  figures: KafkaFigure[];
  /** Weir events/s / bare kafkajs events/s (medians). Target: >= 0.8. */
  ratio: number;
  /** The same for the steady rates. */
  steadyRatio: number;
}

const unique = (prefix: string): string => `${prefix}-${Date.now().toString(36)}-${randomBytes(3).toString('hex')}`;

/** Starts the local broker if it is not up (the script is idempotent and quick when it is). */
export function ensureBroker(): void {
  const r = spawnSync('bash', [join(ROOT, 'scripts', 'kafka-up.sh')], { stdio: ['ignore', 'inherit', 'inherit'] });
  if (r.status !== 0) throw new Error(`scripts/kafka-up.sh failed (exit ${r.status}); set WEIR_BENCH_NO_KAFKA=1 to skip the Kafka bench`);
}

/** `"user_id":"u"` of a generated line, as the message key `u`. */
function userOf(line: string): string {
  const u = line.indexOf('"user_id":"');
  return u < 0 ? '' : line.slice(u + 11, line.indexOf('"', u + 11));
}

/** `"model":"x","region":"y"` of a generated line, as the message key `x/y`. */
function keyOf(line: string): string {
  const m = line.indexOf('"model":"');
  const r = line.indexOf('"region":"', m);
  if (m < 0 || r < 0) return '';
  return `${line.slice(m + 9, line.indexOf('"', m + 9))}/${line.slice(r + 10, line.indexOf('"', r + 10))}`;
}

/**
 * The benchmark topic with `count` events in `partitions` partitions: reused when a
 * topic of that name already holds exactly that many (a previous bench run), else
 * (re)created and filled. Returns the produce time, or null when reused.
 */
export async function prepareTopic(topic: string, count: number, partitions: number, w: Workload = WORKLOADS.aggregates): Promise<number | null> {
  const kafka = new Kafka({ clientId: 'weir-bench', brokers: BROKERS, logLevel: logLevel.NOTHING });
  const admin = kafka.admin();
  await admin.connect();
  try {
    if ((await admin.listTopics()).includes(topic)) {
      const offs = await admin.fetchTopicOffsets(topic);
      const held = offs.reduce((n, o) => n + Number(o.high) - Number(o.low), 0);
      if (offs.length === partitions && held === count) return null;
      await admin.deleteTopics({ topics: [topic], timeout: 30_000 });
      // Deletion is asynchronous in the broker: wait until the name is free again.
      for (let i = 0; i < 120 && (await admin.listTopics()).includes(topic); i++) await new Promise((r) => setTimeout(r, 250));
    }
    await admin.createTopics({ topics: [{ topic, numPartitions: partitions, replicationFactor: 1 }], waitForLeaders: true });
  } finally {
    await admin.disconnect();
  }
  const t0 = performance.now();
  // The Java client's default partitioner (murmur2 of the key), as most producers have it.
  const producer = kafka.producer({ createPartitioner: Partitioners.DefaultPartitioner, allowAutoTopicCreation: false });
  await producer.connect();
  try {
    const gen = workloadGenerator(w);
    const key = w.kafkaKey === 'user' ? userOf : keyOf;
    const CHUNK = 4000, IN_FLIGHT = 4;
    const inFlight = new Set<Promise<unknown>>();
    for (let i = 0; i < count; ) {
      const n = Math.min(CHUNK, count - i);
      const messages = new Array<Message>(n);
      for (let k = 0; k < n; k++) {
        const line = gen.next();
        messages[k] = { key: key(line), value: line };
      }
      i += n;
      const p: Promise<unknown> = producer.send({ topic, messages, acks: -1 }).finally(() => inFlight.delete(p));
      inFlight.add(p);
      if (inFlight.size >= IN_FLIGHT) await Promise.race(inFlight);
    }
    await Promise.all(inFlight);
  } finally {
    await producer.disconnect();
  }
  return performance.now() - t0;
}

/** The bench's consumer groups (with their committed offsets) are of no further use. */
async function deleteGroups(groups: string[]): Promise<void> {
  const admin = new Kafka({ clientId: 'weir-bench', brokers: BROKERS, logLevel: logLevel.NOTHING }).admin();
  try {
    await admin.connect();
    await admin.deleteGroups(groups);
  } catch {
    // Housekeeping only.
  } finally {
    await admin.disconnect();
  }
}

/**
 * The bare consumer (bench/bare.ts) in a process of its own, on the cores this one may
 * use: this process decodes with Weir's decoder (bench/index.ts imports
 * consumer-on-main.ts first), and the bare consumer is plain kafkajs.
 */
export async function bareConsume(topic: string, count: number, maxBytesPerPartition: number, groupId = unique('weir-bench-bare')): Promise<KafkaRun> {
  const child = spawn(process.execPath, [join(__dirname, 'bare.js'), JSON.stringify({ topic, count, maxBytesPerPartition, groupId, brokers: BROKERS })], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
  const code = await new Promise<number | null>((resolve, reject) => child.once('error', reject).once('exit', resolve));
  if (code !== 0) throw new Error(`bench: the bare consumer exited with code ${code}`);
  return JSON.parse(out) as KafkaRun;
}

/** Weir over the topic, from a fresh group, state and checkpoint directory; its run ends when runEmbedded resolves. */
export async function weirConsume(topic: string, count: number, groupId = unique('weir-bench'), w: Workload = WORKLOADS.aggregates): Promise<KafkaRun> {
  const dir = mkdtempSync(join(tmpdir(), 'weir-bench-kafka-'));
  try {
    const cfg = validateConfig({
      source: { type: 'kafka', brokers: BROKERS, topic, groupId, bounded: true, fromBeginning: true, clientId: 'weir-bench' },
      eventTime: { field: 'timestamp', maxOutOfOrdernessMs: 30_000, allowedLatenessMs: 60_000 },
      aggregations: w.aggregations,
      sinks: [{ type: 'file', path: join(dir, 'results.jsonl') }],
      deadLetter: { type: 'file', path: join(dir, 'dead-letters.jsonl') },
      state: { backend: 'rocksdb', dir: join(dir, 'state') },
      checkpoint: { dir: join(dir, 'checkpoints') },
    });
    // When the first and the last batch of records were processed.
    const bus = new Instrumentation();
    let firstMs = 0, lastMs = 0, seen = 0;
    const t0 = performance.now();
    bus.on('batch.processed', (e) => {
      if (e.records === 0) return;
      const at = performance.now() - t0;
      if (seen === 0) firstMs = at;
      seen += e.records;
      lastMs = at;
    });
    const s = await runEmbedded(cfg, { progress: false, bus });
    const totalMs = performance.now() - t0;
    if (s.records !== count) throw new Error(`weir read ${s.records} of ${count} events`);
    return { firstMs, lastMs, totalMs };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

export async function benchKafka(count = 1_000_000, rounds = 3, partitions = 4, w: Workload = WORKLOADS.aggregates): Promise<KafkaBenchResult> {
  ensureBroker();
  // Kept between runs (producing a million events takes a while); the name says what it holds.
  const topic = w.users === undefined ? `weir-bench-events-${count}-p${partitions}` : `weir-bench-events-${count}-u${w.users}-by-user-p${partitions}`;
  const produceMs = await prepareTopic(topic, count, partitions, w);
  // The bare consumer fetches as much per partition as Weir does by default.
  const src = validateConfig({ source: { type: 'kafka', brokers: BROKERS, topic }, aggregations: w.aggregations }).source;
  const fetchBytes = src.type === 'kafka' ? src.maxBytesPerPartition : 1_048_576;
  const bareRuns: KafkaRun[] = [], weirRuns: KafkaRun[] = [];
  const groups: string[] = [];
  try {
    for (let r = 0; r < rounds; r++) {
      groups.push(unique('weir-bench-bare'));
      bareRuns.push(await bareConsume(topic, count, fetchBytes, groups.at(-1)));
      groups.push(unique('weir-bench'));
      weirRuns.push(await weirConsume(topic, count, groups.at(-1), w));
    }
  } finally {
    await deleteGroups(groups);
  }
  const figure = (impl: string, runs: KafkaRun[]): KafkaFigure => ({
    impl,
    eventsPerSecond: (count * 1000) / median(runs.map((x) => x.totalMs)),
    steadyEventsPerSecond: (count * 1000) / median(runs.map((x) => x.lastMs - x.firstMs)),
    runs,
  });
  const bare = figure('kafkajs bare consumer (count only)', bareRuns);
  const weir = figure(`weir (kafka source, ${w.name === 'sessions' ? 'sessions per user' : '4 aggregations'}, rocksdb, checkpoints)`, weirRuns);
  return {
    workload: w.name,
    topic,
    partitions,
    events: count,
    produceMs,
    figures: [bare, weir],
    ratio: weir.eventsPerSecond / bare.eventsPerSecond,
    steadyRatio: weir.steadyEventsPerSecond / bare.steadyEventsPerSecond,
  };
}

export function printKafka(k: KafkaBenchResult): void {
  console.log(`workload: ${k.workload}; topic: ${k.topic} (${k.partitions} partitions, ${k.events.toLocaleString('en-US')} events; ${k.produceMs === null ? 'reused' : `produced in ${(k.produceMs / 1000).toFixed(1)} s`})`);
  const fmt = (x: number): string => Math.round(x).toLocaleString('en-US');
  console.log('| implementation | events/s | steady events/s | runs: first record / last record / end (ms) |');
  console.log('| --- | --- | --- | --- |');
  for (const f of k.figures)
    console.log(`| ${f.impl} | ${fmt(f.eventsPerSecond)} | ${fmt(f.steadyEventsPerSecond)} | ${f.runs.map((x) => `${fmt(x.firstMs)} / ${fmt(x.lastMs)} / ${fmt(x.totalMs)}`).join('; ')} |`);
  console.log(`\nweir / bare kafkajs: ${(k.ratio * 100).toFixed(0)}% (target: >= 80%); steady: ${(k.steadyRatio * 100).toFixed(0)}%\n`);
}

if (require.main === module && process.env['WEIR_BENCH_NO_KAFKA'] === '1') console.log('Kafka bench skipped: WEIR_BENCH_NO_KAFKA=1');
else if (require.main === module) {
  const rounds = Number(process.env['WEIR_BENCH_ROUNDS'] ?? 3);
  benchKafka(1_000_000, rounds, Number(process.env['WEIR_BENCH_PARTITIONS'] ?? 4))
    .then(printKafka)
    .catch((e: unknown) => {
      console.error(e);
      process.exit(1);
    });
}
