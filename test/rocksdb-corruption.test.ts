// RocksDB state damaged on disk, at the backend: a garbled CURRENT or MANIFEST fails
// the open; a damaged table file is found when its blocks are first read, which is
// the partition's restore (it reads the versions, and a read begun at open the rest)
// or its clear(). `fail` names the directory and what to do; `rebuild` moves it aside,
// warns naming where, and goes on with an empty database: a restore that found the
// damage fails with StateCorrupt (its caller drops what it rebuilt), a clear() succeeds.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { RocksDbStateBackend, StateCorrupt, StateError, type PartitionStore } from '../src/state';

/**
 * A partition-0 database holding 5,000 entries in one table file (.sst), as of
 * checkpoint 2, which wrote every key again (a key's first version has no journal
 * entry: its second has one). Keys are 100 hex digits of hashes and values one byte:
 * the versions ('V' ..., two per key) fill the first two thirds of the file's data,
 * the journal ('j' ..., one per key) the rest. The same every time, so damage at a given place of the
 * file always hits the same records (what it hits is checked: see hits()).
 */
async function filled(): Promise<string> {
  const dir = mkdtempSync(join(tmpdir(), 'weir-rocks-corrupt-'));
  const hex = (s: string): string => createHash('sha256').update(s).digest('hex');
  let b = new RocksDbStateBackend(dir);
  const ps = await b.open(0);
  await ps.clear();
  for (const id of [1, 2]) {
    for (let i = 0; i < 5000; i++) ps.put(hex(`k${i}`) + hex(`j${i}`).slice(0, 36), Buffer.from([(i + id) & 255]));
    await ps.checkpoint(id);
  }
  await b.close();
  // Opening again replays the write-ahead log into a table file.
  b = new RocksDbStateBackend(dir);
  await (await b.open(0)).restore(2);
  await b.close();
  return dir;
}

// eslint-disable-next-line @typescript-eslint/no-require-imports
const rocksdb = require('rocksdb') as (dir: string) => {
  open(cb: (e?: Error) => void): void;
  close(cb: (e?: Error) => void): void;
  iterator(o: object): AsyncIterable<unknown>;
};

/** Whether reading the records from `gte` to `lt` of the database in `dir` fails (RocksDB's own read). */
async function hits(dir: string, gte: string, lt: string): Promise<boolean> {
  const db = rocksdb(dir);
  await new Promise<void>((resolve, reject) => db.open((e) => (e ? reject(e) : resolve())));
  try {
    for await (const _ of db.iterator({ gte, lt, keys: false, values: false }));
    return false;
  } catch {
    return true;
  } finally {
    await new Promise<void>((resolve) => db.close(() => resolve()));
  }
}

/** Overwrites 64 bytes of `file` from `fraction` of its length with garbage. */
function damage(file: string, fraction: number): void {
  const b = readFileSync(file);
  const at = Math.max(0, Math.floor(b.length * fraction) - 32);
  b.fill(0x5a, at, Math.min(b.length, at + 64));
  writeFileSync(file, b);
}

/** What finds the damage: the open itself, or the first read (restore or clear). */
type Finder = 'open' | 'restore' | 'clear';

const sst = (names: string[]): string => names.find((n) => n.endsWith('.sst'))!;
/** What is damaged, where in the file, what finds it, and the records it hits in a table file ('V' versions, 'j' journal). */
const cases: Array<[string, (names: string[]) => string, number, Finder, ('V' | 'j')?]> = [
  ['CURRENT', () => 'CURRENT', 0.5, 'open'],
  ['MANIFEST', (names) => names.find((n) => n.startsWith('MANIFEST-'))!, 0.5, 'open'],
  // The restore's own read of the versions finds this.
  ['a table file, in its versions', sst, 0.1, 'restore', 'V'],
  // The read of everything else, begun at open, finds this before the restore ends.
  ['a table file, in its journal', sst, 0.9, 'restore', 'j'],
  ['a table file, found by clear()', sst, 0.9, 'clear', 'j'],
];

/** The first read of the partition's state: what finds damage in a table file. */
function firstRead(ps: PartitionStore, finder: Finder): Promise<unknown> {
  return finder === 'clear' ? ps.clear() : ps.restore(2);
}

for (const [what, pick, at, finder, region] of cases)
  test(`${what} damaged: fail names the directory and what to do; rebuild moves it aside and starts empty`, async () => {
    const dir = await filled();
    const pdir = join(dir, 'partition-0');
    const name = pick(readdirSync(pdir));
    assert.ok(name !== undefined, `${what} exists`);
    damage(join(pdir, name), at);
    if (region !== undefined) {
      assert.equal(await hits(pdir, 'V', 'W'), region === 'V', 'the damage is in the versions');
      assert.equal(await hits(pdir, 'j', 'k'), region === 'j', 'the damage is in the journal');
    }
    const failure = new RegExp(
      `^the RocksDB state of partition 0 in ${pdir} is corrupt \\(Corruption: [^)]*\\): move that directory away \\(or delete it\\) to rebuild the partition from the earliest offset of its topic, or set state\\.onCorruption: rebuild to do so by itself$`,
    );
    const isFailure = (e: unknown): boolean => {
      assert.ok(e instanceof StateError && !(e instanceof StateCorrupt), String(e));
      assert.match(e.message, failure);
      return true;
    };

    const failing = new RocksDbStateBackend(dir);
    if (finder === 'open') await assert.rejects(failing.open(0), isFailure);
    else await assert.rejects(firstRead(await failing.open(0), finder), isFailure);
    assert.deepEqual(readdirSync(dir), ['partition-0'], 'fail moves nothing');
    await failing.close();

    const warnings: Array<{ message: string; fields: Record<string, unknown> }> = [];
    const rebuilding = new RocksDbStateBackend(dir, { onCorruption: 'rebuild' });
    rebuilding.onWarning = (message, fields) => warnings.push({ message, fields });
    const ps = await rebuilding.open(0);
    if (finder === 'restore')
      await assert.rejects(ps.restore(2), (e: unknown) => {
        assert.ok(e instanceof StateCorrupt, String(e));
        assert.match(e.message, new RegExp(`^RocksDB state in ${pdir} was corrupt \\(Corruption: .*\\) and is empty now$`));
        return true;
      });
    else if (finder === 'clear') await ps.clear();
    const { entries } = await ps.restore(2);
    assert.equal(entries.size, 0, 'an empty database');
    const aside = readdirSync(dir).find((n) => n.startsWith('partition-0.corrupt-'));
    assert.ok(aside !== undefined && existsSync(join(dir, aside, name)), 'the damaged files are kept aside');
    assert.equal(warnings.length, 1);
    assert.equal(warnings[0]!.fields['movedTo'], join(dir, aside));
    assert.match(warnings[0]!.message, new RegExp(`is corrupt .*: moved it to ${join(dir, aside).replace(/\./g, '\\.')}; partition 0 is rebuilt from the earliest offset of its topic$`));
    // The fresh database works.
    ps.put('a', Buffer.from('b'));
    await ps.checkpoint(3);
    assert.deepEqual(await ps.get('a'), Buffer.from('b'));
    await rebuilding.close();
  });
