// Background threads at a lower CPU priority (src/priority.ts): the state thread and
// RocksDB's threads take the nice value they are given, the operator loop's thread
// keeps its own. Linux only (nice values per thread, read from /proc).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openStateBackend } from '../src/state';

const linux = existsSync('/proc/thread-self');

/** This process's threads: name and nice value. */
function threads(): Array<{ tid: number; name: string; nice: number }> {
  return readdirSync('/proc/self/task').map((tid) => {
    const stat = readFileSync(`/proc/self/task/${tid}/stat`, 'latin1');
    // Fields after the name (in parentheses, which may hold spaces): state is field 3, nice field 19.
    const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return { tid: Number(tid), name: readFileSync(`/proc/self/task/${tid}/comm`, 'latin1').trim(), nice: Number(rest[16]) };
  });
}

test('the state thread and RocksDB threads run at the nice value given; the loop thread is left as it was', { skip: !linux && 'needs /proc (Linux)' }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'weir-priority-'));
  const mainNice = threads().find((t) => t.tid === process.pid)!.nice;
  const before = new Set(threads().filter((t) => t.nice === 7).map((t) => t.tid));
  try {
    const backend = await openStateBackend({ backend: 'rocksdb', dir }, 'weir-test', { thread: true, nice: 7 });
    try {
      await backend.open(0);
      const now = threads();
      const rocks = now.filter((t) => t.name.startsWith('rocksdb:'));
      assert.ok(rocks.length > 0, 'RocksDB started no background thread');
      for (const t of rocks) assert.equal(t.nice, 7, `${t.name} runs at nice ${t.nice}`);
      // The state thread: a thread that took nice 7 that is not RocksDB's.
      assert.ok(now.some((t) => t.nice === 7 && !t.name.startsWith('rocksdb:') && !before.has(t.tid)), 'no thread besides RocksDB runs at nice 7');
      assert.equal(now.find((t) => t.tid === process.pid)!.nice, mainNice, "the loop thread's priority changed");
    } finally {
      await backend.close();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('nice 0 leaves every thread as it was', { skip: !linux && 'needs /proc (Linux)' }, async () => {
  const nices = new Map(threads().map((t) => [t.tid, t.nice]));
  const backend = await openStateBackend({ backend: 'memory' }, 'weir-test', { thread: true, nice: 0 });
  try {
    await backend.open(0);
    for (const t of threads()) if (nices.has(t.tid)) assert.equal(t.nice, nices.get(t.tid), `${t.name} (${t.tid}) changed priority`);
    // The new threads (the state thread's) keep the process's.
    for (const t of threads()) if (!nices.has(t.tid)) assert.equal(t.nice, nices.get(process.pid), `new thread ${t.name} runs at nice ${t.nice}`);
  } finally {
    await backend.close();
  }
});
