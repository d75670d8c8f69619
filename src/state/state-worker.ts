// The state thread (thread.ts starts it): hosts one state backend, in-process as
// openStateBackend builds it, and runs its partition stores' work here, away from the
// operator loop: a checkpoint's staging, digest terms and backend writes, prunes,
// restores.
//
// Protocol (one port, FIFO both ways, plain data; ArrayBuffers transferred):
//   main -> worker
//     stage {store, batch}            stages an encoded change batch (batch.ts); no reply
//     request {id, op, ...}           open {partition} | get {store, key} | checkpoint {store, n}
//                                     | restore {store, n} | clear | prune {store, n} | records
//                                     | close {store} | shutdown; one reply of the same id
//   worker -> main
//     ready | failed {error}          the backend opened (or not), once, first
//     chunk {id, batch}               part of a restore's entries, before its reply
//     reply {id, error?, result?}
//     warning {message, fields}       the backend's onWarning
// Each store's operation is called as its message arrives, in order, so a stage
// followed by a checkpoint is in that checkpoint, as on one thread.
import { parentPort, workerData } from 'node:worker_threads';
import { lowerThisThread, lowerThreadsNamed } from '../priority';
import type { DigestAlgorithm, PartitionStore, StateBackend, StateBackendConfig } from './backend';
import { transferable, type ChangeBatch } from './batch';
import type { RecordCounts } from './versioned';

export interface StateWorkerInit {
  cfg: StateBackendConfig;
  instance: string;
  /** Nice value of this thread and of RocksDB's (priority.ts); 0 or none: unchanged. */
  nice?: number;
}

export type StateOp =
  | { op: 'open'; partition: number }
  | { op: 'get'; store: number; key: string }
  | { op: 'checkpoint' | 'prune'; store: number; n: number }
  | { op: 'restore'; store: number; n: number; digest: DigestAlgorithm }
  | { op: 'clear' | 'records' | 'close'; store: number }
  | { op: 'shutdown' };

export type ToStateWorker = { type: 'stage'; store: number; batch: ChangeBatch } | ({ type: 'request'; id: number } & StateOp);

export interface PlainStateError {
  name: string;
  message: string;
  stack?: string;
  domain?: 'user' | 'external' | 'internal';
  retriable?: boolean;
  code?: string;
}

export type FromStateWorker =
  | { type: 'ready' }
  | { type: 'failed'; error: PlainStateError }
  | { type: 'reply'; id: number; error?: PlainStateError; result?: unknown }
  /** Part of a restore's entries, before the restore's reply. */
  | { type: 'chunk'; id: number; batch: ChangeBatch }
  | { type: 'warning'; message: string; fields: Record<string, unknown> };

export function plainStateError(e: unknown): PlainStateError {
  if (!(e instanceof Error)) return { name: 'Error', message: String(e) };
  const x = e as Error & { domain?: unknown; retriable?: unknown; code?: unknown };
  const p: PlainStateError = { name: e.name, message: e.message };
  if (e.stack !== undefined) p.stack = e.stack;
  if (x.domain === 'user' || x.domain === 'external' || x.domain === 'internal') p.domain = x.domain;
  if (typeof x.retriable === 'boolean') p.retriable = x.retriable;
  if (typeof x.code === 'string') p.code = x.code;
  return p;
}

async function serve(init: StateWorkerInit): Promise<void> {
  const port = parentPort!;
  // A checkpoint's background work yields to the operator loop (priority.ts).
  lowerThisThread(init.nice ?? 0);
  const post = (m: FromStateWorker, transfer?: ArrayBuffer[]): void => port.postMessage(m, transfer);
  // Loaded here, not at the top: the main side imports this module for its types only.
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const { openStateBackend } = require('./open') as typeof import('./open');
  let backend: StateBackend;
  try {
    backend = await openStateBackend(init.cfg, init.instance);
  } catch (e) {
    post({ type: 'failed', error: plainStateError(e) });
    return;
  }
  backend.onWarning = (message, fields) => post({ type: 'warning', message, fields });
  const stores = new Map<number, PartitionStore & { records(): Promise<RecordCounts> }>();
  /** A stage that failed (a store closed meanwhile, a malformed batch): the store's next checkpoint fails with it. */
  const stageFailures = new Map<number, Error>();
  let nextStore = 1;
  const storeOf = (h: number): PartitionStore & { records(): Promise<RecordCounts> } => {
    const s = stores.get(h);
    if (s === undefined) throw new Error(`state thread: no open store ${h}`);
    return s;
  };
  const run = (m: ToStateWorker & { type: 'request' }): Promise<{ result?: unknown; transfer?: ArrayBuffer[] }> => {
    switch (m.op) {
      case 'open':
        return backend.open(m.partition).then((s) => {
          // RocksDB's flushes and compactions too: its threads start with the first database.
          lowerThreadsNamed('rocksdb:', init.nice ?? 0);
          const h = nextStore++;
          stores.set(h, s as PartitionStore & { records(): Promise<RecordCounts> });
          return { result: { store: h, where: (s as { where?: string }).where ?? `partition ${m.partition}` } };
        });
      case 'get':
        return storeOf(m.store)
          .get(m.key)
          .then((v) => ({ result: v }));
      case 'checkpoint': {
        const failed = stageFailures.get(m.store);
        if (failed !== undefined) {
          stageFailures.delete(m.store);
          return Promise.reject(failed);
        }
        return storeOf(m.store)
          .checkpoint(m.n)
          .then((s) => ({ result: s }));
      }
      case 'restore':
        stageFailures.delete(m.store);
        return storeOf(m.store)
          .restoreBatches(m.n, (batch) => post({ type: 'chunk', id: m.id, batch }, transferable([batch])), m.digest)
          .then((summary) => ({ result: summary }));
      case 'clear':
        stageFailures.delete(m.store);
        return storeOf(m.store)
          .clear()
          .then(() => ({}));
      case 'prune':
        return storeOf(m.store)
          .prune(m.n)
          .then(() => ({}));
      case 'records':
        return storeOf(m.store)
          .records()
          .then((result) => ({ result }));
      case 'close': {
        const s = stores.get(m.store);
        stores.delete(m.store);
        stageFailures.delete(m.store);
        return (s?.close() ?? Promise.resolve()).then(() => ({}));
      }
      case 'shutdown':
        return backend.close().then(() => ({}));
    }
  };
  port.on('message', (m: ToStateWorker) => {
    if (m.type === 'stage') {
      try {
        storeOf(m.store).stage(m.batch);
      } catch (e) {
        if (!stageFailures.has(m.store)) stageFailures.set(m.store, e instanceof Error ? e : new Error(String(e)));
      }
      return;
    }
    let p: Promise<{ result?: unknown; transfer?: ArrayBuffer[] }>;
    try {
      p = run(m);
    } catch (e) {
      p = Promise.reject(e instanceof Error ? e : new Error(String(e)));
    }
    p.then(
      ({ result, transfer }) => post({ type: 'reply', id: m.id, result }, transfer),
      (e: unknown) => post({ type: 'reply', id: m.id, error: plainStateError(e) }),
    );
  });
  post({ type: 'ready' });
}

if (parentPort !== null && (workerData as { stateWorker?: StateWorkerInit } | null)?.stateWorker !== undefined) {
  void serve((workerData as { stateWorker: StateWorkerInit }).stateWorker);
}
