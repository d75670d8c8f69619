// A state backend whose stores do their work on a thread of their own (state-worker.ts):
// what `weir run` uses, so that a checkpoint's background part (staging the changed
// windows, their digest terms, the backend's write batch, prunes) takes no time from
// the operator loop between two batches. The main thread only encodes the change set
// into bytes (batch.ts) and transfers them; everything per key happens on the thread.
//
// Same interface and semantics as the in-process backend it hosts: every call of a
// store reaches that store on the thread in call order (put/delete gather into a batch
// sent before the store's next message); errors come back as the same classes
// (StateError, StateCorrupt, ...), with the same messages.
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import { ConfigError, InputError, WeirError } from '../errors/errors';
import { StateCorrupt, StateError, type DigestAlgorithm, type PartitionStore, type StateBackend, type StateBackendConfig, type StateBackendKind, type StateSummary } from './backend';
import { ChangeBatchWriter, readChangeBatch, transferable, type ChangeBatch } from './batch';
import type { FromStateWorker, PlainStateError, StateOp, StateWorkerInit, ToStateWorker } from './state-worker';
import type { RecordCounts } from './versioned';

/** The error a store raised on the thread, as the same class and message here. */
export function revive(p: PlainStateError): Error {
  const domain = p.domain ?? 'internal';
  let e: Error;
  switch (p.name) {
    case 'StateCorrupt':
      e = new StateCorrupt(p.message);
      break;
    case 'StateError':
      e = new StateError(p.message, { domain, retriable: p.retriable ?? false });
      break;
    case 'ConfigError':
      e = new ConfigError(p.message);
      break;
    case 'InputError':
      e = new InputError(p.message);
      break;
    default:
      e = p.domain === undefined ? new Error(p.message) : new WeirError(p.message, { domain, retriable: p.retriable ?? false });
      e.name = p.name;
  }
  if (p.code !== undefined) (e as Error & { code?: string }).code = p.code;
  if (p.stack !== undefined) e.stack = `${e.name}: ${e.message}\n    at (state thread)\n${p.stack.split('\n').slice(1).join('\n')}`;
  return e;
}

interface Pending {
  resolve: (v: unknown) => void;
  reject: (e: Error) => void;
  /** A restore's batches, as they come. */
  chunk?: (batch: ChangeBatch) => void;
}

export class ThreadStateBackend implements StateBackend {
  onWarning?: (message: string, fields: Record<string, unknown>) => void;
  private readonly pending = new Map<number, Pending>();
  private lastId = 0;
  private gone: Error | undefined;
  private closing: Promise<void> | undefined;

  private constructor(
    readonly kind: StateBackendKind,
    private readonly worker: Worker,
  ) {}

  /**
   * Starts the thread and opens the backend there; fails as opening it in-process would.
   * `nice`: the thread's and RocksDB's threads' nice value (priority.ts; 0 leaves them).
   */
  static start(cfg: StateBackendConfig, instance: string, nice = 0): Promise<ThreadStateBackend> {
    const init: StateWorkerInit = { cfg, instance, nice };
    // Compiled next to this file (dist/src/state/).
    const worker = new Worker(join(__dirname, 'state-worker.js'), { workerData: { stateWorker: init } });
    const b = new ThreadStateBackend(cfg.backend, worker);
    return new Promise<ThreadStateBackend>((resolve, reject) => {
      let started = false;
      worker.on('message', (m: FromStateWorker) => {
        if (m.type === 'ready') {
          started = true;
          worker.unref();
          resolve(b);
        } else if (m.type === 'failed') {
          started = true;
          void worker.terminate();
          reject(revive(m.error));
        } else b.onMessage(m);
      });
      worker.on('error', (e) => (started ? b.onGone(`failed: ${e.name}: ${e.message}`, e) : reject(new StateError(`the state thread failed to start: ${e.message}`, { domain: 'internal', cause: e }))));
      worker.on('exit', (code) => {
        if (!started) reject(new StateError(`the state thread exited (code ${code}) before it started`, { domain: 'internal' }));
        else b.onGone(`exited (code ${code})`);
      });
    });
  }

  async open(partition: number): Promise<PartitionStore> {
    const { store, where } = (await this.request({ op: 'open', partition })) as { store: number; where: string };
    return new ThreadPartitionStore(this, partition, store, where);
  }

  close(): Promise<void> {
    this.closing ??= (async () => {
      try {
        if (this.gone === undefined) await this.request({ op: 'shutdown' });
      } finally {
        this.gone ??= new StateError('the state backend is closed', { domain: 'internal' });
        // The thread's teardown is not waited for: its stores are closed.
        this.worker.terminate().catch(() => undefined);
      }
    })();
    return this.closing;
  }

  /** @internal */
  request(op: StateOp, chunk?: (batch: ChangeBatch) => void): Promise<unknown> {
    if (this.gone !== undefined) return Promise.reject(this.gone);
    const id = ++this.lastId;
    const p = new Promise<unknown>((resolve, reject) => this.pending.set(id, { resolve, reject, chunk }));
    // The process waits for what it asked the thread, not for the idle thread.
    if (this.pending.size === 1) this.worker.ref();
    this.worker.postMessage({ type: 'request', id, ...op } satisfies ToStateWorker);
    return p;
  }

