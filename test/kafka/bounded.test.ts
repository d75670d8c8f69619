// The end of a bounded read when other members of the group hold partitions: a run
// that owns none (or has read its own) finishes only once every partition of the
// topic is read to its end, by itself or, as the group's committed offsets show, by
// another member.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { generateLines } from '../../src/sources/eventgen';
import type { WindowResult } from '../../src/pipeline/types';
import { Kafka, logLevel } from 'kafkajs';
import { KafkaSource } from '../../src/sources/kafka';
import { BROKERS, FAST, Reader, createTopic, produce, sourceConfig, unique } from './helpers/kafka';
import { assertSameFinals, dropSuperseded, finalResults, kafkaRunConfig, readLines, sleep, spawnWeir, writeConfig, type Exit } from './helpers/weir';

const HOLDER = join(__dirname, 'helpers', 'holder.js');
const PARTITIONS = 4;

/** Events keyed by model and region (so every aggregation's key lives on one partition). */
async function topicWithEvents(count: number): Promise<string> {
  const topic = unique('weir-bounded');
  await createTopic(topic, PARTITIONS);
  const events = generateLines(count, { seed: 5, eventsPerSecond: 20, outOfOrderMs: 5000, invalidFraction: 0.002 }).map((value) => {
    const m = /"model":"([^"]*)","region":"([^"]*)"/.exec(value);
    return { key: m === null ? 'none' : `${m[1]}:${m[2]}`, value };
  });
  await produce(topic, events);
  return topic;
}

/** Every aggregation keyed by model and region, the key the topic is partitioned by. */
const BY_MODEL_REGION = [
  { name: 'latency_metrics', groupBy: ['data.model', 'data.region'], value: 'data.latency_ms', window: { type: 'tumbling', sizeMs: 60_000 } },
  { name: 'cost_sessions', groupBy: ['data.model', 'data.region'], value: 'data.cost', window: { type: 'session', gapMs: 2_000 } },
];

function runConfig(dir: string, topic: string, group: string): string {
  return writeConfig(dir, kafkaRunConfig(dir, topic, group, { aggregations: BY_MODEL_REGION }));
}

/** The final results of a run of the topic alone in a group of its own. */
async function reference(topic: string): Promise<Map<string, WindowResult>> {
  const dir = mkdtempSync(join(tmpdir(), 'weir-bounded-ref-'));
  const e = await spawnWeir(runConfig(dir, topic, unique('ref'))).exit;
  assert.equal(e.code, 0, e.stderr.slice(-2000));
  const want = finalResults(readLines<WindowResult>(join(dir, 'results.jsonl')));
  assert.ok(want.size > 100, `${want.size} windows`);
  return want;
}

