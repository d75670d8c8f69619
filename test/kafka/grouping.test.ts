// Weir's grouping of a send's messages per partition (src/kafkajs-grouping.ts) gives
// kafkajs's producer what kafkajs's own module gives: the same partitions, each with
// its messages in the order sent, the partitioner called once per message in order;
// and Weir's producers (the Kafka sinks, the changelog) load it in place of kafkajs's.
// First: it must come before anything loads kafkajs's producer.
import { groupMessagesPerPartition, installFastGrouping } from '../../src/kafkajs-grouping';
import '../../src/sinks/kafka';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import Module from 'node:module';
import { kafkajsFile, originalKafkajs } from './helpers/original';

const load = Module.createRequire(__filename);
const path = kafkajsFile('src/producer/groupMessagesPerPartition.js');

/** kafkajs's own module. */
const original = (): typeof groupMessagesPerPartition => originalKafkajs('src/producer/groupMessagesPerPartition.js');

test("kafkajs's producer uses Weir's grouping once Weir's Kafka sink is loaded", () => {
  assert.equal(installFastGrouping(), true);
  assert.equal(load(path), groupMessagesPerPartition);
});

test('the same partitions and order as kafkajs, with the partitioner called in the same order', () => {
  const theirs = original();
  const partitionMetadata = [0, 1, 2, 3, 4].map((partitionId) => ({ partitionId, leader: 0 }));
  const messages = Array.from({ length: 3000 }, (_, i) => ({ key: i % 7 === 0 ? null : `user-${i % 113}`, value: `v${i}`, ...(i % 11 === 0 ? { partition: i % 5 } : {}) }));
  for (const msgs of [messages, messages.slice(0, 1), []]) {
    const calls: [string[], string[]] = [[], []];
    const run = (fn: typeof groupMessagesPerPartition, k: 0 | 1) => {
      // As kafkajs's default partitioner: the message's own partition, else by key, else round robin (here from 0, not at random).
      let next = 0;
      const partitioner = ({ message: m }: { message: (typeof messages)[number] }): number =>
        m.partition ?? (m.key === null ? next++ % 5 : [...m.key].reduce((h, c) => (h * 31 + c.charCodeAt(0)) % 5, 0));
      return fn({ topic: 't', partitionMetadata, messages: msgs, partitioner: (a) => (calls[k].push(a.message.value), partitioner(a)) });
    };
    const a = run(theirs, 0), b = run(groupMessagesPerPartition, 1);
    assert.deepEqual(b, a);
    assert.deepEqual(Object.keys(b), Object.keys(a));
    assert.deepEqual(calls[1], calls[0]);
  }
  // No partition known: nothing, as kafkajs.
  assert.deepEqual(groupMessagesPerPartition({ topic: 't', partitionMetadata: [], messages, partitioner: () => 0 }), theirs({ topic: 't', partitionMetadata: [], messages, partitioner: () => 0 }));
});