  /** @internal */
  stage(store: number, batch: ChangeBatch): void {
    if (this.gone !== undefined) return; // the store's next request fails with it
    this.worker.postMessage({ type: 'stage', store, batch } satisfies ToStateWorker, transferable([batch]));
  }

  private onMessage(m: FromStateWorker): void {
    if (m.type === 'warning') {
      this.onWarning?.(m.message, m.fields);
      return;
    }
    if (m.type === 'chunk') {
      this.pending.get(m.id)?.chunk?.(m.batch);
      return;
    }
    if (m.type !== 'reply') return;
    const r = this.pending.get(m.id);
    if (r === undefined) return;
    this.pending.delete(m.id);
    if (this.pending.size === 0) this.worker.unref();
    if (m.error !== undefined) r.reject(revive(m.error));
    else r.resolve(m.result);
  }

  private onGone(how: string, cause?: Error): void {
    if (this.gone !== undefined && this.pending.size === 0) return;
    this.gone ??= new StateError(`the state thread ${how}`, { domain: 'internal', cause });
    for (const r of this.pending.values()) r.reject(this.gone);
    this.pending.clear();
  }
}

/** A partition store on the state thread; put/delete gather into one batch until the next call. */
class ThreadPartitionStore implements PartitionStore {
  private gathered: ChangeBatchWriter | undefined;
  private closed = false;
  private closing: Promise<void> | undefined;

  constructor(
    private readonly backend: ThreadStateBackend,
    readonly partition: number,
    private readonly handle: number,
    /** Names the storage in errors, as the store on the thread does. */
    private readonly where: string,
  ) {}

  put(key: string, value: Buffer): void {
    this.open('put');
    if (typeof key !== 'string' || !Buffer.isBuffer(value))
      throw new StateError(`${this.where}: put() needs a string key and a Buffer value`, { domain: 'internal' });
    (this.gathered ??= new ChangeBatchWriter(1024)).put(key, value);
  }

  delete(key: string): void {
    this.open('delete');
    (this.gathered ??= new ChangeBatchWriter(1024)).delete(key);
  }

  stage(batch: ChangeBatch): void {
    this.open('stage');
    this.flush();
    this.backend.stage(this.handle, batch);
  }

  get(key: string): Promise<Buffer | undefined> {
    return this.call({ op: 'get', store: this.handle, key }).then((v) => (v === undefined ? undefined : asBuffer(v as Uint8Array)));
  }

  checkpoint(id: number): Promise<StateSummary> {
    return this.call({ op: 'checkpoint', store: this.handle, n: id }) as Promise<StateSummary>;
  }

  async restore(id: number, digest?: DigestAlgorithm): Promise<{ entries: Map<string, Buffer>; summary: StateSummary }> {
    const entries = new Map<string, Buffer>();
    const summary = await this.restoreBatches(id, (batch) => readChangeBatch(batch, (k, v) => entries.set(k, v!)), digest);
    return { entries, summary };
  }

  restoreBatches(id: number, each: (batch: ChangeBatch) => void, digest: DigestAlgorithm = 'xxh64'): Promise<StateSummary> {
    this.gathered = undefined; // a restore drops the stage
    return this.call({ op: 'restore', store: this.handle, n: id, digest }, each) as Promise<StateSummary>;
  }

  clear(): Promise<void> {
    this.gathered = undefined; // and so does a clear
    return this.call({ op: 'clear', store: this.handle }) as Promise<void>;
  }

  prune(oldestRetained: number): Promise<void> {
    return this.call({ op: 'prune', store: this.handle, n: oldestRetained }) as Promise<void>;
  }

  /** Stored record counts (tests, diagnostics), as VersionedStore.records(). */
  records(): Promise<RecordCounts> {
    return this.call({ op: 'records', store: this.handle }) as Promise<RecordCounts>;
  }

  close(): Promise<void> {
    if (this.closing === undefined) {
      this.flush();
      this.closed = true;
      this.closing = this.backend.request({ op: 'close', store: this.handle }) as Promise<void>;
    }
    return this.closing;
  }

  private call(op: StateOp, chunk?: (batch: ChangeBatch) => void): Promise<unknown> {
    if (this.closed) {
      const name = op.op;
      return Promise.reject(new StateError(`${this.where}: ${name}() after close()`, { domain: 'internal' }));
    }
    this.flush();
    return this.backend.request(op, chunk);
  }

  private flush(): void {
    const g = this.gathered;
    if (g === undefined || g.count === 0) return;
    this.gathered = undefined;
    this.backend.stage(this.handle, g.finish());
  }

  private open(op: string): void {
    if (this.closed) throw new StateError(`${this.where}: ${op}() after close()`, { domain: 'internal' });
  }
}

function asBuffer(u: Uint8Array): Buffer {
  return Buffer.from(u.buffer, u.byteOffset, u.byteLength);
}
