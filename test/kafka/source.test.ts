// KafkaSource against a real broker (scripts/kafka-up.sh, started by `npm test`).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { inspect } from 'node:util';
import { AssignerProtocol, PartitionAssigners, type PartitionAssigner } from 'kafkajs';
import { KafkaSource, READ_AHEAD_BATCHES, type KafkaLogEntry } from '../../src/sources/kafka';
import { ConfigError, WeirError } from '../../src/errors/errors';
import { FAST, Reader, byPartition, createTopic, produce, sleep, sourceConfig, unique } from './helpers/kafka';

test('bounded read of a 4-partition topic: every message exactly once, in offset order, byte-identical, then end', async () => {
  const topic = unique('weir-src-all');
  await createTopic(topic, 4);
  const values: (string | null)[] = [];
  for (let i = 0; i < 2000; i++) {
    // Varying lengths, multi-byte UTF-8, and a few null values (empty records).
    values.push(i % 400 === 7 ? null : JSON.stringify({ id: `e-${i}`, pad: 'x'.repeat(i % 37), s: 'é✓' }));
  }
  await produce(topic, values.map((value, i) => ({ key: `k-${i}`, value })));

  const batchSize = 64;
  const source = new KafkaSource(sourceConfig(topic, unique('g')), { batchSize, consumer: FAST, tickIntervalMs: 200 });
  const r = new Reader(source, batchSize);
  try {
    await r.toEnd(20_000);
    assert.equal(r.log.at(-1)?.kind, 'end');
    assert.equal(r.records.length, 2000);
    // Exactly once: every produced value once (nulls as empty records).
    const seen = new Map<string, number>();
    for (const rec of r.records) seen.set(rec.value.toString('utf8'), (seen.get(rec.value.toString('utf8')) ?? 0) + 1);
    for (const v of values) if (v !== null) assert.equal(seen.get(v), 1, v);
    assert.equal(seen.get(''), values.filter((v) => v === null).length);
    // Byte-identical, not only equal as text.
    const bytes = new Set(values.filter((v): v is string => v !== null).map((v) => Buffer.from(v).toString('hex')));
    for (const rec of r.records) if (rec.value.length > 0) assert.ok(bytes.has(rec.value.toString('hex')));
    // Keys spread the messages; per partition, offsets are 0, 1, 2, ... (no gaps, no repeats).
    const parts = byPartition(r.records);
    assert.deepEqual([...parts.keys()].sort(), [0, 1, 2, 3]);
    for (const [p, recs] of parts) recs.forEach((rec, i) => assert.equal(rec.offset, String(i), `partition ${p}`));
    assert.deepEqual(
      source.positions(),
      [...parts].sort((a, b) => a[0] - b[0]).map(([partition, recs]) => ({ partition, offset: String(recs.length) })),
    );
  } finally {
    await source.close();
  }
});

test('backpressure: a slow consumer holds kafkajs back (READ_AHEAD_BATCHES RecordBatches ahead at most, then no fetch while it is busy)', async () => {
  const topic = unique('weir-src-bp');
  await createTopic(topic, 1);
  await produce(topic, Array.from({ length: 3000 }, (_, i) => ({ value: `{"i":${i}}` })));

  const batchSize = 10;
  let pulls = 0;
  const source = new KafkaSource(sourceConfig(topic, unique('g')), {
    batchSize,
    tickIntervalMs: 200,
    // Small fetches: without backpressure kafkajs would fetch many times while we sleep.
    consumer: { ...FAST, maxBytesPerPartition: 2048 },
  });
  const snapshot = () => ({ fetches: source.stats.fetches, built: source.stats.batchesBuilt, kafka: source.stats.kafkaBatches, queued: source.stats.queued });
  const r = new Reader(source, batchSize, async () => {
    pulls++;
    if (pulls > 5) return;
    await sleep(300); // slow consumer: the worker fills its read-ahead, then must stop
    const full = snapshot();
    // Built and not consumed: the one in our hand and exactly READ_AHEAD_BATCHES - 1 more.
    assert.equal(full.built - source.stats.batchesYielded - source.stats.batchesDropped, READ_AHEAD_BATCHES - 1);
    assert.equal(full.queued, READ_AHEAD_BATCHES - 1);
    await sleep(150);
    assert.deepEqual(snapshot(), full, 'kafkajs ran ahead of a busy consumer');
  });
  try {
    await r.toEnd(30_000);
    assert.equal(r.records.length, 3000);
    const s = source.stats;
    assert.equal(s.maxPostedAhead, READ_AHEAD_BATCHES);
    assert.ok(s.maxQueued <= READ_AHEAD_BATCHES, `maxQueued ${s.maxQueued}`);
    assert.equal(s.maxKafkaBatchesInFlight, 1);
    assert.equal(s.batchesYielded, pulls);
    assert.equal(s.batchesDropped, 0);
    assert.ok(s.kafkaBatches > 5, `small fetches: ${s.kafkaBatches} kafkajs batches`);
    // The consumer thread decoded them with Weir's decoder (src/sources/kafka-decode.ts).
    assert.equal(s.fastDecoder, true);
  } finally {
    await source.close();
  }
});

