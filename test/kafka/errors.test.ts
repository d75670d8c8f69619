// A critical failure with a Kafka source (README, Errors): the dead-letter queue
// cannot be written (/dev/full: ENOSPC) at a malformed record in the middle of the
// topic. The run stops gracefully: exit 1 with one line naming the dead-letter file,
// the consumer leaves its group, and no checkpoint or committed offset goes past the
// failed record (state never ahead of what was delivered). A restart with a
// writable dead-letter file recovers from the last checkpoint and ends with exactly
// the results and dead letters of a run that never failed.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Kafka, logLevel } from 'kafkajs';
import type { DeadLetter, WindowResult } from '../../src/pipeline/types';
import { BROKERS, createTopic, produce, unique } from './helpers/kafka';
import { assertSameFinals, deadLetterSet, finalResults, kafkaRunConfig, readLines, spawnWeir, writeConfig } from './helpers/weir';

// Enough records before the bad one that checkpoints complete while they are read: a
// checkpoint completes in the background while the loop goes on (tens of batches).
const N = 44_000;
const BAD_OFFSET = 40_000;
const NO_STACK = /^\s+at \S+ \(|^\s+at \//m;

function config(dir: string, topic: string, group: string, deadLetterPath: string): string {
  return writeConfig(
    dir,
    kafkaRunConfig(dir, topic, group, {
      eventTime: { maxOutOfOrdernessMs: 0, allowedLatenessMs: 0 },
      aggregations: [{ name: 'lat', groupBy: ['data.model'], value: 'data.latency_ms', window: { type: 'tumbling', sizeMs: 1000 } }],
      deadLetter: { type: 'file', path: deadLetterPath },
      // A checkpoint as soon as the one before completes, so that some are taken before the
      // failure, each in the local cache (checkpointOffsets reads them there).
      checkpoint: { dir: join(dir, 'checkpoints'), intervalMs: 1, retain: 1000 },
      changelog: { cacheIntervalMs: 0 },
      processing: { batchSize: 8, instanceId: 'weir-test' },
    }),
  );
}

function checkpointOffsets(dir: string): bigint[] {
  const root = join(dir, 'checkpoints');
  if (!existsSync(root)) return [];
  return readdirSync(root)
    .filter((n) => /^checkpoint-\d+$/.test(n))
    .flatMap((n) => (JSON.parse(readFileSync(join(root, n, 'metadata.json'), 'utf8')) as { partitions: Array<{ offset: string }> }).partitions.map((p) => BigInt(p.offset)));
}

test('the dead-letter queue fails mid-topic: exit 1, group left, no checkpoint or commit past the failure; a restart recovers exactly', async () => {
  const topic = unique('weir-errors');
  await createTopic(topic, 1);
  const values = Array.from({ length: N }, (_, i) => JSON.stringify({ id: `e-${i}`, timestamp: i * 250, data: { model: i % 2 === 0 ? 'a' : 'b', latency_ms: i + 1 } }));
  values[BAD_OFFSET] = 'not json';
  await produce(topic, values.map((value) => ({ value })));

  // What a run that never failed gives.
  const refDir = mkdtempSync(join(tmpdir(), 'weir-errors-ref-'));
  const ref = await spawnWeir(config(refDir, topic, unique('ref'), join(refDir, 'dlq.jsonl'))).exit;
  assert.equal(ref.code, 0, ref.stderr.slice(-2000));
  const want = finalResults(readLines<WindowResult>(join(refDir, 'results.jsonl')));
  const wantDead = deadLetterSet(readLines<DeadLetter>(join(refDir, 'dlq.jsonl')));
  assert.deepEqual(wantDead, [`0|${BAD_OFFSET}|malformed|`]);

  const dir = mkdtempSync(join(tmpdir(), 'weir-errors-'));
  const group = unique('errors');
  const failed = await spawnWeir(config(dir, topic, group, '/dev/full')).exit;
  assert.equal(failed.signal, null, 'exited by itself: source, sinks and state closed');
  assert.equal(failed.code, 1, failed.stderr.slice(-2000));
  const lines = failed.stderr.trim().split('\n');
  // The failed write, or a checkpoint's flush of the same file just before it, names the file.
  assert.match(lines.at(-1)!, /^weir: (cannot write 1 dead letter\(s\) to the dead-letter queue, stopping: )?cannot write deadLetter file \/dev\/full: ENOSPC: no space left on device/);
  assert.doesNotMatch(failed.stderr, NO_STACK);
  const logs = lines.slice(0, -1).map((l) => JSON.parse(l) as { level: string; msg: string; kind?: string; reason?: string });
  assert.ok(logs.some((l) => l.msg.startsWith('run failed') && l.kind === 'critical'), failed.stderr.slice(-2000));
  assert.ok(!logs.some((l) => l.reason === 'stop' || l.reason === 'end of input'), 'no final checkpoint after the failure');

  // Checkpoints were taken before the failure, none past it; the group's offset is not past it either.
  const offsets = checkpointOffsets(dir);
  assert.ok(offsets.some((o) => o > 0n), `checkpoints before the failure: ${offsets.join(', ')}`);
  for (const o of offsets) assert.ok(o <= BigInt(BAD_OFFSET), `checkpoint at offset ${o} is past the failed record ${BAD_OFFSET}`);
  const admin = new Kafka({ brokers: BROKERS, logLevel: logLevel.NOTHING }).admin();
  await admin.connect();
  try {
    const [committed] = await admin.fetchOffsets({ groupId: group, topics: [topic] });
    const c = BigInt(committed!.partitions.find((p) => p.partition === 0)!.offset);
    assert.ok(c > 0n && c <= BigInt(BAD_OFFSET), `committed offset ${c}`);
    // A consumer that closed left the group at once (a crashed one would stay until its session timed out).
    const { groups } = await admin.describeGroups([group]);
    assert.deepEqual(groups[0]!.members, [], 'the consumer left its group');
  } finally {
    await admin.disconnect();
  }
  // What was delivered before the stop is complete JSON lines.
  assert.ok(readFileSync(join(dir, 'results.jsonl'), 'utf8').endsWith('\n'));

  // The supervisor's restart, with the dead-letter queue writable again: recovery takes over.
  const again = await spawnWeir(config(dir, topic, group, join(dir, 'dlq.jsonl'))).exit;
  assert.equal(again.code, 0, again.stderr.slice(-2000));
  assert.match(again.stderr, /partition 0 restored from checkpoint \d+/);
  assertSameFinals(finalResults(readLines<WindowResult>(join(dir, 'results.jsonl'))), want, 'failed run + restart');
  assert.deepEqual(deadLetterSet(readLines<DeadLetter>(join(dir, 'dlq.jsonl'))), wantDead);
});
