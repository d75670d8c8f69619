// Exactly-once results to Kafka: `weir run` with an `exactlyOnce` Kafka sink is killed
// with SIGKILL again and again (at random moments and at each step of a checkpoint) and
// restarted; a read_committed consumer of the result topic must then see every window's
// result exactly once, equal to an uninterrupted run's.
// First: kafkajs's own READ_COMMITTED filter hands out aborted records of interleaved
// transactions (src/kafkajs-aborted.ts), and this topic has them: one producer per input partition.
import '../../src/kafkajs-aborted';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Kafka, logLevel } from 'kafkajs';
import type { WindowResult } from '../../src/pipeline/types';
import { BROKERS, createTopic, produce, unique } from './helpers/kafka';
import { BY_MODEL_REGION, assertSameFinals, finalResults, kafkaRunConfig, keyedEvents, readLines, sleep, spawnWeir, windowId, writeConfig } from './helpers/weir';

const client = new Kafka({ brokers: BROKERS, logLevel: logLevel.NOTHING });

/**
 * Every committed message of `topic`, read until none has come for `quietMs`, with
 * where it is. A consumer group may hand a message out again (after a rebalance, before
 * its commit): that is the reader's at-least-once, not a second copy in the topic, so
 * each position counts once.
 */
async function readCommitted(topic: string, quietMs = 3000): Promise<Array<{ at: string; r: WindowResult }>> {
  const consumer = client.consumer({ groupId: unique('eos-reader'), readUncommitted: false });
  await consumer.connect();
  const out = new Map<string, WindowResult>();
  let last = Date.now();
  try {
    await consumer.subscribe({ topic, fromBeginning: true });
    await consumer.run({
      eachMessage: async ({ partition, message }) => {
        out.set(`${partition}@${message.offset}`, JSON.parse(message.value!.toString('utf8')) as WindowResult);
        last = Date.now();
      },
    });
    while (Date.now() - last < quietMs) await sleep(200);
  } finally {
    await consumer.disconnect();
  }
  return [...out].map(([at, r]) => ({ at, r }));
}

test('exactlyOnce: 20+ kills while results are written, and a read_committed consumer sees each window exactly once, as an uninterrupted run', async () => {
  const topic = unique('weir-eos-in');
  await createTopic(topic, 2);
  const out = unique('weir-eos-out');
  await createTopic(out, 2);
  const events = keyedEvents(600_000);

  // The input flows while instances are killed: a chunk of it before each run, which
  // reads it live (unbounded) until it is killed, at a random moment or at a step of a
  // checkpoint. With the input all there at once, the first few runs would read most of
  // it and the rest would be killed with nothing left to do. The last run is bounded:
  // it reads to the end of the input and finishes.
  const dir = mkdtempSync(join(tmpdir(), 'weir-eos-'));
  const groupId = unique('eos');
  const sinks = [{ type: 'kafka', topic: out, exactlyOnce: true }];
  const cfg = kafkaRunConfig(dir, topic, groupId, { aggregations: BY_MODEL_REGION, sinks });
  const bounded = writeConfig(dir, cfg);
  const live = join(dir, 'live.json');
  writeFileSync(live, JSON.stringify({ ...cfg, source: { ...(cfg['source'] as object), bounded: false } }));
  const faults = ['barrier-taken:2', 'state-written:2', 'sinks-flushed:2', 'changelog-committed:2', 'changelog-committed:5', 'metadata-written:3'];
  const CHUNKS = 26;
  const chunk = Math.ceil(events.length / CHUNKS);
  let produced = 0;
  let kills = 0;
  // When each run went, and how it ended: a window seen twice names the runs that wrote it.
  const runs: Array<{ from: number; to: number; how: string }> = [];
  for (let attempt = 0; produced < events.length; attempt++) {
    await produce(topic, events.slice(produced, produced + chunk));
    produced += chunk;
    const fault = faults[attempt];
    const run = spawnWeir(live, fault === undefined ? {} : { WEIR_FAULT: fault });
    let err = '';
    run.child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
    const started = Date.now();
    if (fault === undefined) {
      // A random moment once it has committed a checkpoint of what it read (the first
      // one, right after the restore, covers nothing new).
      while ((err.match(/checkpoint \d+ done/g) ?? []).length < 2 && Date.now() - started < 30_000 && run.child.exitCode === null && run.child.signalCode === null) await sleep(20);
      await sleep(Math.floor(Math.random() * 200));
    } else {
      // Until the fault kills it; one that has not reached it by then is killed here.
      await Promise.race([run.exit, sleep(30_000)]);
    }
    run.child.kill('SIGKILL');
    const e = await run.exit;
    runs.push({ from: started, to: Date.now(), how: fault ?? 'killed at a random moment' });
    assert.equal(e.signal, 'SIGKILL', `a live run ended by itself (${fault ?? 'no fault'}): ${e.stderr.slice(-3000)}`);
    kills++;
  }
  assert.ok(kills >= 20, `${kills} kills`);
  const lastFrom = Date.now();
  const last = await spawnWeir(bounded).exit;
  runs.push({ from: lastFrom, to: Date.now(), how: 'the last, bounded' });
  assert.equal(last.code, 0, last.stderr.slice(-3000));

  // The uninterrupted run over the same input, to a file (no window fires twice in this data).
  const refDir = mkdtempSync(join(tmpdir(), 'weir-eos-ref-'));
  const ref = await spawnWeir(writeConfig(refDir, kafkaRunConfig(refDir, topic, unique('ref'), { aggregations: BY_MODEL_REGION }))).exit;
  assert.equal(ref.code, 0, ref.stderr.slice(-2000));
  const refResults = readLines<WindowResult>(join(refDir, 'results.jsonl'));
  const want = finalResults(refResults);
  assert.equal(refResults.length, want.size, 'the reference fired a window twice');

  const read = await readCommitted(out);
  const copies = new Map<string, Array<{ at: string; r: WindowResult }>>();
  for (const x of read) copies.set(windowId(x.r), [...(copies.get(windowId(x.r)) ?? []), x]);
  const twice = [...copies].filter(([, xs]) => xs.length > 1);
  // Each copy whole (count, late flag, emittedAt): a second copy equal to the first is a
  // result written twice; a different one is a window that fired again.
  const runOf = (t: number): string => {
    const i = runs.findIndex((x) => t >= x.from && t <= x.to);
    return i < 0 ? 'no run' : `run ${i + 1} (${runs[i]!.how})`;
  };
  const show = ([w, xs]: [string, Array<{ at: string; r: WindowResult }>]): string =>
    `${w}: ${xs.map((x) => `at ${x.at} by ${runOf(x.r.emittedAt)} ${JSON.stringify({ count: x.r.results.count, late: x.r.late, emittedAt: x.r.emittedAt })}`).join(', ')}`;
  assert.equal(twice.length, 0, `${twice.length} windows more than once, e.g. ${twice.slice(0, 5).map(show).join('; ')}`);
  const got = read.map((x) => x.r);
  assertSameFinals(finalResults(got), want, `exactly once after ${kills} kills`);
});

