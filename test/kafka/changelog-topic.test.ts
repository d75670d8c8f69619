// The changelog topic as Weir finds it at start: missing (created compacted with the
// input's partitions, its leaders there to restore from), or there with another
// partition count or cleanup policy, or missing where it may not be created (refused,
// naming the topic and what is wrong). Against the real broker.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Kafka, logLevel } from 'kafkajs';
import { Changelog } from '../../src/changelog/thread';
import { BROKERS, createTopic, unique } from './helpers/kafka';

const kafka = new Kafka({ clientId: 'weir-test', brokers: BROKERS, logLevel: logLevel.NOTHING });

const start = (topic: string, changelog: string, create = true): Promise<Changelog> =>
  Changelog.start({ brokers: BROKERS, clientId: 'weir-test', ssl: false, groupId: unique('g'), topic, changelog, create, transactionTimeoutMs: 60_000 });

test('a missing changelog topic is created compacted, with the input topic\'s partitions and their leaders; one of another shape is refused', async () => {
  const input = unique('weir-input');
  await createTopic(input, 3);
  const admin = kafka.admin();
  await admin.connect();
  try {
    // Missing: created, and every partition has a leader once start() returns.
    const made = unique('weir-changelog');
    const c = await start(input, made);
    try {
      const m = await admin.fetchTopicMetadata({ topics: [made] });
      assert.equal(m.topics[0]!.partitions.length, 3);
      assert.ok(m.topics[0]!.partitions.every((p) => p.leader >= 0), 'every partition has a leader');
      const cfg = await admin.describeConfigs({ includeSynonyms: false, resources: [{ type: 2, name: made, configNames: ['cleanup.policy'] }] });
      assert.equal(cfg.resources[0]!.configEntries[0]!.configValue, 'compact');
    } finally {
      await c.shutdown();
    }
    // There already: found as it is, not made again.
    await (await start(input, made)).shutdown();

    const fewer = unique('weir-changelog');
    await createTopic(fewer, 2);
    await assert.rejects(start(input, fewer), (e: Error) => e.message.includes(`"${fewer}" has 2 partitions, the input topic "${input}" 3`));

    const deleting = unique('weir-changelog');
    await createTopic(deleting, 3); // cleanup.policy=delete, the broker's default
    await assert.rejects(start(input, deleting), (e: Error) => e.message.includes(`"${deleting}" has cleanup.policy=delete; it must be compact`));

    const absent = unique('weir-changelog');
    await assert.rejects(start(input, absent, false), (e: Error) => e.message.includes(`changelog.topic: "${absent}" does not exist`));
    assert.ok(!(await admin.listTopics()).includes(absent), 'not created');

    await assert.rejects(start(unique('weir-no-such-input'), unique('weir-changelog')), /the input topic "weir-no-such-input-[^"]+" does not exist/);
  } finally {
    await admin.disconnect();
  }
});
