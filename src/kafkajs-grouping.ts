// A linear replacement for kafkajs's producer/groupMessagesPerPartition.js.
//
// kafkajs 2.2 sorts the messages of every send into partitions with
//   messages.reduce((r, m) => Object.assign(r, { [p]: [...(r[p] || []), m] }), {})
// which copies a partition's array for every message: a send of n messages to one
// partition copies n²/2 references. A checkpoint's changelog transaction sends up to
// 768 KiB at a time (a few thousand records, all to one partition): profiled at 20,000
// events/s with 20,000 users, that grouping and the garbage it made (~480 MB/s) took
// most of the changelog thread's CPU, at each checkpoint, and the Kafka result sink
// paid the same on the main thread for its writes of up to 2,000 results.
//
// `installFastGrouping` puts a function with the same result (per partition, its
// messages in the order given; the partitioner called once per message, in order) in
// place of that module in this thread's module cache, before kafkajs's producer loads
// it; nothing in node_modules changes. It does so only for the kafkajs version it was
// written against, and only while no kafkajs module that holds the original is loaded:
// otherwise kafkajs groups as before. test/kafka/grouping.test.ts checks both give the same.
import { installInPlaceOf } from './kafkajs-modules';

const REPLACED = 'src/producer/groupMessagesPerPartition.js';
/** The kafkajs module that holds the replaced one once loaded: installing after it would change nothing. */
const HOLDER = 'src/producer/sendMessages.js';

export interface GroupArgs<M> {
  topic: string;
  partitionMetadata: readonly unknown[];
  messages: readonly M[];
  partitioner: (args: { topic: string; partitionMetadata: readonly unknown[]; message: M }) => number;
}

/** kafkajs's groupMessagesPerPartition, without the copy per message. */
export function groupMessagesPerPartition<M>({ topic, partitionMetadata, messages, partitioner }: GroupArgs<M>): Record<number, M[]> {
  const result: Record<number, M[]> = {};
  if (partitionMetadata.length === 0) return result;
  for (const message of messages) {
    const partition = partitioner({ topic, partitionMetadata, message });
    (result[partition] ??= []).push(message);
  }
  return result;
}

/**
 * Puts groupMessagesPerPartition in place of kafkajs's in this thread's module cache.
 * True when it is in place (now or before); false, changing nothing, when kafkajs is
 * not the version it was written for or when its producer was already loaded.
 */
export function installFastGrouping(): boolean {
  return installInPlaceOf(REPLACED, HOLDER, groupMessagesPerPartition);
}

installFastGrouping();