test('exactlyOnce: a local cache written while another partition held W back restores the windows that had fired as fired', async () => {
  // Every event is in partition 0; partition 1 never gets one. A restarted instance's W
  // stays where partition 1 holds it (at the start) until that partition idles, while
  // partition 0's windows that had fired stay fired by its own W. A local checkpoint
  // written then, restored with nothing after it in the changelog, must say so too:
  // restored with the instance's W instead, those windows fire again, and each is a
  // second copy on the result topic.
  const topic = unique('weir-eos-floor-in');
  await createTopic(topic, 2);
  const out = unique('weir-eos-floor-out');
  await createTopic(out, 1);
  const events = keyedEvents(3000).map((m) => ({ ...m, partition: 0 }));
  await produce(topic, events.slice(0, 1500));
  const dir = mkdtempSync(join(tmpdir(), 'weir-eos-floor-'));
  const base = kafkaRunConfig(dir, topic, unique('eos-floor'), { aggregations: BY_MODEL_REGION, sinks: [{ type: 'kafka', topic: out, exactlyOnce: true }] });
  // Fired windows stay in the state (nothing is purged before the end of the input).
  base['eventTime'] = { maxOutOfOrdernessMs: 10_000, allowedLatenessMs: 3_600_000 };
  // A run writes its local cache at its first checkpoint only: a restart restores from
  // that plus the changelog, whose last record of each partition carries its own W.
  base['changelog'] = { cacheIntervalMs: 600_000 };
  const live = join(dir, 'live.json');
  writeFileSync(live, JSON.stringify({ ...base, source: { ...(base['source'] as object), bounded: false, idleTimeoutMs: 1000 } }));
  const bounded = writeConfig(dir, base);

  // 1. Partition 1 idles, then partition 0 sends more: W moves on, windows of partition 0 fire and commit.
  const first = spawnWeir(live);
  let err = '';
  first.child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  const started = Date.now();
  const done = (): number => (err.match(/checkpoint \d+ done/g) ?? []).length;
  while (done() < 1 && Date.now() - started < 30_000) await sleep(50);
  await sleep(1500);
  await produce(topic, events.slice(1500));
  const now = done();
  while (done() < now + 2 && Date.now() - started < 30_000) await sleep(50);
  first.child.kill('SIGKILL');
  assert.equal((await first.exit).signal, 'SIGKILL', err.slice(-3000));
  const fired = await readCommitted(out, 1500);
  assert.ok(fired.length > 0, 'no window fired before the first kill: the test proves nothing');

  // 2. Restored; its first checkpoint (a local one) is taken before partition 1 idles. Killed right after it.
  const second = await spawnWeir(live, { WEIR_FAULT: 'metadata-written:1' }).exit;
  assert.equal(second.signal, 'SIGKILL', second.stderr.slice(-3000));
  assert.match(second.stderr, /partition 0 restored/);

  // 3. Restored from that local checkpoint, to the end of the input.
  const last = await spawnWeir(bounded).exit;
  assert.equal(last.code, 0, last.stderr.slice(-3000));
  assert.match(last.stderr, /partition 0 restored from checkpoint \d+ \(local cache\) and 0 changelog records/);
  assert.match(last.stderr, /partition 1 restored from checkpoint \d+ \(local cache\) and 0 changelog records from offset \d+ \(0 windows\)/);

  const read = await readCommitted(out);
  const copies = new Map<string, number>();
  for (const x of read) copies.set(windowId(x.r), (copies.get(windowId(x.r)) ?? 0) + 1);
  const twice = [...copies].filter(([, n]) => n > 1).map(([w]) => w);
  assert.equal(twice.length, 0, `${twice.length} of ${copies.size} windows on the result topic more than once (${fired.length} had fired before the first kill), e.g. ${twice.slice(0, 3).join('; ')}`);

  const refDir = mkdtempSync(join(tmpdir(), 'weir-eos-floor-ref-'));
  const ref = await spawnWeir(writeConfig(refDir, kafkaRunConfig(refDir, topic, unique('ref'), { aggregations: BY_MODEL_REGION }))).exit;
  assert.equal(ref.code, 0, ref.stderr.slice(-2000));
  assertSameFinals(finalResults(read.map((x) => x.r)), finalResults(readLines<WindowResult>(join(refDir, 'results.jsonl'))), 'after two restarts');
});
