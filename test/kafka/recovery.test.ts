// Crash recovery against the real broker and RocksDB: `weir run` is killed with
// SIGKILL at random moments and at each step of a checkpoint, restarted each time,
// and what all its runs wrote together must equal one uninterrupted run.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { generateLines } from '../../src/sources/eventgen';
import type { DeadLetter, WindowResult } from '../../src/pipeline/types';
import { Client } from 'pg';
import { Kafka, logLevel } from 'kafkajs';
import { checksumOf, type CheckpointMetadata } from '../../src/checkpoint/store';
import { openStateBackend } from '../../src/state';
import { BROKERS, createTopic, produce, unique } from './helpers/kafka';
import {
  assertNeverHigher, assertSameFinals, deadLetterSet, dropSuperseded, finalResults, windowId, kafkaRunConfig, readLines, runThroughCrashes, sleep, spawnWeir, writeConfig, type CrashStep,
} from './helpers/weir';

const PG_URL = process.env['WEIR_TEST_POSTGRES_URL'] ?? 'postgres://postgres@127.0.0.1:5432/test';
const EVENTS = generateLines(30_000, { seed: 7, eventsPerSecond: 40, outOfOrderMs: 5000, lateFraction: 0.01, invalidFraction: 0.005, malformedFraction: 0.002, users: 60 });

async function topicWith(lines: readonly string[], partitions = 1, perSend = 500): Promise<string> {
  const topic = unique('weir-recovery');
  await createTopic(topic, partitions);
  await produce(topic, lines.map((value) => ({ value })), perSend);
  return topic;
}

/** One uninterrupted run of `topic` (its own group and directories). */
async function reference(topic: string): Promise<{ results: WindowResult[]; dlq: DeadLetter[] }> {
  const dir = mkdtempSync(join(tmpdir(), 'weir-ref-'));
  const { exit } = spawnWeir(writeConfig(dir, kafkaRunConfig(dir, topic, unique('ref'))));
  const e = await exit;
  assert.equal(e.code, 0, e.stderr);
  return { results: readLines<WindowResult>(join(dir, 'results.jsonl')), dlq: readLines<DeadLetter>(join(dir, 'dlq.jsonl')) };
}

test('kill -9 at random moments and inside checkpoints: the restarted runs together give the uninterrupted results', async () => {
  const topic = await topicWith(EVENTS);
  const ref = await reference(topic);
  const want = finalResults(ref.results);
  assert.ok(want.size > 300, `reference has ${want.size} windows`);

  const dir = mkdtempSync(join(tmpdir(), 'weir-crash-'));
  // Small fetches: the run takes seconds, so kills land in the middle of it.
  const base = kafkaRunConfig(dir, topic, unique('crash'));
  // Results go to a file and to PostgreSQL (upserts): after the crashes, the table holds exactly the final results.
  const table = `weir_crash_${Date.now()}_${Math.floor(Math.random() * 1e6)}`;
  const sinks = [...(base['sinks'] as object[]), { type: 'postgres', url: PG_URL, table }];
  const cfg = writeConfig(dir, { ...base, sinks, source: { ...(base['source'] as object), maxBytesPerPartition: 8192 }, checkpoint: { dir: join(dir, 'checkpoints'), intervalMs: 20, retain: 3 } });
  // Crashes at every step of a checkpoint, then kills at random moments, then runs until one finishes.
  // The steps after a barrier run while batches after it are processed: a kill there finds state past the barrier in memory.
  const plan: CrashStep[] = [
    { fault: 'barrier-taken:2' },
    { fault: 'state-written:2' },
    { fault: 'sinks-flushed:2' },
    { fault: 'metadata-staged:2' },
    { fault: 'metadata-written:2' },
    // Random moments once the run is consuming (its first checkpoint is done): some land inside a checkpoint.
    ...[0, 1, 2].map(() => ({ killAfterMs: Math.floor(Math.random() * 300) })),
  ];
  const exits = await runThroughCrashes(cfg, plan);
  const killed = exits.length - 1;
  assert.ok(killed >= 5, `only ${killed} runs were killed`);
  // Every restart after the first resumed from a checkpoint, not from scratch.
  const resumed = exits.slice(1).filter((e) => /restored from checkpoint/.test(e.stderr)).length;
  assert.ok(resumed >= exits.length - 2, `${resumed} of ${exits.length - 1} restarts restored a checkpoint`);

  const results = readLines<WindowResult>(join(dir, 'results.jsonl'));
  assertSameFinals(finalResults(results), want, 'after crashes');
  assertNeverHigher(results, want, 'after crashes');
  assert.deepEqual(deadLetterSet(readLines<DeadLetter>(join(dir, 'dlq.jsonl'))), deadLetterSet(ref.dlq));
  const pg = new Client({ connectionString: PG_URL });
  await pg.connect();
  try {
    const rows = await pg.query<{ name: string; key: string; window_start: string; window_end: string; count: number; sum: number; min: number; max: number; avg: number; stddev: number; p50: number; p95: number; p99: number }>(`SELECT * FROM "${table}"`);
    const inTable = new Map<string, WindowResult>();
    for (const r of rows.rows) {
      const w: WindowResult = {
        name: r.name, key: r.key, group: {}, window: { start: Number(r.window_start), end: Number(r.window_end) },
        results: { count: r.count, sum: r.sum, avg: r.avg, min: r.min, max: r.max, p50: r.p50, p95: r.p95, p99: r.p99, stddev: r.stddev }, late: false, emittedAt: 0,
      };
      inTable.set(windowId(w), w);
    }
    assertSameFinals(dropSuperseded(inTable), want, 'PostgreSQL table after crashes');
    await pg.query(`DROP TABLE "${table}"`);
  } finally {
    await pg.end();
  }
  // Retention: at most `retain` checkpoints, no temporary directory left.
  const left = readdirSync(join(dir, 'checkpoints'));
  assert.ok(left.filter((n) => n.startsWith('checkpoint-')).length <= 3, left.join(' '));
  assert.equal(left.filter((n) => n.startsWith('.tmp')).length, 0, left.join(' '));
});

