// State that follows its partition: instances of one group take partitions over from
// each other through the changelog topic, against the real broker, and the results
// are those of one uninterrupted instance.
//
// The input is a live stream: events are produced as the test runs, their event time
// advancing with the wall clock, and the instances read it unbounded (so a partition
// taken over seconds later is seconds behind, well within maxOutOfOrdernessMs). Once
// the stream ends and the group has caught up, the instances are stopped (SIGTERM: a
// last checkpoint) and one more instance, in an empty directory, reads the topic
// bounded: it restores every partition from the changelog, reads nothing again, and
// its end fires the windows still open. Everything the instances wrote, together, must
// give the results of one bounded run over the whole topic.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Kafka, logLevel } from 'kafkajs';
import type { WindowResult } from '../../src/pipeline/types';
import { BROKERS, createTopic, unique } from './helpers/kafka';
import { BY_MODEL_REGION, assertNeverHigher, assertSameFinals, finalResults, fullestResults, kafkaRunConfig, keyedEvents, readLines, sleep, spawnWeir, writeConfig, type Exit } from './helpers/weir';

const RATE = 2000;
const client = new Kafka({ brokers: BROKERS, logLevel: logLevel.NOTHING });

/** A topic and the events it will hold: event time advancing one second per RATE events. */
async function liveTopic(partitions: number, seconds: number): Promise<{ topic: string; events: Array<{ key: string; value: string }> }> {
  const topic = unique('weir-changelog');
  await createTopic(topic, partitions);
  return { topic, events: keyedEvents(RATE * seconds, RATE) };
}

/** Produces `events` at RATE per second of wall clock, in sends every 50 ms. */
async function producePaced(topic: string, events: ReadonlyArray<{ key: string; value: string }>): Promise<void> {
  const producer = client.producer();
  await producer.connect();
  try {
    const t0 = Date.now();
    for (let i = 0; i < events.length; ) {
      const due = Math.min(events.length, Math.ceil(((Date.now() - t0) / 1000) * RATE));
      if (due > i) await producer.send({ topic, acks: -1, messages: events.slice(i, due) });
      i = Math.max(i, due);
      await sleep(50);
    }
  } finally {
    await producer.disconnect();
  }
}

/** Waits until the group's committed offsets reach the end of every partition. */
async function caughtUp(group: string, topic: string, ms = 60_000): Promise<void> {
  const admin = client.admin();
  await admin.connect();
  try {
    const ends = new Map((await admin.fetchTopicOffsets(topic)).map((o) => [o.partition, BigInt(o.high)]));
    for (const until = Date.now() + ms; ; await sleep(100)) {
      const c = await committedOffsets(group, topic);
      if ([...ends].every(([p, end]) => (c.get(p) ?? -1n) >= end)) return;
      assert.ok(Date.now() < until, `the group did not catch up: committed ${JSON.stringify([...c].map(([p, o]) => [p, String(o)]))}, ends ${JSON.stringify([...ends].map(([p, o]) => [p, String(o)]))}`);
    }
  } finally {
    await admin.disconnect();
  }
}

/**
 * Stops the instances still running (SIGTERM), then runs one more, bounded, in an empty
 * directory: it must restore every partition from the changelog and read nothing
 * before the committed offsets. Returns the results of every instance, that one's included.
 */
async function finish(topic: string, group: string, running: ReadonlyArray<ReturnType<typeof start>>, dirs: readonly string[]): Promise<WindowResult[]> {
  await caughtUp(group, topic);
  for (const r of running) r.child.kill('SIGTERM');
  for (const r of running) {
    const e = await r.exit;
    assert.equal(e.code, 0, `a stopped instance: ${e.stderr.slice(-3000)}`);
    assert.doesNotMatch(e.stderr, EARLIEST);
  }
  const last = mkdtempSync(join(tmpdir(), 'weir-last-'));
  const e = await spawnWeir(instanceConfig(last, topic, group, 'last')).exit;
  assert.equal(e.code, 0, e.stderr.slice(-3000));
  const restored = restores(e.stderr);
  assert.equal(new Set(restored.map((r) => r.partition)).size, 4, `the last instance restored ${restored.length} partitions:\n${e.stderr.slice(-3000)}`);
  assert.doesNotMatch(e.stderr, EARLIEST);
  return [...dirs, last].flatMap((d) => readLines<WindowResult>(join(d, 'results.jsonl')));
}

