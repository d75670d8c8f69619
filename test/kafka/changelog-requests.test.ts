// The requests of a changelog transaction, counted on the real broker: the producer's
// transaction coordinator is looked up once per transaction (kafkajs asks before each of
// its transactional requests), the producer asks for the changelog topic's metadata
// alone, when it opens (not in its first transaction), what the transactions wrote is
// read back, and a fenced producer's transaction still fails as fenced. And a Kafka
// sink's idempotent producer asks for its own topic's metadata alone.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { Producer } from 'kafkajs';
import { ChangelogKafka, FencedError, type ChangelogKafkaOptions } from '../../src/changelog/kafka';
import { ensureChangelogTopic } from '../../src/changelog/topic';
import { ChangeBatchWriter } from '../../src/state/batch';
import { Kafka, logLevel } from 'kafkajs';
import { connectFor, producerWithCluster, type KafkaCluster } from '../../src/kafkajs-cluster';
import { BROKERS, createTopic, unique } from './helpers/kafka';

/** kafkajs's request counts by API of the producer of partition `p`, from now on. */
function countRequests(ck: ChangelogKafka, p: number): Map<string, number> {
  const producer = (ck as unknown as { producers: Map<number, Producer> }).producers.get(p);
  assert.ok(producer !== undefined, `partition ${p} has a producer`);
  const counts = new Map<string, number>();
  producer.on(producer.events.REQUEST, (e: { payload: { apiName: string } }) => counts.set(e.payload.apiName, (counts.get(e.payload.apiName) ?? 0) + 1));
  return counts;
}

function batchOf(entries: Array<[string, string]>): ChangeBatchWriter {
  const w = new ChangeBatchWriter(64);
  for (const [k, v] of entries) w.put(k, Buffer.from(v));
  return w;
}

test('a changelog transaction looks its coordinator up once, its producer asks for its topic\'s metadata alone at open, a fenced one still fails', async () => {
  const topic = unique('weir-clreq');
  await createTopic(topic, 2);
  const groupId = unique('g');
  const o: ChangelogKafkaOptions = { brokers: BROKERS, clientId: 'weir-test', ssl: false, groupId, topic, changelog: `${groupId}-changelog`, create: true, transactionTimeoutMs: 10_000 };
  await ensureChangelogTopic(o);
  const ck = new ChangelogKafka(o);
  const zombie = new ChangelogKafka(o);
  try {
    await ck.open(0);
    // The producer asked for the changelog topic's metadata alone (without a topic, kafkajs asks for every topic of the cluster).
    const cluster = (ck as unknown as { coordinators: Map<number, { cluster: { brokerPool: { metadata: { topicMetadata: Array<{ topic: string }> } } } }> }).coordinators.get(0)!.cluster;
    assert.deepEqual(cluster.brokerPool.metadata.topicMetadata.map((t) => t.topic), [o.changelog]);
    const counts = countRequests(ck, 0);
    let offset = '';
    for (let t = 0; t < 3; t++) {
      counts.clear();
      offset = await ck.commit(0, [batchOf([[`k${t}`, `v${t}`], ['same', `s${t}`]]).finish()], JSON.stringify({ t }), String(10 * (t + 1)));
      // kafkajs alone: FindCoordinator before AddPartitionsToTxn, AddOffsetsToTxn and EndTxn (and the group's once).
      assert.equal(counts.get('GroupCoordinator'), 2, `transaction ${t}: one lookup of the transaction coordinator, one of the group's (${JSON.stringify([...counts])})`);
      // (kafkajs refreshes the metadata now and then of its own accord: only the first is certain.)
      if (t === 0) assert.equal(counts.get('Metadata') ?? 0, 0, 'the first transaction: the topic\'s metadata was there');
      // (A request the broker refuses while the previous transaction's markers are written is sent again.)
      for (const api of ['AddPartitionsToTxn', 'Produce', 'AddOffsetsToTxn', 'TxnOffsetCommit']) assert.ok((counts.get(api) ?? 0) >= 1, `transaction ${t}: ${api}`);
      assert.equal(counts.get('EndTxn'), 1, `transaction ${t}: EndTxn`);
    }
    // What the transactions wrote: the latest value of each key, and the last partition record.
    const r = await ck.restore(0, '0');
    assert.equal(r.partitionRecord, JSON.stringify({ t: 2 }));
    // The commit returned the offset after the last partition record; its transaction's marker follows.
    assert.equal(BigInt(r.end), BigInt(offset) + 1n);
    const read = new Map<string, string>();
    const { readChangeBatch } = await import('../../src/state/batch');
    readChangeBatch(r.batch, (k, v) => read.set(k, v === null ? '' : Buffer.from(v).toString()));
    assert.deepEqual(Object.fromEntries(read), { k0: 'v0', k1: 'v1', k2: 'v2', same: 's2' });

    // Another owner opens the partition's producer: the first is fenced, its next transaction fails as such.
    await zombie.open(0);
    await assert.rejects(ck.commit(0, [batchOf([['late', 'x']]).finish()], '{}', '40'), (e: unknown) => e instanceof FencedError);
    // The new owner's transactions go on.
    counts.clear();
    await zombie.commit(0, [batchOf([['after', 'y']]).finish()], JSON.stringify({ t: 3 }), '50');
    const again = await zombie.restore(0, '0');
    assert.equal(again.partitionRecord, JSON.stringify({ t: 3 }));
  } finally {
    await Promise.allSettled([ck.shutdown(), zombie.shutdown()]);
  }
});

/** The topics whose metadata a cluster holds. */
function metadataTopics(c: KafkaCluster | undefined): string[] {
  return (c as unknown as { brokerPool: { metadata: { topicMetadata: Array<{ topic: string }> } } }).brokerPool.metadata.topicMetadata.map((t) => t.topic).sort();
}

test("an idempotent producer (the Kafka sinks') asks for its topic's metadata alone, and connects when its topic is not there yet", async () => {
  const topic = unique('weir-sinkmeta');
  await createTopic(topic, 1);
  const kafka = new Kafka({ clientId: 'weir-test', brokers: BROKERS, logLevel: logLevel.NOTHING });
  const plain = producerWithCluster(kafka, { idempotent: true, maxInFlightRequests: 1 });
  const ours = producerWithCluster(kafka, { idempotent: true, maxInFlightRequests: 1 });
  const missing = producerWithCluster(kafka, { idempotent: true, maxInFlightRequests: 1 });
  try {
    // kafkajs alone: every topic of the cluster (this one among them).
    await plain.producer.connect();
    const all = metadataTopics(plain.cluster);
    assert.ok(all.length > 1 && all.includes(topic), `${all.length} topics`);
    await connectFor(ours.producer, ours.cluster, topic);
    assert.deepEqual(metadataTopics(ours.cluster), [topic]);
    await ours.producer.send({ topic, acks: -1, messages: [{ key: 'k', value: 'v' }] });
    await connectFor(missing.producer, missing.cluster, `${topic}-not-there`);
  } finally {
    await Promise.allSettled([plain.producer.disconnect(), ours.producer.disconnect(), missing.producer.disconnect()]);
  }
});
