// eventTime.idleAdvance against the real broker: events, then silence. With it, W
// follows the wall clock once every partition is idle and the windows fire within
// idleTimeoutMs (plus a tick and a margin); without it, W stalls (as Flink's
// withIdleness does) and nothing fires. An event after the advance whose window W
// has passed is dead-lettered `late`.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { DeadLetter, WindowResult } from '../../src/pipeline/types';
import { BROKERS, createTopic, produce, unique } from './helpers/kafka';
import { kafkaRunConfig, readLines, sleep, spawnWeir, writeConfig } from './helpers/weir';
import { freePort } from '../helpers/ports';

const IDLE_TIMEOUT_MS = 2000;
/** A tick every second, a join, a write: what may pass beyond idleTimeoutMs before the windows fire. */
const MARGIN_MS = 4000;

function event(ts: number, model: string): string {
  return JSON.stringify({ id: `e-${ts}-${model}`, timestamp: ts, data: { model, latency_ms: 100 + (ts % 1000) } });
}

/** Polls `get` every 100 ms until it returns true or `timeoutMs` passes; resolves to whether it did. */
async function until(get: () => boolean | Promise<boolean>, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await get()) return true;
    if (Date.now() > deadline) return false;
    await sleep(100);
  }
}

async function recordsConsumed(port: number): Promise<number> {
  try {
    const body = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
    const m = /^records_consumed_total (\S+)$/m.exec(body);
    return m === null ? 0 : Number(m[1]);
  } catch {
    return 0;
  }
}

/** Starts an unbounded run over 40 events covering 20 s of event time (two 10 s windows per model) in the past. */
async function quietRun(idleAdvance: boolean, port: number) {
  const dir = mkdtempSync(join(tmpdir(), 'weir-idle-'));
  const topic = unique('idle');
  await createTopic(topic, 2);
  // Aligned to 10 s and a minute back: every window ends before the wall clock minus the out-of-orderness.
  const base = Math.floor((Date.now() - 60_000) / 10_000) * 10_000;
  const messages = [];
  for (let i = 0; i < 20; i++) for (const model of ['a', 'b']) messages.push({ key: model, value: event(base + i * 1000, model) });
  await produce(topic, messages);
  const cfg = kafkaRunConfig(dir, topic, unique('g'), {
    source: { type: 'kafka', brokers: BROKERS, topic, groupId: unique('g'), bounded: false, fromBeginning: true, idleTimeoutMs: IDLE_TIMEOUT_MS, sessionTimeoutMs: 6000 },
    eventTime: { maxOutOfOrdernessMs: 1000, allowedLatenessMs: 0, idleAdvance },
    aggregations: [{ name: 'lat', groupBy: ['data.model'], value: 'data.latency_ms', window: { type: 'tumbling', sizeMs: 10_000 } }],
    metrics: { host: '127.0.0.1', port },
  });
  const run = spawnWeir(writeConfig(dir, cfg));
  return { dir, topic, base, run, results: () => readLines<WindowResult>(join(dir, 'results.jsonl')), deadLetters: () => readLines<DeadLetter>(join(dir, 'dlq.jsonl')) };
}

test('idleAdvance: a quiet topic fires its windows within idleTimeoutMs; off, W stalls; a late event after the advance is dead-lettered', async () => {
  const [onPort, offPort] = [await freePort(), await freePort()];
  const on = await quietRun(true, onPort);
  const off = await quietRun(false, offPort);
  try {
    for (const [r, port] of [[on, onPort], [off, offPort]] as const) {
      assert.ok(await until(async () => (await recordsConsumed(port)) === 40, 60_000), `all 40 events consumed (${r.topic})`);
    }
    const consumedAt = Date.now();
    // Four windows (two models, two 10 s windows each) fire once both partitions idle.
    assert.ok(await until(() => on.results().length >= 4, IDLE_TIMEOUT_MS + MARGIN_MS), `idleAdvance on: ${on.results().length} results ${Date.now() - consumedAt} ms after the last event`);
    const firedAfterMs = Date.now() - consumedAt;
    assert.deepEqual(
      on.results().map((r) => `${r.key}|${r.window.start - on.base}|${r.results.count}`).sort(),
      ['model=a|0|10', 'model=a|10000|10', 'model=b|0|10', 'model=b|10000|10'],
    );
    // Off: the same silence (and more) fires nothing: W never moves when every partition is idle.
    await sleep(Math.max(0, IDLE_TIMEOUT_MS + MARGIN_MS - (Date.now() - consumedAt)));
    assert.equal(off.results().length, 0, 'idleAdvance off: W stalls while every partition is idle');

    // After the advance, an event of the first window is too late (allowedLatenessMs 0).
    await produce(on.topic, [{ key: 'a', value: event(on.base + 5000, 'a') }]);
    assert.ok(await until(() => on.deadLetters().some((d) => d.reason === 'late'), 15_000), 'the late event is dead-lettered');
    const late = on.deadLetters().filter((d) => d.reason === 'late');
    assert.equal(late.length, 1);
    assert.equal((JSON.parse(late[0]!.original_event) as { timestamp: number }).timestamp, on.base + 5000);
    assert.equal(on.results().length, 4, 'the late event changed no result');
    console.log(`idleAdvance: windows fired ${firedAfterMs} ms after the last event was consumed (idleTimeoutMs ${IDLE_TIMEOUT_MS})`);
  } finally {
    on.run.child.kill('SIGTERM');
    off.run.child.kill('SIGTERM');
    const [a, b] = await Promise.all([on.run.exit, off.run.exit]);
    assert.equal(a.code, 0, a.stderr);
    assert.equal(b.code, 0, b.stderr);
  }
});
