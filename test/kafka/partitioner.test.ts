// Weir's Kafka producers' partitioner (src/sinks/partitioner.ts) puts every message
// where kafkajs's DefaultPartitioner (the Java client's) puts it: by the murmur2 of its
// key, string or Buffer, whatever its characters and length, for any number of
// partitions; at its own partition when it names one; round robin over the partitions
// with a leader when it has no key.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Partitioners, type PartitionerArgs } from 'kafkajs';
import { JavaCompatiblePartitioner, keyHash } from '../../src/sinks/partitioner';

/** A deterministic pseudo-random sequence (the test's keys are the same on every run). */
function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32);
}

const meta = (n: number, leaderless: number[] = []) => Array.from({ length: n }, (_, partitionId) => ({ partitionId, leader: leaderless.includes(partitionId) ? -1 : 0, replicas: [0], isr: [0] }));

function keys(): Array<string | Buffer> {
  const r = rng(7);
  const out: Array<string | Buffer> = ['', 'a', 'ab', 'abc', 'abcd', 'abcde', 'user_sessions:u-123:1700000000000_1700000002000', 'é', '日本語のキー', '😀 emoji', 'lone \ud800 surrogate', 'x'.repeat(5000)];
  const alphabet = 'abcdefghijklmnopqrstuvwxyz0123456789:_-éß日😀';
  for (let i = 0; i < 3000; i++) {
    const len = Math.floor(r() * 80);
    let s = '';
    for (let j = 0; j < len; j++) s += [...alphabet][Math.floor(r() * [...alphabet].length)];
    out.push(s);
  }
  for (let i = 0; i < 500; i++) out.push(Buffer.from(Array.from({ length: Math.floor(r() * 40) }, () => Math.floor(r() * 256))));
  return out;
}

test("every keyed message goes to kafkajs's DefaultPartitioner's partition", () => {
  const theirs = Partitioners.DefaultPartitioner();
  const ours = JavaCompatiblePartitioner();
  for (const n of [1, 2, 3, 4, 7, 12, 100]) {
    const partitionMetadata = meta(n);
    for (const key of keys()) {
      const args = { topic: 't', partitionMetadata, message: { key, value: 'v' } } as PartitionerArgs;
      assert.equal(ours(args), theirs(args), `key ${JSON.stringify(String(key)).slice(0, 80)}, ${n} partitions`);
    }
  }
  // The scratch buffer of string keys grows: a long key after short ones, then short ones again.
  const h = keyHash('k'.repeat(100_000));
  assert.equal(keyHash('k'.repeat(100_000)), h);
  assert.equal(keyHash('abc'), keyHash(Buffer.from('abc')));
});

test('a message with its own partition goes there; without a key, round robin over partitions with a leader', () => {
  const ours = JavaCompatiblePartitioner();
  assert.equal(ours({ topic: 't', partitionMetadata: meta(4), message: { key: 'k', value: 'v', partition: 3 } } as PartitionerArgs), 3);
  const partitionMetadata = meta(5, [1, 3]);
  const seen: number[] = [];
  for (let i = 0; i < 9; i++) seen.push(ours({ topic: 't', partitionMetadata, message: { key: null, value: 'v' } } as PartitionerArgs));
  // Consecutive, cycling over 0, 2, 4 from wherever the random start put it.
  const order = [0, 2, 4];
  const first = order.indexOf(seen[0]!);
  assert.notEqual(first, -1);
  assert.deepEqual(seen, seen.map((_, i) => order[(first + i) % 3]));
  // No partition with a leader: round robin over all of them.
  const none = meta(3, [0, 1, 2]);
  const some = new Set(Array.from({ length: 6 }, () => ours({ topic: 'u', partitionMetadata: none, message: { key: null, value: 'v' } } as PartitionerArgs)));
  assert.deepEqual([...some].sort(), [0, 1, 2]);
});
