// source.consumerThread: the Kafka source's consumer on the main thread, decoding with
// Weir's decoder (consumer-on-main.ts, imported first here as `weir` does), reads
// exactly what it reads on a thread of its own, recovers from kill -9 as exactly, and
// `auto` puts it there when the process may use one core only. And
// processing.backgroundThreads: the state backend and the changelog on the main thread
// too recover as exactly, and `auto` puts them there for a bounded read whose consumer
// is there.
import '../../src/sources/consumer-on-main';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import type { DeadLetter, WindowResult } from '../../src/pipeline/types';
import { generateLines } from '../../src/sources/eventgen';
import { KafkaSource } from '../../src/sources/kafka';
import { validateConfig } from '../../src/config';
import { backgroundHere } from '../../src/runner';
import { FAST, Reader, byPartition, createTopic, produce, sourceConfig, unique, type Rec } from './helpers/kafka';
import { assertNeverHigher, assertSameFinals, deadLetterSet, finalResults, kafkaRunConfig, readLines, runThroughCrashes, spawnWeir, writeConfig, type CrashStep, type Exit } from './helpers/weir';

/** Every record of a bounded read of `topic`, and the source's stats. */
async function readAll(topic: string, consumerThread: 'own' | 'main'): Promise<{ records: Rec[]; stats: KafkaSource['stats'] }> {
  const batchSize = 64;
  const source = new KafkaSource(sourceConfig(topic, unique('g'), { consumerThread }), { batchSize, consumer: FAST, tickIntervalMs: 200 });
  const r = new Reader(source, batchSize);
  try {
    await r.toEnd(30_000);
    assert.equal(r.log.at(-1)?.kind, 'end');
    return { records: r.records, stats: { ...source.stats } };
  } finally {
    await source.close();
  }
}

test('consumerThread main: the same records as on its own thread, each once, in offset order, decoded by Weir', async () => {
  const topic = unique('weir-main-consumer');
  await createTopic(topic, 4);
  const values = Array.from({ length: 3000 }, (_, i) => (i % 500 === 3 ? null : JSON.stringify({ id: `e-${i}`, pad: 'x'.repeat(i % 41), s: 'é✓' })));
  await produce(topic, values.map((value, i) => ({ key: `k-${i}`, value })));

  const main = await readAll(topic, 'main');
  const own = await readAll(topic, 'own');
  assert.equal(main.stats.onMainThread, true);
  assert.equal(main.stats.fastDecoder, true, 'Weir decodes on the main thread too');
  assert.equal(own.stats.onMainThread, false);
  assert.equal(own.stats.fastDecoder, true);
  assert.equal(main.records.length, values.length);
  const parts = byPartition(main.records), ownParts = byPartition(own.records);
  assert.deepEqual([...parts.keys()].sort(), [0, 1, 2, 3]);
  for (const [p, recs] of parts) {
    recs.forEach((rec, i) => assert.equal(rec.offset, String(i), `partition ${p}`));
    const theirs = ownParts.get(p)!;
    assert.equal(recs.length, theirs.length, `partition ${p}`);
    recs.forEach((rec, i) => assert.ok(rec.value.equals(theirs[i]!.value), `partition ${p} offset ${i}`));
  }
  const seen = new Set(main.records.map((r) => r.value.toString('utf8')));
  for (const v of values) assert.ok(seen.has(v ?? ''), String(v));
});