/** The other member (helpers/holder.ts), once it holds every partition. */
async function startHolder(topic: string, group: string, sessionTimeoutMs: number, commitEnds = false): Promise<{ child: ChildProcess; out: () => string; exited: Promise<void> }> {
  const child = spawn(process.execPath, [HOLDER, topic, group, String(sessionTimeoutMs), ...(commitEnds ? ['commit-ends'] : [])], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<void>((res) => child.on('exit', () => res()));
  const all = `joined ${JSON.stringify([...Array(PARTITIONS).keys()])}`;
  for (let i = 0; i < 300 && !(out.includes(all) && (!commitEnds || out.includes('committed'))); i++) {
    if (child.exitCode !== null) break;
    await sleep(100);
  }
  assert.ok(out.includes(all), `the other member did not take every partition: ${out}`);
  if (commitEnds) assert.ok(out.includes('committed'), `the other member did not commit the end offsets: ${out}`);
  return { child, out: () => out, exited };
}

/** Waits until the run's log says it waits for the other member's partitions; fails if it ends first. */
async function untilWaiting(run: { child: ChildProcess; exit: Promise<Exit> }, stderr: () => string): Promise<void> {
  let exit: Exit | undefined;
  void run.exit.then((e) => (exit = e));
  for (let i = 0; i < 300 && exit === undefined && !/bounded read waits for partitions 0, 1, 2, 3/.test(stderr()); i++) await sleep(100);
  assert.equal(exit, undefined, `the run ended while another member held every partition: ${exit?.stderr.slice(-1500)}`);
  assert.match(stderr(), /this instance holds no partition of it/);
}

/** The partitions of the other member's last group join. */
function lastJoin(out: string): string | undefined {
  return [...out.matchAll(/joined (\[[0-9,]*\])/g)].at(-1)?.[1];
}

function stderrOf(child: ChildProcess): () => string {
  let s = '';
  child.stderr!.on('data', (d: Buffer) => (s += d.toString()));
  return () => s;
}

test('bounded, another member holds every partition and commits nothing: the run waits, and reads everything once that member leaves', async () => {
  const topic = await topicWithEvents(8000);
  const want = await reference(topic);
  const group = unique('held');
  const holder = await startHolder(topic, group, 6000);
  const dir = mkdtempSync(join(tmpdir(), 'weir-bounded-held-'));
  const run = spawnWeir(runConfig(dir, topic, group));
  const stderr = stderrOf(run.child);
  try {
    await untilWaiting(run, stderr);
    // The run holds nothing and has written nothing; still waiting a few lookups later.
    assert.equal(lastJoin(holder.out()), '[0,1,2,3]', `the other member lost partitions: ${holder.out()}`);
    await sleep(3000);
    assert.equal(run.child.exitCode, null, 'the run ended while another member held every partition');
    assert.equal(readLines(join(dir, 'results.jsonl')).length, 0);
  } finally {
    holder.child.kill('SIGTERM');
  }
  await holder.exited;
  const e = await run.exit;
  assert.equal(e.code, 0, e.stderr.slice(-2000));
  const finished = /"records":(\d+)[^\n]*"run finished"/.exec(e.stderr);
  assert.ok(finished !== null && Number(finished[1]) === 8000, `run finished with ${finished?.[1]} records`);
  assertSameFinals(finalResults(readLines<WindowResult>(join(dir, 'results.jsonl'))), want, 'after the other member left');
});

test('bounded, a killed member holds every partition: the run reads everything once that member\'s session times out', async () => {
  const topic = await topicWithEvents(4000);
  const want = await reference(topic);
  const group = unique('killed');
  const holder = await startHolder(topic, group, 3000);
  const dir = mkdtempSync(join(tmpdir(), 'weir-bounded-killed-'));
  const run = spawnWeir(runConfig(dir, topic, group));
  const stderr = stderrOf(run.child);
  try {
    await untilWaiting(run, stderr);
  } finally {
    // No leave-group request: the broker drops it after its session timeout.
    holder.child.kill('SIGKILL');
  }
  await holder.exited;
  const e = await run.exit;
  assert.equal(e.code, 0, e.stderr.slice(-2000));
  const finished = /"records":(\d+)[^\n]*"run finished"/.exec(e.stderr);
  assert.ok(finished !== null && Number(finished[1]) === 4000, `run finished with ${finished?.[1]} records`);
  assertSameFinals(finalResults(readLines<WindowResult>(join(dir, 'results.jsonl'))), want, 'after the killed member\'s session timed out');
});

test('bounded, another member has committed every partition at its end: a run without partitions finishes at once and says why', async () => {
  const topic = await topicWithEvents(2000);
  const group = unique('done');
  const holder = await startHolder(topic, group, 6000, true);
  try {
    const dir = mkdtempSync(join(tmpdir(), 'weir-bounded-done-'));
    const t0 = performance.now();
    const e = await spawnWeir(runConfig(dir, topic, group)).exit;
    const ms = performance.now() - t0;
    assert.equal(e.code, 0, e.stderr.slice(-2000));
    assert.match(e.stderr, /partitions 0, 1, 2, 3 of topic \S+ were read to their end by another member of group/);
    assert.doesNotMatch(e.stderr, /bounded read waits/, 'the first lookup already showed them done');
    assert.match(e.stderr, /"records":0[^\n]*"run finished"/);
    assert.ok(ms < 20_000, `took ${Math.round(ms)} ms`);
    assert.equal(lastJoin(holder.out()), '[0,1,2,3]', `the other member lost partitions: ${holder.out()}`);
  } finally {
    holder.child.kill('SIGTERM');
    await holder.exited;
  }
});

test('bounded, two instances with a checkpoint interval longer than the run: each commits its ends when its own partitions are read, and both finish soon after', async () => {
  const topic = await topicWithEvents(6000);
  const want = await reference(topic);
  const group = unique('pair');
  const dirs = [mkdtempSync(join(tmpdir(), 'weir-bounded-a-')), mkdtempSync(join(tmpdir(), 'weir-bounded-b-'))];
  const t0 = performance.now();
  const runs = dirs.map((d, i) => {
    const base = kafkaRunConfig(d, topic, group, { aggregations: BY_MODEL_REGION });
    return spawnWeir(writeConfig(d, { ...base, checkpoint: { dir: join(d, 'checkpoints'), intervalMs: 600_000, retain: 3 }, processing: { batchSize: 256, instanceId: `instance-${i}` } }));
  });
  const exits = await Promise.all(runs.map((r) => r.exit));
  const ms = performance.now() - t0;
  exits.forEach((e, i) => assert.equal(e.code, 0, `instance ${i}: ${e.stderr.slice(-2000)}`));
  // Without a checkpoint when its own partitions are read, each would wait for the
  // other's commits until the next interval.
  assert.ok(ms < 60_000, `took ${Math.round(ms)} ms`);
  // Per window, the fullest result either instance emitted (a partition re-read after a rebalance is emitted twice).
  const best = new Map<string, WindowResult>();
  for (const r of dirs.flatMap((d) => readLines<WindowResult>(join(d, 'results.jsonl')))) {
    const id = `${r.name}|${r.key}|${r.window.start}|${r.window.end}`;
    const b = best.get(id);
    if (b === undefined || r.results.count >= b.results.count) best.set(id, r);
  }
  assertSameFinals(dropSuperseded(best), want, 'two instances');
});

test('commit: an offset that covers every record read goes on past a transaction marker that ends the partition, to its end offset', async () => {
  const topic = unique('weir-bounded-txn');
  await createTopic(topic, 1);
  const kafka = new Kafka({ clientId: 'weir-test', brokers: BROKERS, logLevel: logLevel.NOTHING });
  const producer = kafka.producer({ transactionalId: unique('tx'), idempotent: true, maxInFlightRequests: 1 });
  await producer.connect();
  try {
    const tx = await producer.transaction();
    await tx.send({ topic, messages: Array.from({ length: 20 }, (_, i) => ({ value: `{"i":${i}}` })) });
    await tx.commit();
  } finally {
    await producer.disconnect();
  }
  const group = unique('g');
  const source = new KafkaSource(sourceConfig(topic, group), { batchSize: 8, consumer: FAST, tickIntervalMs: 100 });
  const r = new Reader(source, 8);
  const admin = kafka.admin();
  await admin.connect();
  try {
    await r.toEnd(20_000);
    const ends = await admin.fetchTopicOffsets(topic);
    const high = ends.find((o) => o.partition === 0)!.high;
    const last = Number(r.records.at(-1)!.offset);
    assert.equal(r.records.length, 20);
    assert.equal(Number(high), last + 2, 'the commit marker follows the last record');
    // What a checkpoint commits: the offset after the last record it processed.
    await source.commit([{ partition: 0, offset: String(last + 1) }]);
    const [committed] = await admin.fetchOffsets({ groupId: group, topics: [topic] });
    assert.equal(committed!.partitions.find((p) => p.partition === 0)!.offset, high);
    // One that does not cover every record read is committed as it is.
    await source.commit([{ partition: 0, offset: '5' }]);
    const [again] = await admin.fetchOffsets({ groupId: group, topics: [topic] });
    assert.equal(again!.partitions.find((p) => p.partition === 0)!.offset, '5');
  } finally {
    await admin.disconnect();
    await source.close();
  }
});
