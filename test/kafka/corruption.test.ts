// A partition's RocksDB state damaged between two runs (bytes of its MANIFEST
// overwritten): with state.onCorruption: fail (the default)
// the run stops with one line naming the damaged directory and what to do; with
// rebuild it moves the directory aside, says so, rebuilds the partition from the
// earliest offset, and the final results equal an uninterrupted run's.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { generateLines } from '../../src/sources/eventgen';
import type { DeadLetter, WindowResult } from '../../src/pipeline/types';
import { createTopic, produce, unique } from './helpers/kafka';
import { assertSameFinals, deadLetterSet, finalResults, kafkaRunConfig, readLines, spawnWeir, writeConfig } from './helpers/weir';

const EVENTS = generateLines(8000, { seed: 11, eventsPerSecond: 40, outOfOrderMs: 5000, lateFraction: 0.01, invalidFraction: 0.005, malformedFraction: 0.002, users: 30 });
const NO_STACK = /^\s+at \S+ \(|^\s+at \//m;

/**
 * Overwrites 32 bytes of `file`'s first record with garbage, past its 7-byte header:
 * a checksum that no longer matches, which RocksDB reports wherever the record lies.
 * (Bytes in the middle of a MANIFEST can land in the header of its last record, and
 * a last record whose length runs past the end reads as a write cut short by a
 * crash: RocksDB then opens without it, and the run goes on from the changelog.)
 */
function damage(file: string): void {
  const b = readFileSync(file);
  b.fill(0x5a, 10, Math.min(b.length, 42));
  writeFileSync(file, b);
}

test('corrupt RocksDB state: fail names the directory; rebuild moves it aside and gives the uninterrupted results', async () => {
  const topic = unique('weir-corrupt');
  // One partition: with several, which events come late depends on how their reads interleave.
  await createTopic(topic, 1);
  await produce(topic, EVENTS.map((value) => ({ value })));

  const refDir = mkdtempSync(join(tmpdir(), 'weir-corrupt-ref-'));
  const ref = await spawnWeir(writeConfig(refDir, kafkaRunConfig(refDir, topic, unique('ref')))).exit;
  assert.equal(ref.code, 0, ref.stderr);
  const want = finalResults(readLines<WindowResult>(join(refDir, 'results.jsonl')));
  assert.ok(want.size > 50, `reference has ${want.size} windows`);

  const dir = mkdtempSync(join(tmpdir(), 'weir-corrupt-'));
  const plain = kafkaRunConfig(dir, topic, unique('g'));
  const base: Record<string, unknown> = {
    ...plain,
    source: { ...(plain['source'] as object), maxBytesPerPartition: 8192 },
    checkpoint: { ...(plain['checkpoint'] as object), intervalMs: 20 },
  };
  // Run 1: killed right after its second checkpoint is durable, so the partition has RocksDB state and a checkpoint.
  const first = await spawnWeir(writeConfig(dir, base), { WEIR_FAULT: 'metadata-written:2' }).exit;
  assert.equal(first.signal, 'SIGKILL', first.stderr.slice(-2000));
  const state = join(dir, 'state');
  // The MANIFEST in use is the one CURRENT names (an older one may still be there).
  const manifest = readFileSync(join(state, 'partition-0', 'CURRENT'), 'utf8').trim();
  assert.match(manifest, /^MANIFEST-\d+$/);
  damage(join(state, 'partition-0', manifest));

  // Run 2, fail (the default): one line naming a damaged directory and what to do; nothing moved.
  const failed = await spawnWeir(writeConfig(dir, { ...base, log: undefined })).exit;
  assert.equal(failed.code, 1, failed.stderr);
  assert.equal(failed.stderr.trim().split('\n').length, 1, failed.stderr);
  assert.match(failed.stderr, new RegExp(`^weir: the RocksDB state of partition 0 in ${state}/partition-0 is corrupt \\(Corruption: .*\\): move that directory away \\(or delete it\\) to rebuild the partition from the earliest offset of its topic, or set state\\.onCorruption: rebuild`));
  assert.doesNotMatch(failed.stderr, NO_STACK);
  assert.deepEqual(readdirSync(state), ['partition-0']);

  // Run 3, rebuild: the directory moved aside with a warning naming it, the run completes.
  const rebuilt = await spawnWeir(writeConfig(dir, { ...base, state: { ...(base['state'] as object), onCorruption: 'rebuild' } })).exit;
  assert.equal(rebuilt.code, 0, rebuilt.stderr.slice(-3000));
  const aside = readdirSync(state).filter((n) => /^partition-0\.corrupt-\d{4}-\d\d-\d\dT[\d-]+Z$/.test(n));
  assert.equal(aside.length, 1, readdirSync(state).join(', '));
  assert.ok(existsSync(join(state, aside[0]!, manifest)), 'the damaged files are kept');
  assert.match(rebuilt.stderr, new RegExp(`moved it to ${join(state, aside[0]!).replace(/[.]/g, '\\.')}; partition 0 is rebuilt from the earliest offset of its topic`));
  // What the runs wrote together ends in the uninterrupted results; the dead letters are the same set.
  assertSameFinals(finalResults(readLines<WindowResult>(join(dir, 'results.jsonl'))), want, 'after the rebuild');
  assert.deepEqual(deadLetterSet(readLines<DeadLetter>(join(dir, 'dlq.jsonl'))), deadLetterSet(readLines<DeadLetter>(join(refDir, 'dlq.jsonl'))));
});