test('seek: batches read ahead before it are dropped, never yielded; the partition goes on exactly at the sought offset', async () => {
  const topic = unique('weir-src-seek');
  await createTopic(topic, 1);
  await produce(topic, Array.from({ length: 200 }, (_, i) => ({ value: `{"i":${i}}` })));
  const batchSize = 10;
  const source = new KafkaSource(sourceConfig(topic, unique('g')), { batchSize, consumer: FAST, tickIntervalMs: 200 });
  let first = true;
  const r = new Reader(source, batchSize, async () => {
    if (!first) return;
    first = false;
    await sleep(300); // the worker posts the next READ_AHEAD_BATCHES - 1 batches meanwhile
    assert.equal(source.stats.queued, READ_AHEAD_BATCHES - 1);
    assert.equal(source.seek(0, '5'), true);
    assert.equal(source.stats.queued, 0);
    assert.equal(source.stats.batchesDropped, READ_AHEAD_BATCHES - 1);
    assert.deepEqual(source.positions(), [{ partition: 0, offset: '5' }]);
  });
  try {
    await r.toEnd(15_000);
    const offsets = r.records.map((x) => Number(x.offset));
    assert.deepEqual(offsets, [...Array.from({ length: 10 }, (_, i) => i), ...Array.from({ length: 195 }, (_, i) => 5 + i)]);
    assert.deepEqual(source.positions(), [{ partition: 0, offset: '200' }]);
  } finally {
    await source.close();
  }
});

test('the consumer thread dies: the iterator throws an internal WeirError saying so, and close() still returns', async () => {
  const topic = unique('weir-src-dies');
  await createTopic(topic, 1);
  await produce(topic, Array.from({ length: 50 }, (_, i) => ({ value: `{"i":${i}}` })));
  const source = new KafkaSource(sourceConfig(topic, unique('g'), { bounded: false }), { batchSize: 8, consumer: FAST, tickIntervalMs: 100 });
  const r = new Reader(source, 8);
  try {
    await r.until((x) => x.records.length === 50, 15_000, 'the records');
    // What an out-of-memory kill or a crash of the thread looks like from here.
    await (source as unknown as { channel: { terminate(): Promise<void> } }).channel.terminate();
    await assert.rejects(
      r.until(() => false, 5_000, 'the failure'),
      (e: unknown) => e instanceof WeirError && e.domain === 'internal' && !e.retriable && /consumer thread exited/.test(e.message) && e.message.includes(topic),
    );
  } finally {
    await source.close();
  }
});

test('commit: offsets are committed only by commit(); a new bounded source of the group resumes there', async () => {
  const topic = unique('weir-src-commit');
  const group = unique('g');
  await createTopic(topic, 2);
  await produce(topic, Array.from({ length: 200 }, (_, i) => ({ key: `k${i}`, value: `{"i":${i}}` })));
  const batchSize = 50;
  const read = async (commit: boolean) => {
    const source = new KafkaSource(sourceConfig(topic, group), { batchSize, consumer: FAST, tickIntervalMs: 200 });
    const r = new Reader(source, batchSize);
    try {
      await r.toEnd(15_000);
      if (commit) await source.commit(source.positions());
      return r.records.length;
    } finally {
      await source.close();
    }
  };
  assert.equal(await read(false), 200);
  assert.equal(await read(false), 200, 'kafkajs committed offsets by itself');
  assert.equal(await read(true), 200);
  assert.equal(await read(false), 0, 'committed offsets were not used');
});

