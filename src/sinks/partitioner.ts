// The partitioner of Weir's Kafka producers: kafkajs's DefaultPartitioner (the Java
// client's: murmur2 of the key), computed without allocating.
//
// kafkajs computes murmur2 on its Long class (64-bit integers as objects: several per
// byte of the key, and a string per call) and filters the partition list for every
// message. At 20,000 events/s with 20,000 users that was over half of what the main
// thread allocated (the Kafka result sink partitions every result by its key), and much
// of its collections. The hash only ever needs the low 32 bits of those products and
// xors, so it is the Java client's Utils.murmur2 in 32-bit arithmetic (Math.imul): the
// same partition for every key (test/kafka/partitioner.test.ts compares them), so a
// result goes where it went before, and where the Java client would put it.
import { randomBytes } from 'node:crypto';
import type { ICustomPartitioner, PartitionerArgs } from 'kafkajs';

const SEED = 0x9747b28c;
const M = 0x5bd1e995;

/** Kafka's murmur2 of data[0, length), as a signed 32-bit integer (Utils.murmur2). */
export function murmur2(data: Uint8Array, length = data.length): number {
  let h = (SEED ^ length) | 0;
  const length4 = length >>> 2;
  for (let i = 0; i < length4; i++) {
    const i4 = i * 4;
    let k = data[i4]! | (data[i4 + 1]! << 8) | (data[i4 + 2]! << 16) | (data[i4 + 3]! << 24);
    k = Math.imul(k, M);
    k ^= k >>> 24;
    k = Math.imul(k, M);
    h = Math.imul(h, M) ^ k;
  }
  // The last 1 to 3 bytes (the Java code's switch falls through).
  const tail = length & ~3, rest = length & 3;
  if (rest > 0) {
    if (rest === 3) h ^= data[tail + 2]! << 16;
    if (rest >= 2) h ^= data[tail + 1]! << 8;
    h ^= data[tail]!;
    h = Math.imul(h, M);
  }
  h ^= h >>> 13;
  h = Math.imul(h, M);
  h ^= h >>> 15;
  return h | 0;
}

/** Where string keys are encoded (UTF-8) to be hashed; grown as needed. */
let scratch = Buffer.allocUnsafe(1024);

/** murmur2 of a message key as kafkajs hashes it: a Buffer as it is, anything else as the UTF-8 of String(key). */
export function keyHash(key: unknown): number {
  if (Buffer.isBuffer(key)) return murmur2(key);
  const s = String(key);
  if (s.length * 3 > scratch.length) scratch = Buffer.allocUnsafe(Math.max(s.length * 3, scratch.length * 2));
  return murmur2(scratch, scratch.write(s, 0, 'utf8'));
}

const toPositive = (x: number): number => x & 0x7fffffff;

/**
 * kafkajs's DefaultPartitioner: the message's own partition if it has one, else by the
 * murmur2 of its key, else round robin over the partitions that have a leader (from a
 * random start per topic).
 */
export const JavaCompatiblePartitioner: ICustomPartitioner = () => {
  const counters = new Map<string, number>();
  const next = (topic: string): number => {
    const c = (counters.get(topic) ?? randomBytes(4).readUInt32BE(0)) + 1;
    counters.set(topic, c);
    return c;
  };
  return ({ topic, partitionMetadata, message }: PartitionerArgs): number => {
    if (message.partition !== null && message.partition !== undefined) return message.partition;
    if (message.key !== null && message.key !== undefined) return toPositive(keyHash(message.key)) % partitionMetadata.length;
    let available = 0;
    for (const p of partitionMetadata) if (p.leader >= 0) available++;
    if (available === 0) return toPositive(next(topic)) % partitionMetadata.length;
    let i = toPositive(next(topic)) % available;
    for (const p of partitionMetadata) if (p.leader >= 0 && i-- === 0) return p.partitionId;
    return 0; // not reached
  };
};
