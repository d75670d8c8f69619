// Weir with more than one instance, and with a broker that restarts under it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Kafka, logLevel } from 'kafkajs';
import type { WindowResult } from '../../src/pipeline/types';
import { createTopic, produce, unique } from './helpers/kafka';
import { BY_MODEL_REGION, assertNeverHigher, assertSameFinals, finalResults, fullestResults, kafkaRunConfig, keyedEvents, readLines, sleep, spawnWeir, writeConfig } from './helpers/weir';

const SCRIPTS = join(__dirname, '..', '..', '..', 'scripts');

test('two instances in one group over a 4-partition topic give the results of one instance', async () => {
  const topic = unique('weir-two');
  await createTopic(topic, 4);
  await produce(topic, keyedEvents(20_000));
  const config = (dir: string, group: string, instanceId: string) => {
    const base = kafkaRunConfig(dir, topic, group, { aggregations: BY_MODEL_REGION });
    return writeConfig(dir, {
      ...base,
      // Nobody is killed here: a session longer than the helpers' 2 s, so that a member
      // starved of CPU for 2 s on a loaded machine is not dropped from the group (and,
      // fenced, stopped as it should be), which is not what this test is about.
      source: { ...(base['source'] as object), maxBytesPerPartition: 16_384, sessionTimeoutMs: 10_000 },
      processing: { batchSize: 256, instanceId },
    });
  };

  const one = mkdtempSync(join(tmpdir(), 'weir-one-'));
  const solo = await spawnWeir(config(one, unique('solo'), 'solo')).exit;
  assert.equal(solo.code, 0, solo.stderr.slice(-2000));
  const want = finalResults(readLines<WindowResult>(join(one, 'results.jsonl')));
  assert.ok(want.size > 300, `${want.size} windows`);

  const group = unique('pair');
  const dirs = [mkdtempSync(join(tmpdir(), 'weir-a-')), mkdtempSync(join(tmpdir(), 'weir-b-'))];
  const runs = dirs.map((d, i) => spawnWeir(config(d, group, `instance-${i}`)));
  const exits = await Promise.all(runs.map((r) => r.exit));
  exits.forEach((e, i) => assert.equal(e.code, 0, `instance ${i}: ${e.stderr.slice(-2000)}`));
  // Both took part: each wrote results, or took partitions over from the other by their
  // changelog (one that joins after the other read everything has nothing left to emit).
  const parts = dirs.map((d) => readLines<WindowResult>(join(d, 'results.jsonl')));
  parts.forEach((p, i) => assert.ok(p.length > 0 || /restored from the changelog/.test(exits[i]!.stderr), `instance ${i} took no part: ${exits[i]!.stderr.slice(-3000)}`));
  assert.ok(parts.some((p) => p.length > 0), 'no instance wrote results');

  const all = parts.flat();
  assertSameFinals(fullestResults(all), want, 'two instances');
  assertNeverHigher(all, want, 'two instances');
});

test('a broker restart in the middle of a run: the run completes with exact results', async () => {
  const port = 19092 + Math.floor(Math.random() * 500) * 2;
  const stateDir = mkdtempSync(join(tmpdir(), 'weir-broker-'));
  const env = { ...process.env, KAFKA_PORT: String(port), KAFKA_STATE_DIR: stateDir };
  const broker = (script: string) => {
    const r = spawnSync('bash', [join(SCRIPTS, script)], { env, encoding: 'utf8' });
    assert.equal(r.status, 0, `${script}: ${r.stderr}`);
  };
  broker('kafka-up.sh');
  try {
    const brokers = [`127.0.0.1:${port}`];
    const kafka = new Kafka({ clientId: 'weir-test', brokers, logLevel: logLevel.NOTHING });
    const topic = unique('weir-restart');
    const admin = kafka.admin();
    await admin.connect();
    await admin.createTopics({ topics: [{ topic, numPartitions: 2, replicationFactor: 1 }], waitForLeaders: true });
    await admin.disconnect();
    const producer = kafka.producer();
    await producer.connect();
    const events = keyedEvents(15_000);
    for (let i = 0; i < events.length; i += 1000) await producer.send({ topic, acks: -1, messages: events.slice(i, i + 1000) });
    await producer.disconnect();

    const config = (dir: string, group: string) => {
      const base = kafkaRunConfig(dir, topic, group, { aggregations: BY_MODEL_REGION });
      return writeConfig(dir, { ...base, source: { ...(base['source'] as object), brokers, maxBytesPerPartition: 4096 } });
    };
    const refDir = mkdtempSync(join(tmpdir(), 'weir-ref-'));
    const ref = await spawnWeir(config(refDir, unique('ref'))).exit;
    assert.equal(ref.code, 0, ref.stderr.slice(-2000));
    const want = finalResults(readLines<WindowResult>(join(refDir, 'results.jsonl')));

    const dir = mkdtempSync(join(tmpdir(), 'weir-survive-'));
    const run = spawnWeir(config(dir, unique('survive')));
    let done = false;
    void run.exit.then(() => (done = true));
    // Restart once results are flowing.
    for (let i = 0; i < 100 && !done && readLines(join(dir, 'results.jsonl')).length === 0; i++) await sleep(100);
    assert.ok(!done, 'the run ended before the broker restart: make it longer');
    broker('kafka-down.sh');
    await sleep(1000);
    broker('kafka-up.sh');
    const e = await run.exit;
    assert.equal(e.code, 0, e.stderr.slice(-3000));
    const results = readLines<WindowResult>(join(dir, 'results.jsonl'));
    assertSameFinals(finalResults(results), want, 'across a broker restart');
    assertNeverHigher(results, want, 'across a broker restart');
  } finally {
    spawnSync('bash', [join(SCRIPTS, 'kafka-down.sh'), '--wipe'], { env });
    rmSync(stateDir, { recursive: true, force: true });
  }
});
