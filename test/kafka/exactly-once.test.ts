// Exactly-once results to Kafka: `weir run` with an `exactlyOnce` Kafka sink is killed
// with SIGKILL again and again (at random moments and at each step of a checkpoint) and
// restarted; a read_committed consumer of the result topic must then see every window's
// result exactly once, equal to an uninterrupted run's.
// First: kafkajs's own READ_COMMITTED filter hands out aborted records of interleaved
// transactions (src/kafkajs-aborted.ts), and this topic has them: one producer per input partition.
import '../../src/kafkajs-aborted';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Kafka, logLevel } from 'kafkajs';
import type { WindowResult } from '../../src/pipeline/types';
import { BROKERS, createTopic, produce, unique } from './helpers/kafka';
import { BY_MODEL_REGION, assertSameFinals, finalResults, kafkaRunConfig, keyedEvents, readLines, sleep, spawnWeir, windowId, writeConfig } from './helpers/weir';

const client = new Kafka({ brokers: BROKERS, logLevel: logLevel.NOTHING });

/** Every committed message of `topic`, read until none has come for `quietMs`. */
async function readCommitted(topic: string, quietMs = 3000): Promise<WindowResult[]> {
  const consumer = client.consumer({ groupId: unique('eos-reader'), readUncommitted: false });
  await consumer.connect();
  const out: WindowResult[] = [];
  let last = Date.now();
  try {
    await consumer.subscribe({ topic, fromBeginning: true });
    await consumer.run({
      eachMessage: async ({ message }) => {
        out.push(JSON.parse(message.value!.toString('utf8')) as WindowResult);
        last = Date.now();
      },
    });
    while (Date.now() - last < quietMs) await sleep(200);
  } finally {
    await consumer.disconnect();
  }
  return out;
}

test('exactlyOnce: 20+ kills while results are written, and a read_committed consumer sees each window exactly once, as an uninterrupted run', async () => {
  const topic = unique('weir-eos-in');
  await createTopic(topic, 2);
  await produce(topic, keyedEvents(600_000));
  const out = unique('weir-eos-out');
  await createTopic(out, 2);

  // The uninterrupted run, to a file (no window fires twice in this data).
  const refDir = mkdtempSync(join(tmpdir(), 'weir-eos-ref-'));
  const ref = await spawnWeir(writeConfig(refDir, kafkaRunConfig(refDir, topic, unique('ref'), { aggregations: BY_MODEL_REGION }))).exit;
  assert.equal(ref.code, 0, ref.stderr.slice(-2000));
  const refResults = readLines<WindowResult>(join(refDir, 'results.jsonl'));
  const want = finalResults(refResults);
  assert.equal(refResults.length, want.size, 'the reference fired a window twice');

  const dir = mkdtempSync(join(tmpdir(), 'weir-eos-'));
  const cfg = writeConfig(dir, kafkaRunConfig(dir, topic, unique('eos'), { aggregations: BY_MODEL_REGION, sinks: [{ type: 'kafka', topic: out, exactlyOnce: true }] }));
  const faults = ['barrier-taken:2', 'state-written:2', 'sinks-flushed:2', 'changelog-committed:2', 'changelog-committed:5', 'metadata-written:3'];
  let kills = 0;
  for (let attempt = 0; ; attempt++) {
    assert.ok(attempt < 80, 'no run finished');
    const fault = faults[attempt];
    const run = spawnWeir(cfg, fault === undefined ? {} : { WEIR_FAULT: fault });
    let err = '';
    run.child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
    if (fault === undefined && kills < 20) {
      // A random moment once it is consuming (its first checkpoint is done).
      const started = Date.now();
      while (!/checkpoint \d+ done/.test(err) && Date.now() - started < 30_000 && run.child.exitCode === null) await sleep(20);
      await sleep(Math.floor(Math.random() * 150));
      run.child.kill('SIGKILL');
    }
    const e = await run.exit;
    if (e.signal === 'SIGKILL') {
      kills++;
      continue;
    }
    assert.equal(e.code, 0, e.stderr.slice(-3000));
    if (kills >= 20) break;
    // It finished before enough kills: the input is read; later runs have nothing to do.
    assert.fail(`the run finished after ${kills} kills: make the input larger`);
  }
  const got = await readCommitted(out);
  const seen = new Map<string, number>();
  for (const r of got) seen.set(windowId(r), (seen.get(windowId(r)) ?? 0) + 1);
  const twice = [...seen].filter(([, n]) => n > 1);
  assert.equal(twice.length, 0, `${twice.length} windows more than once, e.g. ${twice.slice(0, 3).map(([w, n]) => `${w} x${n}`).join(', ')}`);
  assertSameFinals(finalResults(got), want, `exactly once after ${kills} kills`);
});
