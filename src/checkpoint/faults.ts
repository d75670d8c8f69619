// Crash points for the recovery tests. WEIR_FAULT="<point>:<n>" makes the process
// SIGKILL itself the n-th time it reaches <point>, so a test can crash it at an
// exact step of a checkpoint; unset (always, outside tests), it does nothing.
//   barrier-taken     checkpoint N's barrier is taken, batches after it go on
//   state-written     the backend holds version N, metadata N not written yet
//   sinks-flushed     the sinks hold every result before barrier N, metadata N not written yet
//   changelog-committed  with a changelog: checkpoint N's transactions committed, metadata N not written yet
//   metadata-staged   metadata N is in its temporary directory, not renamed yet
//   metadata-written  checkpoint N is durable, its offsets not committed yet
export type FaultPoint = 'barrier-taken' | 'state-written' | 'sinks-flushed' | 'changelog-committed' | 'metadata-staged' | 'metadata-written';

const spec = /^(barrier-taken|state-written|sinks-flushed|changelog-committed|metadata-staged|metadata-written):(\d+)$/.exec(process.env['WEIR_FAULT'] ?? '');
let reached = 0;

export function faultPoint(point: FaultPoint): void {
  if (spec === null || spec[1] !== point) return;
  if (++reached === Number(spec[2])) process.kill(process.pid, 'SIGKILL');
}