/** Where `auto` puts the consumer in a fresh process: on core 0 only or on every core, with or without Weir's decoder on the main thread. */
function autoPlacement(oneCore: boolean, decoder: boolean): boolean {
  const dist = join(__dirname, '..', '..', 'src');
  const script = `
    ${decoder ? `require(${JSON.stringify(join(dist, 'sources', 'consumer-on-main.js'))});` : ''}
    const { KafkaSource } = require(${JSON.stringify(join(dist, 'sources', 'kafka.js'))});
    const s = new KafkaSource({ type: 'kafka', brokers: ['127.0.0.1:1'], topic: 't', groupId: 'g', fromBeginning: true, bounded: true,
      idleTimeoutMs: 10000, sessionTimeoutMs: 6000, maxBytesPerPartition: 1048576, clientId: 'c', consumerThread: 'auto', ssl: false }, { batchSize: 64 });
    process.stdout.write(JSON.stringify({ onMain: s.stats.onMainThread, cores: require('node:os').availableParallelism() }));`;
  const argv = oneCore ? ['taskset', '-c', '0', process.execPath, '-e', script] : [process.execPath, '-e', script];
  const r = spawnSync(argv[0]!, argv.slice(1), { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  const out = JSON.parse(r.stdout) as { onMain: boolean; cores: number };
  if (oneCore) assert.equal(out.cores, 1);
  return out.onMain;
}

test('consumerThread auto: the main thread on one core with Weir\'s decoder in place; its own thread otherwise', () => {
  assert.equal(autoPlacement(true, true), true);
  // A library user's process that loaded kafkajs first: kafkajs's own decoder costs more than the thread.
  assert.equal(autoPlacement(true, false), false);
  assert.equal(autoPlacement(false, true), availableParallelism() === 1);
});

type Cfg = Record<string, unknown>;

/**
 * 12,000 events of `seed` in a topic of one partition (with more, which events come
 * late depends on how far each partition was read); one uninterrupted run of `weir`
 * with `reference(config)`, its stderr matching `refSays`; then runs with
 * `crashed(config)`, killed as `plan` says until one finishes (at least `killed` of them
 * killed), each saying `says`. Their final results (never above the reference's on the
 * way) and dead letters are the uninterrupted run's. Returns the crashed runs' exits.
 */
async function recoversExactly(o: { seed: number; name: string; reference: (c: Cfg, dir: string) => Cfg; refSays: RegExp; crashed: (c: Cfg, dir: string) => Cfg; says: RegExp; plan: CrashStep[]; killed: number }): Promise<Exit[]> {
  const events = generateLines(12_000, { seed: o.seed, eventsPerSecond: 40, outOfOrderMs: 5000, lateFraction: 0.01, invalidFraction: 0.005, users: 60 });
  const topic = unique(`weir-${o.name}-crash`);
  await createTopic(topic, 1);
  await produce(topic, events.map((value) => ({ value })));
  const refDir = mkdtempSync(join(tmpdir(), 'weir-ref-'));
  const ref = await spawnWeir(writeConfig(refDir, o.reference(kafkaRunConfig(refDir, topic, unique('ref')), refDir))).exit;
  assert.equal(ref.code, 0, ref.stderr.slice(-2000));
  assert.match(ref.stderr, o.refSays);
  const want = finalResults(readLines<WindowResult>(join(refDir, 'results.jsonl')));
  assert.ok(want.size > 100, `reference has ${want.size} windows`);

  const dir = mkdtempSync(join(tmpdir(), `weir-${o.name}-`));
  const exits = await runThroughCrashes(writeConfig(dir, o.crashed(kafkaRunConfig(dir, topic, unique(o.name)), dir)), o.plan, 20);
  for (const e of exits) assert.match(e.stderr, o.says);
  assert.ok(exits.length > o.killed, `only ${exits.length - 1} runs were killed`);
  const results = readLines<WindowResult>(join(dir, 'results.jsonl'));
  assertSameFinals(finalResults(results), want, `${o.name}, after crashes`);
  assertNeverHigher(results, want, `${o.name}, after crashes`);
  assert.deepEqual(deadLetterSet(readLines<DeadLetter>(join(dir, 'dlq.jsonl'))), deadLetterSet(readLines<DeadLetter>(join(refDir, 'dlq.jsonl'))));
  return exits;
}

test('consumerThread main: kill -9 inside checkpoints and at random moments, and the restarted runs give the uninterrupted results', async () => {
  await recoversExactly({
    seed: 11,
    name: 'main',
    // The reference: its consumer on a thread of its own.
    reference: (c) => ({ ...c, source: { ...(c['source'] as object), consumerThread: 'own' } }),
    refSays: /kafka consumer of topic \S+ on a thread of its own/,
    crashed: (c, dir) => ({
      ...c,
      source: { ...(c['source'] as object), consumerThread: 'main', maxBytesPerPartition: 8192 },
      checkpoint: { dir: join(dir, 'checkpoints'), intervalMs: 20, retain: 3 },
    }),
    says: /kafka consumer of topic \S+ on the main thread/,
    plan: [{ fault: 'state-written:2' }, { fault: 'metadata-written:2' }, { killAfterMs: 50 }, { killAfterMs: 150 }],
    killed: 2,
  });
});

test('backgroundThreads auto: on the main thread for a bounded read whose consumer is there; on threads of their own otherwise', () => {
  const cfgOf = (bounded: boolean, backgroundThreads: 'auto' | 'own' | 'main' = 'auto') =>
    validateConfig({ source: sourceConfig('t', 'g', { bounded }), aggregations: [{ name: 'a', value: 'v', window: { type: 'tumbling', sizeMs: 1000 } }], processing: { backgroundThreads } });
  const sourceOn = (consumerThread: 'own' | 'main'): KafkaSource => new KafkaSource(sourceConfig('t', 'g', { consumerThread }), { batchSize: 64 });
  const main = sourceOn('main'), own = sourceOn('own');
  assert.equal(backgroundHere(cfgOf(true), main), true);
  assert.equal(backgroundHere(cfgOf(false), main), false, 'unbounded: a checkpoint\'s work stays off the loop');
  assert.equal(backgroundHere(cfgOf(true), own), false, 'a consumer thread: there are cores for threads');
  assert.equal(backgroundHere(cfgOf(true, 'own'), main), false);
  assert.equal(backgroundHere(cfgOf(false, 'main'), own), true);
});

test('backgroundThreads main: the state backend and the changelog on the main thread; kill -9 inside checkpoints and at random moments, and the restarted runs give the uninterrupted results', async () => {
  const exits = await recoversExactly({
    seed: 23,
    name: 'here',
    // The reference: with the threads.
    reference: (c) => ({ ...c, processing: { ...(c['processing'] as object), backgroundThreads: 'own' } }),
    refSays: /state backend and changelog on threads of their own/,
    crashed: (c, dir) => ({
      ...c,
      source: { ...(c['source'] as object), maxBytesPerPartition: 8192 },
      checkpoint: { dir: join(dir, 'checkpoints'), intervalMs: 20, retain: 3 },
      processing: { ...(c['processing'] as object), backgroundThreads: 'main' },
    }),
    says: /state backend and changelog on the main thread/,
    // Inside a checkpoint (the local cache written, the changelog's transaction committed,
    // the metadata written), then at random moments; early in each run: the rest of the
    // input is read in well under a second.
    plan: [{ fault: 'changelog-committed:2' }, { fault: 'state-written:1' }, { fault: 'metadata-written:1' }, { killAfterMs: 50 }, { killAfterMs: 150 }],
    killed: 3,
  });
  // Restarts restored from the changelog (and the local cache) on the main thread.
  assert.ok(exits.slice(1).some((e) => /restored from/.test(e.stderr)), 'a restart restored state');
});
