// RocksDB state damaged on disk, at the backend: a garbled CURRENT or MANIFEST fails
// the open, a damaged table file fails on read; both are found when the partition is
// opened. `fail` names the directory and what to do; `rebuild` moves it aside, warns
// naming where, and opens an empty database.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { RocksDbStateBackend, StateError } from '../src/state';

/** A partition-0 database holding 5,000 entries in a table file (.sst), as of checkpoint 1. */
async function filled(): Promise<string> {
  const dir = mkdtempSync(join(tmpdir(), 'weir-rocks-corrupt-'));
  let b = new RocksDbStateBackend(dir);
  const ps = await b.open(0);
  await ps.clear();
  for (let i = 0; i < 5000; i++) ps.put(`k${i}`, Buffer.alloc(200, i));
  await ps.checkpoint(1);
  await b.close();
  // Opening again replays the write-ahead log into a table file.
  b = new RocksDbStateBackend(dir);
  await (await b.open(0)).restore(1);
  await b.close();
  return dir;
}

function damage(file: string): void {
  const b = readFileSync(file);
  const at = Math.max(0, Math.floor(b.length / 2) - 32);
  b.fill(0x5a, at, Math.min(b.length, at + 64));
  writeFileSync(file, b);
}

const files: Array<[string, (names: string[]) => string]> = [
  ['CURRENT', () => 'CURRENT'],
  ['MANIFEST', (names) => names.find((n) => n.startsWith('MANIFEST-'))!],
  ['a table file', (names) => names.find((n) => n.endsWith('.sst'))!],
];

for (const [what, pick] of files)
  test(`${what} damaged: fail names the directory and what to do; rebuild moves it aside and starts empty`, async () => {
    const dir = await filled();
    const pdir = join(dir, 'partition-0');
    const name = pick(readdirSync(pdir));
    assert.ok(name !== undefined, `${what} exists`);
    damage(join(pdir, name));

    const failing = new RocksDbStateBackend(dir);
    await assert.rejects(failing.open(0), (e: unknown) => {
      assert.ok(e instanceof StateError);
      assert.match(e.message, new RegExp(`^the RocksDB state of partition 0 in ${pdir} is corrupt \\(Corruption: [^)]*\\): move that directory away \\(or delete it\\) to rebuild the partition from the earliest offset of its topic, or set state\\.onCorruption: rebuild to do so by itself$`));
      return true;
    });
    assert.deepEqual(readdirSync(dir), ['partition-0'], 'fail moves nothing');
    await failing.close();

    const warnings: Array<{ message: string; fields: Record<string, unknown> }> = [];
    const rebuilding = new RocksDbStateBackend(dir, { onCorruption: 'rebuild' });
    rebuilding.onWarning = (message, fields) => warnings.push({ message, fields });
    const ps = await rebuilding.open(0);
    const { entries } = await ps.restore(1);
    assert.equal(entries.size, 0, 'an empty database');
    const aside = readdirSync(dir).find((n) => n.startsWith('partition-0.corrupt-'));
    assert.ok(aside !== undefined && existsSync(join(dir, aside, name)), 'the damaged files are kept aside');
    assert.equal(warnings.length, 1);
    assert.equal(warnings[0]!.fields['movedTo'], join(dir, aside));
    assert.match(warnings[0]!.message, new RegExp(`is corrupt .*: moved it to ${join(dir, aside).replace(/\./g, '\\.')}; partition 0 is rebuilt from the earliest offset of its topic$`));
    // The fresh database works.
    ps.put('a', Buffer.from('b'));
    await ps.checkpoint(2);
    assert.deepEqual(await ps.get('a'), Buffer.from('b'));
    await rebuilding.close();
  });