test('ticks: an idle topic yields ticks from the injected clock about every tickIntervalMs; pause() holds records back', async () => {
  const topic = unique('weir-src-tick');
  await createTopic(topic, 1);
  let now = 1_000_000;
  const clock = () => (now += 7);
  let assignedAt = -1;
  const source = new KafkaSource(sourceConfig(topic, unique('g'), { bounded: false }), {
    batchSize: 16,
    consumer: FAST,
    tickIntervalMs: 100,
    clock,
    onAssignment: () => void (assignedAt = performance.now()),
  });
  const r = new Reader(source, 16);
  try {
    await r.until(() => assignedAt >= 0 && r.log.filter((m) => m.at > assignedAt).length >= 4, 15_000, 'four ticks after assignment');
    assert.ok(r.log.every((m) => m.kind === 'tick'));
    r.ticks.forEach((t, i) => i > 0 && assert.ok(t > r.ticks[i - 1]!, 'nowMs comes from the clock'));
    assert.ok(r.ticks[0]! > 1_000_000);
    const after = r.log.filter((m) => m.at > assignedAt);
    for (let i = 1; i < after.length; i++) {
      const gap = after[i]!.at - after[i - 1]!.at;
      assert.ok(gap >= 90 && gap < 1000, `tick gap ${gap.toFixed(0)} ms`);
    }

    // Paused: a produced record is not yielded, ticks go on; resumed: it is.
    source.pause();
    await produce(topic, [{ value: '{"late":1}' }]);
    const t0 = performance.now();
    await r.until(() => performance.now() - t0 > 600, 5_000, 'ticks while paused');
    assert.equal(r.records.length, 0);
    source.resume();
    await r.until((x) => x.records.length === 1, 5_000, 'the record after resume()');
    assert.equal(r.records[0]!.value.toString(), '{"late":1}');
  } finally {
    await source.close();
  }
});

test('onAssignment runs before the first batch of its partitions, and seek() from it positions a partition', async () => {
  const topic = unique('weir-src-assign');
  await createTopic(topic, 4);
  await produce(
    topic,
    [0, 1, 2, 3].flatMap((partition) => Array.from({ length: 20 }, (_, i) => ({ partition, value: `{"p":${partition},"i":${i}}` }))),
  );
  const calls: Array<{ assigned: number[]; revoked: number[]; yielded: number }> = [];
  const source = new KafkaSource(sourceConfig(topic, unique('g')), { batchSize: 8, consumer: FAST, tickIntervalMs: 200 });
  source.onAssignment(async (assigned, revoked) => {
    calls.push({ assigned, revoked, yielded: source.stats.batchesYielded });
    await sleep(300); // restoring state takes a while: nothing may be yielded meanwhile
    assert.equal(source.seek(0, '10'), true);
    assert.equal(source.seek(7, '0'), false, 'not assigned');
  });
  const r = new Reader(source, 8);
  try {
    await r.toEnd(15_000);
    assert.deepEqual(calls, [{ assigned: [0, 1, 2, 3], revoked: [], yielded: 0 }]);
    const parts = byPartition(r.records);
    assert.equal(parts.get(0)?.[0]?.offset, '10');
    assert.deepEqual(parts.get(0)?.map((x) => x.offset), Array.from({ length: 10 }, (_, i) => String(10 + i)));
    for (const p of [1, 2, 3]) assert.equal(parts.get(p)?.length, 20);
    assert.deepEqual(source.positions(), [0, 1, 2, 3].map((partition) => ({ partition, offset: '20' })));
  } finally {
    await source.close();
  }
});

test('sasl: passwordEnv naming an unset variable fails naming it; the password never shows', () => {
  const env = { WEIR_TEST_KAFKA_PW: 's3cr3t-from-env' };
  const base = sourceConfig('t', 'g');
  assert.throws(
    () => new KafkaSource({ ...base, sasl: { mechanism: 'scram-sha-512', username: 'weir', passwordEnv: 'WEIR_TEST_UNSET_PASSWORD' } }, { batchSize: 8, env }),
    (e: unknown) => e instanceof ConfigError && /WEIR_TEST_UNSET_PASSWORD/.test(e.message) && !e.message.includes('s3cr3t'),
  );
  assert.throws(() => new KafkaSource({ ...base, sasl: { mechanism: 'plain', username: 'weir' } }, { batchSize: 8, env }), ConfigError);
  for (const sasl of [
    { mechanism: 'plain' as const, username: 'weir', passwordEnv: 'WEIR_TEST_KAFKA_PW' },
    { mechanism: 'plain' as const, username: 'weir', password: 's3cr3t-inline' },
  ]) {
    const s = new KafkaSource({ ...base, sasl }, { batchSize: 8, env });
    for (const shown of [inspect(s, { depth: 10 }), JSON.stringify(s)]) assert.ok(!shown.includes('s3cr3t'), shown);
  }
});

