// The changelog thread (thread.ts starts it): hosts ChangelogKafka, so that encoding a
// checkpoint's records for Kafka, its transactions and a restore's fetches and
// decoding take no time from the operator loop.
//
// Protocol (one port; plain data, ArrayBuffers transferred):
//   main -> worker   {id, op: 'open' | 'close', partition} | {id, op: 'commit', partition, batches, record, offset}
//                    | {id, op: 'restore', partition, from} | {id, op: 'shutdown'}
//   worker -> main   ready | failed {error} (once, first) | reply {id, result?, error?}
import { parentPort, workerData } from 'node:worker_threads';
import { lowerThisThread } from '../priority';
import { transferable, type ChangeBatch } from '../state/batch';
import { plainStateError, type PlainStateError } from '../state/state-worker';
import { ChangelogKafka, type ChangelogKafkaOptions } from './kafka';

export type ChangelogOp =
  | { op: 'open' | 'close'; partition: number }
  | { op: 'commit'; partition: number; batches: ChangeBatch[]; record: string; offset: string; results: ChangeBatch[]; resultTopics: string[] }
  | { op: 'restore'; partition: number; from: string }
  | { op: 'shutdown' };

export type FromChangelogWorker =
  | { type: 'ready' }
  | { type: 'failed'; error: PlainStateError & { fencedPartition?: number } }
  | { type: 'reply'; id: number; result?: unknown; error?: PlainStateError & { fencedPartition?: number } };

function plain(e: unknown): PlainStateError & { fencedPartition?: number } {
  const p: PlainStateError & { fencedPartition?: number } = plainStateError(e);
  if (e instanceof Error && e.name === 'FencedError') p.fencedPartition = (e as unknown as { partition: number }).partition;
  return p;
}

/** Runs one request on `kafka`: its result, and what of it to transfer. */
export async function changelogCall(kafka: ChangelogKafka, m: ChangelogOp): Promise<{ result?: unknown; transfer?: ArrayBuffer[] }> {
  switch (m.op) {
    case 'open':
      await kafka.open(m.partition);
      return {};
    case 'close':
      await kafka.close(m.partition);
      return {};
    case 'commit':
      return { result: await kafka.commit(m.partition, m.batches, m.record, m.offset, m.results, m.resultTopics) };
    case 'restore': {
      const r = await kafka.restore(m.partition, m.from);
      return { result: r, transfer: transferable([r.batch]) };
    }
    case 'shutdown':
      await kafka.shutdown();
      return {};
  }
}

async function serve(o: ChangelogKafkaOptions): Promise<void> {
  const port = parentPort!;
  const kafka = new ChangelogKafka(o);
  try {
    await kafka.connect();
    port.postMessage({ type: 'ready' } satisfies FromChangelogWorker);
  } catch (e) {
    port.postMessage({ type: 'failed', error: plain(e) } satisfies FromChangelogWorker);
    return;
  }
  port.on('message', (m: ChangelogOp & { id: number }) => {
    changelogCall(kafka, m).then(
      ({ result, transfer }) => port.postMessage({ type: 'reply', id: m.id, result } satisfies FromChangelogWorker, transfer),
      (e: unknown) => port.postMessage({ type: 'reply', id: m.id, error: plain(e) } satisfies FromChangelogWorker),
    );
  });
}

if (parentPort !== null && (workerData as { changelogWorker?: ChangelogKafkaOptions } | null)?.changelogWorker !== undefined) {
  const { changelogWorker, nice } = workerData as { changelogWorker: ChangelogKafkaOptions; nice?: number };
  // A checkpoint's transactions yield to the operator loop (priority.ts).
  lowerThisThread(nice ?? 0);
  void serve(changelogWorker);
}
