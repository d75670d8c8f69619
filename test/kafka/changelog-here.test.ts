// The changelog's Kafka clients on the main thread (Changelog.startHere, as
// processing.backgroundThreads `main` has them), against the real broker: the topic is
// created, transactions commit, a restore reads what a changelog thread reads, a
// fenced producer fails as FencedError, and a closed changelog refuses requests.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Changelog } from '../../src/changelog/thread';
import { FencedError } from '../../src/changelog/errors';
import type { ChangelogKafkaOptions, RestoreResult } from '../../src/changelog/kafka';
import { ChangeBatchWriter, readChangeBatch, type ChangeBatch } from '../../src/state/batch';
import { BROKERS, createTopic, unique } from './helpers/kafka';

function batchOf(entries: Array<[string, string | null]>): ChangeBatch {
  const w = new ChangeBatchWriter(64);
  for (const [k, v] of entries) {
    if (v === null) w.delete(k);
    else w.put(k, Buffer.from(v));
  }
  return w.finish();
}

/** A restore as plain data: its keys' values (null: deleted), partition record and end. */
function plainOf(r: RestoreResult): { entries: Record<string, string | null>; partitionRecord: string | undefined; end: string; records: number } {
  const entries: Record<string, string | null> = {};
  readChangeBatch(r.batch, (k, v) => (entries[k] = v === null ? null : Buffer.from(v).toString()));
  return { entries, partitionRecord: r.partitionRecord, end: r.end, records: r.records };
}

test('the changelog on the main thread: creates its topic, commits, restores what a changelog thread restores, and is fenced as FencedError', async () => {
  const topic = unique('weir-clhere');
  await createTopic(topic, 2);
  const groupId = unique('g');
  const o: ChangelogKafkaOptions = { brokers: BROKERS, clientId: 'weir-test', ssl: false, groupId, topic, changelog: `${groupId}-changelog`, create: true, transactionTimeoutMs: 10_000 };
  const here = await Changelog.startHere(o);
  let thread: Changelog | undefined;
  try {
    assert.equal(here.topic, o.changelog);
    assert.equal(here.partitions, 2, 'the changelog topic has the input topic\'s partitions');
    await here.open(1);
    let offset = '';
    const rounds: Array<Array<[string, string | null]>> = [
      [['a', 'a0'], ['b', 'b0']],
      [['a', 'a1'], ['c', 'c1']],
      [['b', null], ['d', 'd2']],
    ];
    for (const [t, entries] of rounds.entries()) offset = await here.commit(1, [batchOf(entries)], JSON.stringify({ t }), String(100 * (t + 1)));
    assert.ok(BigInt(offset) > 0n);

    const mine = plainOf(await here.restore(1, '0'));
    assert.deepEqual(mine.entries, { a: 'a1', b: null, c: 'c1', d: 'd2' });
    assert.equal(mine.partitionRecord, JSON.stringify({ t: 2 }));
    assert.equal(BigInt(mine.end), BigInt(offset) + 1n, 'read up to the last transaction\'s marker');

    // A changelog thread reads the same, and its open fences this one's producer.
    thread = await Changelog.start(o);
    assert.deepEqual(plainOf(await thread.restore(1, '0')), mine);
    await thread.open(1);
    await assert.rejects(here.commit(1, [batchOf([['late', 'x']])], '{}', '400'), (e: unknown) => {
      assert.ok(e instanceof FencedError, String(e));
      assert.equal(e.partition, 1);
      return true;
    });
    // The new owner goes on; what the fenced one tried is not there.
    await thread.commit(1, [batchOf([['e', 'e3']])], JSON.stringify({ t: 3 }), '500');
    const after = plainOf(await here.restore(1, '0'));
    assert.equal(after.entries['late'], undefined);
    assert.equal(after.entries['e'], 'e3');
    assert.equal(after.partitionRecord, JSON.stringify({ t: 3 }));
  } finally {
    await Promise.allSettled([here.shutdown(), thread?.shutdown()]);
  }
  await assert.rejects(here.open(0), /the changelog is closed/);
});

test('the changelog on the main thread: a topic it may not create fails its start as on a thread', async () => {
  const topic = unique('weir-clhere-missing');
  await createTopic(topic, 1);
  const groupId = unique('g');
  const o: ChangelogKafkaOptions = { brokers: BROKERS, clientId: 'weir-test', ssl: false, groupId, topic, changelog: `${groupId}-changelog`, create: false, transactionTimeoutMs: 10_000 };
  // As a changelog thread's start says it.
  await assert.rejects(Changelog.startHere(o), (e: Error) => e.message.includes(`changelog.topic: "${o.changelog}" does not exist`));
  await assert.rejects(Changelog.start(o), (e: Error) => e.message.includes(`changelog.topic: "${o.changelog}" does not exist`));
});