test('a non-retriable kafkajs crash makes the iterator throw an external WeirError', async () => {
  const topic = unique('weir-src-crash');
  await createTopic(topic, 1);
  const broken: PartitionAssigner = () => ({
    name: 'BrokenAssigner',
    version: 1,
    protocol: ({ topics }) => ({ name: 'BrokenAssigner', metadata: AssignerProtocol.MemberMetadata.encode({ version: 1, topics, userData: Buffer.alloc(0) }) }),
    assign: async () => {
      throw new Error('assigner exploded');
    },
  });
  const logged: KafkaLogEntry[] = [];
  const source = new KafkaSource(sourceConfig(topic, unique('g')), {
    batchSize: 8,
    tickIntervalMs: 200,
    consumer: { ...FAST, partitionAssigners: [broken] },
    logger: (e) => logged.push(e),
  });
  const r = new Reader(source, 8);
  try {
    await assert.rejects(r.until(() => false, 15_000, 'crash'), (e: unknown) => e instanceof WeirError && e.domain === 'external' && /assigner exploded/.test(e.message));
    // kafkajs's log lines go to the logger callback (warn and above by default), never to the console.
    assert.ok(logged.some((e) => e.level === 'error' && /Crash/.test(e.message)), JSON.stringify(logged.map((e) => e.message)));
    assert.ok(logged.every((e) => e.level === 'error' || e.level === 'warn'));
  } finally {
    await source.close();
  }
});

test('rebalance: a second member takes partitions; the first keeps its others without replaying them', async () => {
  const topic = unique('weir-src-rebal');
  const group = unique('g');
  await createTopic(topic, 4);
  const batch = (from: number, n: number) =>
    [0, 1, 2, 3].flatMap((partition) => Array.from({ length: n }, (_, i) => ({ partition, value: `{"p":${partition},"i":${from + i}}` })));
  await produce(topic, batch(0, 50));
  const opts = { batchSize: 16, consumer: FAST, tickIntervalMs: 100 };
  const hooks: Record<string, Array<[number[], number[]]>> = { a: [], b: [] };
  const a = new KafkaSource(sourceConfig(topic, group, { bounded: false }), { ...opts, onAssignment: (x, y) => void hooks['a']!.push([x, y]) });
  const b = new KafkaSource(sourceConfig(topic, group, { bounded: false }), { ...opts, onAssignment: (x, y) => void hooks['b']!.push([x, y]) });
  const ra = new Reader(a, 16);
  const rb = new Reader(b, 16);
  try {
    await ra.until((r) => r.records.length === 200, 15_000, 'a reads everything');
    // b joins; a must keep pulling to take part in the rebalance.
    await Promise.all([
      // The hooks run after the assignment changed: wait for them too.
      ra.until(() => a.assignment.length === 2 && hooks['a']!.length >= 2, 15_000, 'a gives up two partitions'),
      rb.until(() => b.assignment.length === 2 && hooks['b']!.length >= 1, 15_000, 'b gets two partitions'),
    ]);
    const revokedFromA = hooks['a']!.at(-1)![1];
    assert.deepEqual(hooks['a']![0], [[0, 1, 2, 3], []]);
    assert.deepEqual(hooks['a']!.at(-1), [[], [...b.assignment]]);
    assert.deepEqual(hooks['b']!.at(-1), [[...b.assignment], []]);
    assert.deepEqual(revokedFromA, [...b.assignment]);

    await produce(topic, batch(50, 5));
    // Nothing was committed: b starts its partitions at 0 (55 each). a continues its
    // own at offset 50 (5 each), not at the committed (none) offset.
    await Promise.all([
      rb.until((r) => r.records.length === 110, 15_000, 'b reads its partitions from the start'),
      ra.until((r) => r.records.length >= 210, 15_000, 'a reads the new records of its partitions'),
    ]);
    // Keep pulling a while: a replay of a's partitions would show up now.
    const t = performance.now();
    await ra.until(() => performance.now() - t > 400, 2000, 'a stays quiet');
    const newA = ra.records.slice(200);
    for (const rec of newA) {
      assert.ok(a.assignment.includes(rec.partition));
      assert.ok(Number(rec.offset) >= 50, `a replayed offset ${rec.offset} of partition ${rec.partition}`);
    }
    assert.equal(newA.length, 10);
    for (const [p, recs] of byPartition(rb.records)) assert.deepEqual(recs.map((x) => x.offset), Array.from({ length: 55 }, (_, i) => String(i)), `b partition ${p}`);
  } finally {
    await Promise.all([a.close(), b.close()]);
  }
});