/** One instance's config: checkpoints every 100 ms; unbounded unless `bounded`. */
function instanceConfig(dir: string, topic: string, group: string, instanceId: string, bounded = true): string {
  const base = kafkaRunConfig(dir, topic, group, { aggregations: BY_MODEL_REGION });
  return writeConfig(dir, { ...base, source: { ...(base['source'] as object), bounded }, processing: { batchSize: 256, instanceId } });
}

/** A running instance whose stderr can be waited on. */
function start(configFile: string): { child: ReturnType<typeof spawnWeir>['child']; exit: Promise<Exit>; err: () => string; waitFor: (re: RegExp, ms?: number, from?: number) => Promise<RegExpExecArray> } {
  const run = spawnWeir(configFile);
  let text = '';
  run.child.stderr!.on('data', (d: Buffer) => (text += d.toString()));
  let done = false;
  void run.exit.then(() => (done = true));
  const waitFor = async (re: RegExp, ms = 60_000, from = 0): Promise<RegExpExecArray> => {
    const until = Date.now() + ms;
    for (;;) {
      const m = re.exec(text.slice(from));
      if (m !== null) return m;
      if (done || Date.now() > until) throw new Error(`no ${re} in the instance's log${done ? ' (it exited)' : ''}:\n${text.slice(-3000)}`);
      await sleep(50);
    }
  };
  return { ...run, err: () => text, waitFor };
}

/** One bounded run over the whole topic, in a group of its own. */
async function reference(topic: string): Promise<Map<string, WindowResult>> {
  const dir = mkdtempSync(join(tmpdir(), 'weir-ref-'));
  const e = await spawnWeir(instanceConfig(dir, topic, unique('ref'), 'ref')).exit;
  assert.equal(e.code, 0, e.stderr.slice(-2000));
  return finalResults(readLines<WindowResult>(join(dir, 'results.jsonl')));
}

async function committedOffsets(group: string, topic: string): Promise<Map<number, bigint>> {
  const admin = client.admin();
  await admin.connect();
  try {
    const [t] = await admin.fetchOffsets({ groupId: group, topics: [topic] });
    return new Map(t!.partitions.map((p) => [p.partition, BigInt(p.offset)]));
  } finally {
    await admin.disconnect();
  }
}

/** Partitions restored from the changelog in `text`, with the offset each was read from. */
function restores(text: string): Array<{ partition: number; offset: bigint }> {
  return [...text.matchAll(/partition (\d+) restored from [^\n]*? reading from offset (\d+)/g)].map((m) => ({ partition: Number(m[1]), offset: BigInt(m[2]!) }));
}

const EARLIEST = /reading it from its earliest offset/;

test('two instances, one killed and not restarted: the other restores its partitions from the changelog, reads on from their committed offsets, and the results are exact', async () => {
  const { topic, events } = await liveTopic(4, 12);
  const group = unique('takeover');
  const dirs = [mkdtempSync(join(tmpdir(), 'weir-a-')), mkdtempSync(join(tmpdir(), 'weir-b-'))];
  const [a, b] = dirs.map((d, i) => start(instanceConfig(d, topic, group, `instance-${i}`, false))) as [ReturnType<typeof start>, ReturnType<typeof start>];
  const producing = producePaced(topic, events);
  // Both hold partitions and have committed checkpoints; then one dies.
  await Promise.all([a.waitFor(/checkpoint [3-9]\d* done/), b.waitFor(/checkpoint [3-9]\d* done/)]);
  await sleep(2000);
  a.child.kill('SIGKILL');
  const killed = await a.exit;
  assert.equal(killed.signal, 'SIGKILL', killed.stderr.slice(-3000));
  const committed = await committedOffsets(group, topic);
  const mark = b.err().length;
  // The survivor takes the dead one's partitions over from the changelog, at the offsets their last transactions committed.
  await b.waitFor(/partition \d+ restored from/, 60_000, mark);
  await sleep(200);
  const taken = restores(b.err().slice(mark));
  assert.ok(taken.length > 0, `no partition was taken over:\n${b.err().slice(mark, mark + 3000)}`);
  for (const { partition, offset } of taken) {
    assert.ok(offset > 0n, `partition ${partition} read from offset 0`);
    assert.equal(offset, committed.get(partition), `partition ${partition}: read from ${offset}, its last committed checkpoint was at ${committed.get(partition)}`);
  }
  await producing;
  const all = await finish(topic, group, [b], dirs);
  const want = await reference(topic);
  assert.ok(want.size > 100, `${want.size} windows`);
  assertSameFinals(fullestResults(all), want, 'takeover');
  assertNeverHigher(all, want, 'takeover');
});