test('a truncated or corrupted newest checkpoint: recovery warns, names it, and uses the one before', async () => {
  const topic = await topicWith(EVENTS.slice(0, 12_000));
  const ref = await reference(topic);
  const want = finalResults(ref.results);
  for (const damage of ['truncate', 'corrupt'] as const) {
    const dir = mkdtempSync(join(tmpdir(), `weir-${damage}-`));
    const base = kafkaRunConfig(dir, topic, unique(damage));
    const cfg = writeConfig(dir, { ...base, source: { ...(base['source'] as object), maxBytesPerPartition: 8192 }, checkpoint: { dir: join(dir, 'checkpoints'), intervalMs: 20, retain: 3 } });
    // Crash right after checkpoint 2 became durable (a short run may take only two: each commits a transaction).
    const first = await spawnWeir(cfg, { WEIR_FAULT: 'metadata-written:2' }).exit;
    assert.equal(first.signal, 'SIGKILL', first.stderr.slice(-2000));
    const ids = readdirSync(join(dir, 'checkpoints')).filter((n) => n.startsWith('checkpoint-')).map((n) => Number(n.slice(11))).sort((a, b) => b - a);
    const newest = join(dir, 'checkpoints', `checkpoint-${ids[0]}`, 'metadata.json');
    const text = readFileSync(newest, 'utf8');
    writeFileSync(newest, damage === 'truncate' ? text.slice(0, text.length >> 1) : text.replace(/"offset": "(\d+)"/, (_m, o: string) => `"offset": "${Number(o) + 1}"`));
    const second = await spawnWeir(cfg).exit;
    assert.equal(second.code, 0, second.stderr.slice(-2000));
    assert.match(second.stderr, new RegExp(`skipping checkpoint ${ids[0]}: checkpoint .*checkpoint-${ids[0]}/metadata.json: ${damage === 'truncate' ? 'is not valid JSON' : 'checksum does not match'}`));
    assert.match(second.stderr, new RegExp(`restored from checkpoint ${ids[1]}`));
    const results = readLines<WindowResult>(join(dir, 'results.jsonl'));
    assertSameFinals(finalResults(results), want, damage);
    assertNeverHigher(results, want, damage);
    if (damage === 'corrupt') {
      // The same checkpoints with other aggregations: refused, naming the directory, no stack trace.
      const other = writeConfig(dir, { ...(JSON.parse(readFileSync(cfg, 'utf8')) as Record<string, unknown>), aggregations: [{ name: 'only', value: 'data.tokens', window: { type: 'tumbling', sizeMs: 1000 } }] });
      const refused = await spawnWeir(other).exit;
      assert.equal(refused.code, 1, refused.stderr.slice(-2000));
      assert.doesNotMatch(refused.stderr, /\bat \S+ \(/, 'no stack trace');
      assert.match(refused.stderr, new RegExp(`checkpoint \\d+ in ${join(dir, 'checkpoints')} was taken with another source topic, other aggregations`));
    }
    await sleep(0);
  }
});

test('SIGTERM: a final checkpoint, offsets committed to it, exit 0; the next run resumes there and the results are exact', async () => {
  // The first run reads live (unbounded): only the signal ends it, however slowly its
  // checkpoints complete (on a busy machine a bounded run could reach the end of the
  // topic first and stop with its end-of-input checkpoint). The rest of the input comes
  // after it stopped; the second run reads to the end.
  const topic = await topicWith(EVENTS.slice(0, 12_000), 1, 20);
  const dir = mkdtempSync(join(tmpdir(), 'weir-sigterm-'));
  const group = unique('term');
  const base = kafkaRunConfig(dir, topic, group);
  const settings = { ...base, source: { ...(base['source'] as object), maxBytesPerPartition: 4096 }, checkpoint: { dir: join(dir, 'checkpoints'), intervalMs: 50, retain: 3 } };
  const cfg = writeConfig(dir, settings);
  const live = join(dir, 'live.json');
  writeFileSync(live, JSON.stringify({ ...settings, source: { ...settings.source, bounded: false } }));
  const first = spawnWeir(live);
  let sent = false;
  first.child.stderr!.on('data', (d: Buffer) => {
    if (!sent && /checkpoint 3 done/.test(d.toString())) {
      sent = true;
      first.child.kill('SIGTERM');
    }
  });
  const e = await first.exit;
  assert.ok(sent, 'the run ended before it could be stopped');
  assert.equal(e.code, 0, e.stderr.slice(-2000));
  const stop = /"checkpoint":(\d+),"reason":"stop"/.exec(e.stderr);
  assert.ok(stop, 'a checkpoint was taken at stop');
  // The committed offsets are the stop checkpoint's.
  const meta = JSON.parse(readFileSync(join(dir, 'checkpoints', `checkpoint-${stop[1]}`, 'metadata.json'), 'utf8')) as { partitions: Array<{ partition: number; offset: string }> };
  const admin = new Kafka({ brokers: BROKERS, logLevel: logLevel.NOTHING }).admin();
  await admin.connect();
  try {
    const [committed] = await admin.fetchOffsets({ groupId: group, topics: [topic] });
    const byPartition = new Map(committed!.partitions.map((p) => [p.partition, p.offset]));
    for (const p of meta.partitions) assert.equal(byPartition.get(p.partition), p.offset, `partition ${p.partition}`);
  } finally {
    await admin.disconnect();
  }
  await produce(topic, EVENTS.slice(12_000, 24_000).map((value) => ({ value })));
  const ref = await reference(topic);
  const want = finalResults(ref.results);
  // The stop checkpoint as a version-1 checkpoint (SHA-256 digest terms) would have it: it restores all the same.
  await asVersion1(dir, Number(stop[1]));
  const second = await spawnWeir(cfg).exit;
  assert.equal(second.code, 0, second.stderr.slice(-2000));
  assert.match(second.stderr, new RegExp(`restored from checkpoint ${stop[1]}\\b.*reading from offset ${meta.partitions[0]!.offset}\\b`));
  assert.doesNotMatch(second.stderr, /skipping checkpoint/);
  const results = readLines<WindowResult>(join(dir, 'results.jsonl'));
  assertSameFinals(finalResults(results), want, 'after SIGTERM and a restart');
  assertNeverHigher(results, want, 'after SIGTERM and a restart');
});

/**
 * Rewrites checkpoint `id` of the run in `dir` as a version-1 checkpoint: each
 * partition's state summary with SHA-256 digest terms, read back from its RocksDB store.
 */
async function asVersion1(dir: string, id: number): Promise<void> {
  const path = join(dir, 'checkpoints', `checkpoint-${id}`, 'metadata.json');
  const meta = JSON.parse(readFileSync(path, 'utf8')) as CheckpointMetadata;
  assert.equal(meta.version, 2);
  const backend = await openStateBackend({ backend: 'rocksdb', dir: join(dir, 'state') }, 'weir-test');
  try {
    for (const pc of meta.partitions) {
      const ps = await backend.open(pc.partition);
      const { summary } = await ps.restore(id, 'sha256');
      await ps.close();
      assert.equal(summary.entries, pc.state.entries);
      assert.notEqual(summary.digest, pc.state.digest, 'the SHA-256 digest differs from the XXH64 one');
      pc.state = summary;
    }
  } finally {
    await backend.close();
  }
  const v1 = { ...meta, version: 1 as const };
  writeFileSync(path, JSON.stringify({ ...v1, checksum: checksumOf(v1) }));
}
