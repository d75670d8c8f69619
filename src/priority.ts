// The checkpoint's background threads (the state thread and the changelog thread) run
// at a lower scheduling priority than the rest of the process.
//
// A checkpoint's background part is a burst of work every checkpoint.intervalMs:
// digests and backend writes of every changed window, and a Kafka transaction of them
// for the changelog. When the cores are all busy (Weir's own threads, the broker, the
// load on a shared machine), that burst took CPU time from the operator loop and the
// Kafka source's thread just when results were due, and their latency rose at every
// checkpoint. The loop does not wait for a checkpoint's background part (the next
// checkpoint does, and an exactly-once sink's results, which go out with it), so it
// gets what the loop leaves: on Linux each of these threads raises its own nice value
// by BACKGROUND_NICE (a thread is a task there; raising one's own nice value needs no
// privilege). On a machine with idle cores this changes nothing; on a busy one a
// checkpoint (and a restore, during which the loop waits anyway) takes longer.
// Elsewhere than Linux, or if it fails, nothing changes.
import { readlinkSync } from 'node:fs';
import { getPriority, setPriority } from 'node:os';

/** How much lower than the process's the background threads' priority is (nice value steps; 5: about a third of the CPU share). */
export const BACKGROUND_NICE = 5;
const NICE_MAX = 19;

/** The calling thread's id as the kernel knows it (Linux), or undefined. */
function threadId(): number | undefined {
  try {
    const tid = Number(readlinkSync('/proc/thread-self').split('/').pop());
    return Number.isSafeInteger(tid) && tid > 0 ? tid : undefined;
  } catch {
    return undefined;
  }
}

/** Lowers the calling thread's priority by `steps` nice values; returns its nice value then, or undefined when it could not. */
export function lowerThreadPriority(steps = BACKGROUND_NICE): number | undefined {
  const tid = threadId();
  if (tid === undefined || tid === process.pid) return undefined; // the main thread's id is the process's: that would be the whole process
  try {
    const nice = Math.min(NICE_MAX, getPriority(tid) + steps);
    setPriority(tid, nice);
    return getPriority(tid);
  } catch {
    return undefined;
  }
}