test('a consumer slower than sessionTimeout stays in the group (heartbeats while it holds a batch); bounded stops at the end seen at start', async () => {
  const topic = unique('weir-src-slow');
  await createTopic(topic, 2);
  await produce(topic, Array.from({ length: 100 }, (_, i) => ({ key: `k${i}`, value: `{"i":${i}}` })));
  const joins: Array<[number[], number[]]> = [];
  const source = new KafkaSource(sourceConfig(topic, unique('g')), {
    batchSize: 20,
    tickIntervalMs: 200,
    consumer: { ...FAST, sessionTimeout: 6000, heartbeatInterval: 500 },
    onAssignment: (a, r) => void joins.push([a, r]),
  });
  let first = true;
  const r = new Reader(source, 20, async () => {
    if (!first) return;
    first = false;
    // Records produced now are past the end offsets seen at start: not read.
    await produce(topic, Array.from({ length: 50 }, (_, i) => ({ key: `late${i}`, value: `{"late":${i}}` })));
    await sleep(7500); // longer than sessionTimeout: a checkpoint that takes its time
  });
  try {
    await r.toEnd(20_000);
    assert.deepEqual(joins, [[[0, 1], []]], 'the member was evicted and rejoined');
    assert.equal(r.records.length, 100);
    assert.ok(r.records.every((x) => !x.value.toString().includes('late')));
  } finally {
    await source.close();
  }
});

test('a retriable kafkajs crash: kafkajs restarts the consumer by itself and the iterator goes on', async () => {
  const topic = unique('weir-src-restart');
  await createTopic(topic, 1);
  await produce(topic, Array.from({ length: 30 }, (_, i) => ({ value: `{"i":${i}}` })));
  let calls = 0;
  const flaky: PartitionAssigner = (cfg) => {
    const rr = PartitionAssigners.roundRobin(cfg);
    return {
      ...rr,
      assign: async (group) => {
        if (calls++ === 0) throw Object.assign(new Error('flaky assigner'), { retriable: true });
        return rr.assign(group);
      },
    };
  };
  const joins: Array<[number[], number[]]> = [];
  const source = new KafkaSource(sourceConfig(topic, unique('g')), {
    batchSize: 8,
    tickIntervalMs: 200,
    consumer: { ...FAST, partitionAssigners: [flaky], retry: { initialRetryTime: 100, retries: 2 } },
    onAssignment: (a, r) => void joins.push([a, r]),
  });
  const r = new Reader(source, 8);
  try {
    await r.toEnd(15_000);
    assert.ok(calls >= 2, 'the assigner failed once, then kafkajs restarted');
    assert.equal(r.records.length, 30);
    assert.deepEqual(joins, [[[0], []]]);
  } finally {
    await source.close();
  }
});

test("closing after a bounded read does not wait out kafkajs's fetch wait", async () => {
  const topic = unique('weir-src-wait');
  await createTopic(topic, 1);
  await produce(topic, Array.from({ length: 400 }, (_, i) => ({ value: `{"i":${i}}` })));
  // A fetch wait far longer than what is asserted below. A fetch at the end of the
  // records waits that long at the broker, and while every partition is paused kafkajs
  // sleeps it instead of fetching: a stop would wait for either.
  const WAIT_MS = 8000;
  const source = new KafkaSource(sourceConfig(topic, unique('g')), {
    batchSize: 10,
    tickIntervalMs: 100,
    consumer: { ...FAST, maxWaitTimeInMs: WAIT_MS, maxBytesPerPartition: 1024 },
  });
  const r = new Reader(source, 10);
  try {
    await r.toEnd(15_000);
    assert.equal(r.records.length, 400);
  } finally {
    const closing = performance.now();
    await source.close();
    const closed = performance.now() - closing;
    assert.ok(closed < WAIT_MS / 2, `closed after ${closed.toFixed(0)} ms`);
  }
});
