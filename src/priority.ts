// CPU priority of the threads that do background work. On Linux a thread has a nice
// value of its own (setpriority() takes a thread id for a process id), and lowering
// it needs no privilege: a checkpoint's background work (the state thread, RocksDB's
// flushes and compactions, the changelog thread) then yields to the operator loop
// when they compete for a core, instead of taking turns with it. They still get every
// core the loop leaves idle. Elsewhere, or where /proc is missing, nothing changes.
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { setPriority } from 'node:os';

/** Lowers the calling thread's CPU priority to `nice` (0 leaves it); false where that is not possible. */
export function lowerThisThread(nice: number): boolean {
  if (nice <= 0) return false;
  try {
    // '/proc/thread-self' links to '<pid>/task/<tid>'.
    const tid = Number(readlinkSync('/proc/thread-self').split('/').pop());
    if (!Number.isInteger(tid) || tid <= 0) return false;
    setPriority(tid, nice);
    return true;
  } catch {
    return false;
  }
}

/**
 * Lowers the CPU priority of this process's threads whose name starts with `prefix`
 * (RocksDB names its background threads `rocksdb:low0`, `rocksdb:high0`, ...) to
 * `nice` (0 leaves them); returns how many it lowered. A thread started later is not touched: call
 * again after whatever starts them.
 */
export function lowerThreadsNamed(prefix: string, nice: number): number {
  if (nice <= 0) return 0;
  let n = 0;
  let tasks: string[];
  try {
    tasks = readdirSync('/proc/self/task');
  } catch {
    return 0;
  }
  for (const tid of tasks) {
    try {
      if (!readFileSync(`/proc/self/task/${tid}/comm`, 'latin1').startsWith(prefix)) continue;
      setPriority(Number(tid), nice);
      n++;
    } catch {
      // The thread ended meanwhile, or its priority cannot change: leave it.
    }
  }
  return n;
}