test('a rolling restart of three instances: no partition is read from its earliest offset again, and the results are exact', async () => {
  const { topic, events } = await liveTopic(4, 16);
  const group = unique('rolling');
  const dirs = [0, 1, 2].map((i) => mkdtempSync(join(tmpdir(), `weir-roll-${i}-`)));
  const configs = dirs.map((d, i) => instanceConfig(d, topic, group, `instance-${i}`, false));
  const runs = configs.map((c) => start(c));
  const producing = producePaced(topic, events);
  // Every partition has a committed checkpoint before the first restart.
  for (let until = Date.now() + 60_000; ; await sleep(100)) {
    const c = await committedOffsets(group, topic);
    if ([0, 1, 2, 3].every((p) => (c.get(p) ?? -1n) > 0n)) break;
    assert.ok(Date.now() < until, 'not every partition committed a checkpoint');
  }
  const logs: string[] = [];
  for (let i = 0; i < 3; i++) {
    runs[i]!.child.kill('SIGKILL');
    const e = await runs[i]!.exit;
    assert.equal(e.signal, 'SIGKILL', `instance ${i} ended before it was killed: ${e.stderr.slice(-3000)}`);
    logs.push(e.stderr);
    runs[i] = start(configs[i]!);
    // It is back in the group (holding partitions again, restored) before the next one goes.
    await runs[i]!.waitFor(/partition \d+ restored from/);
    await sleep(1000);
  }
  await producing;
  const all = await finish(topic, group, runs, dirs);
  for (const log of [...logs, ...runs.map((r) => r.err())]) assert.doesNotMatch(log, EARLIEST);
  const want = await reference(topic);
  assertSameFinals(fullestResults(all), want, 'rolling restart');
  assertNeverHigher(all, want, 'rolling restart');
});

test('a zombie (stopped past the session timeout, then resumed after its partitions moved) is fenced and exits, saying why', async () => {
  const { topic, events } = await liveTopic(4, 12);
  const group = unique('zombie');
  const dirs = [mkdtempSync(join(tmpdir(), 'weir-z-')), mkdtempSync(join(tmpdir(), 'weir-live-'))];
  const [zombie, live] = dirs.map((d, i) => start(instanceConfig(d, topic, group, `instance-${i}`, false))) as [ReturnType<typeof start>, ReturnType<typeof start>];
  const producing = producePaced(topic, events);
  await Promise.all([zombie.waitFor(/checkpoint [3-9]\d* done/), live.waitFor(/checkpoint [3-9]\d* done/)]);
  await sleep(1000);
  const mark = live.err().length;
  zombie.child.kill('SIGSTOP');
  try {
    // The group drops it after sessionTimeoutMs (2 s); the other instance restores its partitions.
    await live.waitFor(/partition \d+ restored from/, 60_000, mark);
    await sleep(500);
  } finally {
    zombie.child.kill('SIGCONT');
  }
  const z = await zombie.exit;
  assert.notEqual(z.code, 0, `the zombie exited ${z.code}:\n${z.stderr.slice(-3000)}`);
  assert.match(z.stderr, /taken over by another instance/);
  await producing;
  // Nothing the zombie did after it was fenced counts: what it committed before is in the changelog, the rest was aborted.
  const all = await finish(topic, group, [live], dirs);
  const want = await reference(topic);
  assertSameFinals(fullestResults(all), want, 'zombie');
  assertNeverHigher(all, want, 'zombie');
});
