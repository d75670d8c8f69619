// Input written in transactions: Weir reads committed records only (READ_COMMITTED), also
// when the transactions of several producers interleave in a partition and their markers
// come in another order than their first records, as they do in a topic that Weir's own
// exactly-once results go to (one transactional producer per input partition).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Kafka, logLevel } from 'kafkajs';
import { generateLines } from '../../src/sources/eventgen';
import type { WindowResult } from '../../src/pipeline/types';
import { BROKERS, createTopic, produce, unique } from './helpers/kafka';
import { assertSameFinals, finalResults, kafkaRunConfig, readLines, spawnWeir, writeConfig } from './helpers/weir';

const client = new Kafka({ clientId: 'weir-test', brokers: BROKERS, logLevel: logLevel.NOTHING });

async function run(topic: string): Promise<Map<string, WindowResult>> {
  const dir = mkdtempSync(join(tmpdir(), 'weir-txn-'));
  const e = await spawnWeir(writeConfig(dir, kafkaRunConfig(dir, topic, unique('txn')))).exit;
  assert.equal(e.code, 0, e.stderr.slice(-2000));
  return finalResults(readLines<WindowResult>(join(dir, 'results.jsonl')));
}

test('records of aborted transactions are not counted, however two producers\' transactions interleave', async () => {
  const lines = generateLines(6000, { seed: 5, eventsPerSecond: 50, outOfOrderMs: 2000, users: 40 });
  const chunks: string[][] = [];
  for (let i = 0; i < lines.length; i += 250) chunks.push(lines.slice(i, i + 250));
  const topic = unique('weir-txn-in');
  await createTopic(topic, 1);
  const producers = await Promise.all(
    ['a', 'b'].map(async (id) => {
      const p = client.producer({ transactionalId: unique(`weir-txn-${id}`), idempotent: true, maxInFlightRequests: 1 });
      await p.connect();
      return p;
    }),
  );
  const committed: string[] = [];
  try {
    // Per round: A begins, B begins, then both end, in a varying order, each with commit or abort.
    for (let i = 0; i + 1 < chunks.length; i += 2) {
      const [ta, tb] = [await producers[0]!.transaction(), await producers[1]!.transaction()];
      await ta.send({ topic, messages: chunks[i]!.map((value) => ({ value })) });
      await tb.send({ topic, messages: chunks[i + 1]!.map((value) => ({ value })) });
      const round = i / 2;
      const aCommits = round % 3 !== 0, bCommits = round % 2 === 0;
      const ends = [async () => (aCommits ? ta.commit() : ta.abort()), async () => (bCommits ? tb.commit() : tb.abort())];
      // B's marker first in odd rounds: A's aborted records then come before a marker of B.
      for (const end of round % 2 === 1 ? ends.reverse() : ends) await end();
      if (aCommits) committed.push(...chunks[i]!);
      if (bCommits) committed.push(...chunks[i + 1]!);
    }
  } finally {
    await Promise.all(producers.map((p) => p.disconnect()));
  }
  assert.ok(committed.length > 0 && committed.length < lines.length);
  // The reference: the committed records alone, written plainly, in the same order.
  const plain = unique('weir-txn-plain');
  await createTopic(plain, 1);
  await produce(plain, committed.map((value) => ({ value })));
  const [got, want] = await Promise.all([run(topic), run(plain)]);
  assert.ok(want.size > 50, `${want.size} windows`);
  assertSameFinals(got, want, 'from the transactional topic');
});
