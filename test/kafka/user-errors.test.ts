// A Kafka-sourced run whose state dir or checkpoint dir is on a read-only file
// system (a real read-only bind mount; skipped, saying so, without root and
// mount(8)) or under a file: it exits non-zero at start with one line naming the
// key, the path and "read-only file system", not ENOENT or a stack trace.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createTopic, produce, unique } from './helpers/kafka';
import { kafkaRunConfig, readLines, spawnWeir, writeConfig } from './helpers/weir';
import { readOnlyDir } from '../helpers/readonly';

const NO_STACK = /^\s+at \S+ \(|^\s+at \//m;

const esc = (s: string): string => s.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');

test('state.dir or checkpoint.dir read-only, or under a file: one line naming the key and path, nothing written', async (t) => {
  const ro = readOnlyDir(join('state', 'partition-0'), 'checkpoints');
  if (typeof ro !== 'string') return t.skip(ro.skip);
  const topic = unique('weir-rofs');
  await createTopic(topic, 1);
  await produce(topic, [{ value: JSON.stringify({ timestamp: 1000, data: { model: 'm', latency_ms: 1, region: 'r' }, metadata: { user_id: 'u' } }) }]);
  const file = join(mkdtempSync(join(tmpdir(), 'weir-afile-')), 'afile');
  writeFileSync(file, '');
  const cases: Array<[Record<string, unknown>, RegExp]> = [
    [{ state: { backend: 'rocksdb', dir: join(ro, 'new-state') } }, new RegExp(`^weir: state\\.dir: cannot create ${esc(ro)}/new-state/partition-0: read-only file system \\(${esc(ro)}\\)$`)],
    [{ state: { backend: 'rocksdb', dir: join(ro, 'state') } }, new RegExp(`^weir: state\\.dir: cannot write to ${esc(ro)}/state/partition-0: read-only file system \\(EROFS\\)$`)],
    [{ state: { backend: 'rocksdb', dir: join(file, 'state') } }, new RegExp(`^weir: state\\.dir: cannot create ${esc(file)}/state/partition-0: ${esc(file)} is a file, not a directory$`)],
    [{ checkpoint: { dir: join(ro, 'new-checkpoints') } }, new RegExp(`^weir: checkpoint\\.dir: cannot create ${esc(ro)}/new-checkpoints: read-only file system \\(${esc(ro)}\\)$`)],
    [{ checkpoint: { dir: join(ro, 'checkpoints') } }, new RegExp(`^weir: checkpoint\\.dir: cannot write to ${esc(ro)}/checkpoints: read-only file system \\(EROFS\\)$`)],
  ];
  for (const [over, want] of cases) {
    const dir = mkdtempSync(join(tmpdir(), 'weir-rofs-'));
    const cfg = kafkaRunConfig(dir, topic, unique('g'), { log: undefined });
    for (const [k, v] of Object.entries(over)) cfg[k] = { ...(cfg[k] as object), ...(v as object) };
    const exit = await spawnWeir(writeConfig(dir, cfg)).exit;
    assert.notEqual(exit.code, 0, exit.stderr);
    assert.equal(exit.stderr.trim().split('\n').length, 1, `one line: ${exit.stderr}`);
    assert.match(exit.stderr.trim(), want);
    assert.doesNotMatch(exit.stderr, NO_STACK);
    assert.deepEqual(readLines(join(dir, 'results.jsonl')), [], 'stopped before any result');
  }
});
