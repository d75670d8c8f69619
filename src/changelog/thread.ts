// The changelog, from the main thread: requests to the changelog thread
// (changelog-worker.ts), which holds the Kafka clients. Errors come back as the same
// classes, a fenced producer as FencedError. Or, where a thread would only take turns
// with the loop for one core (processing.backgroundThreads), the same requests run
// on this thread (Changelog.startHere).
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import { WeirError } from '../errors/errors';
import { transferable, type ChangeBatch } from '../state/batch';
import { revive } from '../state/thread';
import type { ChangelogOp, FromChangelogWorker } from './changelog-worker';
import { FencedError } from './errors';
import { ensureChangelogTopic } from './topic';
import type { ChangelogKafkaOptions, RestoreResult } from './kafka';

interface Pending {
  resolve: (v: unknown) => void;
  reject: (e: Error) => void;
  worker: Worker;
}

/** Where the Kafka clients are: the changelog thread, or this thread. */
interface Host {
  call(op: ChangelogOp, transfer: ArrayBuffer[]): Promise<unknown>;
  /** Ends the thread, if there is one (its teardown is not waited for: its clients are closed). */
  end(): Promise<void>;
}

export class Changelog {
  private readonly pending = new Map<number, Pending>();
  private lastId = 0;
  private gone: Error | undefined;
  private closing: Promise<void> | undefined;
  private readonly host: Host;

  private constructor(
    worker: Worker | Host,
    readonly topic: string,
    /** Partitions of the changelog topic (= of the input topic). */
    readonly partitions: number,
    /** Tombstones older than this may have been compacted away (the topic's delete.retention.ms). */
    readonly deleteRetentionMs: number,
  ) {
    this.host = worker instanceof Worker ? { call: (op, transfer) => this.request(worker, op, transfer), end: async () => void worker.terminate().catch(() => undefined) } : worker;
  }

  /**
   * The changelog's Kafka clients on this thread (no thread to start); creates or checks
   * the topic meanwhile, as start() does. Requests and their errors are the same.
   */
  static async startHere(o: ChangelogKafkaOptions, signal?: AbortSignal): Promise<Changelog> {
    // Loaded here, not at the top: with a thread, this one never loads the Kafka clients' module.
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const { ChangelogKafka } = require('./kafka') as typeof import('./kafka');
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const { changelogCall } = require('./changelog-worker') as typeof import('./changelog-worker');
    const kafka = new ChangelogKafka(o);
    const [, topic] = await Promise.all([kafka.connect(), ensureChangelogTopic(o, signal)]).catch(async (e: unknown) => {
      await kafka.shutdown();
      throw e;
    });
    const host: Host = { call: async (op) => (await changelogCall(kafka, op)).result, end: async () => {} };
    return new Changelog(host, o.changelog, topic.partitions, topic.deleteRetentionMs);
  }

  /**
   * Starts the thread (at nice value `nice`: priority.ts; 0 leaves it) and, meanwhile on
   * this thread, creates or checks the topic (topic.ts); resolves when both are done.
   * `signal` aborts a start not done yet: the thread ends at once (its connection
   * attempts with it).
   */
  static start(o: ChangelogKafkaOptions, nice = 0, signal?: AbortSignal): Promise<Changelog> {
    const worker = new Worker(join(__dirname, 'changelog-worker.js'), { workerData: { changelogWorker: o, nice } });
    let c: Changelog | undefined;
    /** How the thread ended before `c` existed, if it did. */
    let ended: { how: string; cause?: Error } | undefined;
    const started = new Promise<void>((resolve, reject) => {
      worker.on('message', (m: FromChangelogWorker) => {
        if (m.type === 'ready') resolve();
        else if (m.type === 'failed') reject(revive(m.error));
        else c?.onReply(m);
      });
      worker.on('error', (e) => {
        if (c !== undefined) return c.onGone(`failed: ${e.message}`, e);
        ended ??= { how: `failed: ${e.message}`, cause: e };
        reject(new WeirError(`the changelog thread failed to start: ${e.message}`, { domain: 'internal', cause: e }));
      });
      worker.on('exit', (code) => {
        if (c !== undefined) return c.onGone(`exited (code ${code})`);
        ended ??= { how: `exited (code ${code})` };
        reject(new WeirError(`the changelog thread exited (code ${code}) before it started`, { domain: 'internal' }));
      });
    });
    const aborted = new Promise<never>((_, reject) => {
      const stop = (): void => reject(new WeirError('the changelog thread was stopped before it started', { domain: 'internal' }));
      if (signal?.aborted === true) stop();
      else signal?.addEventListener('abort', stop, { once: true });
    });
    // Whichever fails first is the error; the other's failure, if any, is not unhandled.
    started.catch(() => undefined);
    aborted.catch(() => undefined);
    return Promise.race([Promise.all([started, ensureChangelogTopic(o, signal)]), aborted]).then(
      ([, topic]) => {
        c = new Changelog(worker, o.changelog, topic.partitions, topic.deleteRetentionMs);
        // Ended after it was ready, before the topic was: its requests fail at once.
        if (ended !== undefined) c.onGone(ended.how, ended.cause);
        worker.unref();
        return c;
      },
      async (e: unknown) => {
        await worker.terminate();
        throw e;
      },
    );
  }

  /** Opens partition `p`'s transactional producer: from now on, a previous owner is fenced. */
  open(p: number): Promise<void> {
    return this.call({ op: 'open', partition: p }).then(() => undefined);
  }

  close(p: number): Promise<void> {
    return this.call({ op: 'close', partition: p }).then(() => undefined);
  }

  /** Partition `p`'s changelog from offset `from` to its end, the last record of each key. */
  restore(p: number, from: string): Promise<RestoreResult> {
    return this.call({ op: 'restore', partition: p, from }) as Promise<RestoreResult>;
  }

  /**
   * One checkpoint of partition `p` as one transaction, its results to `resultTopics`
   * included (batches are transferred: the caller gives them up). Resolves with the
   * changelog offset after it.
   */
  commit(p: number, batches: ChangeBatch[], record: string, offset: string, results: ChangeBatch[] = [], resultTopics: string[] = []): Promise<string> {
    return this.call({ op: 'commit', partition: p, batches, record, offset, results, resultTopics }, transferable([...batches, ...results])) as Promise<string>;
  }

  shutdown(): Promise<void> {
    this.closing ??= (async () => {
      try {
        if (this.gone === undefined) await this.call({ op: 'shutdown' });
      } finally {
        this.gone ??= new WeirError('the changelog is closed', { domain: 'internal' });
        await this.host.end();
      }
    })();
    return this.closing;
  }

  private call(op: ChangelogOp, transfer: ArrayBuffer[] = []): Promise<unknown> {
    if (this.gone !== undefined) return Promise.reject(this.gone);
    return this.host.call(op, transfer);
  }

  private request(worker: Worker, op: ChangelogOp, transfer: ArrayBuffer[]): Promise<unknown> {
    const id = ++this.lastId;
    const p = new Promise<unknown>((resolve, reject) => this.pending.set(id, { resolve, reject, worker }));
    if (this.pending.size === 1) worker.ref();
    worker.postMessage({ id, ...op }, transfer);
    return p;
  }

  private onReply(m: FromChangelogWorker & { type: 'reply' }): void {
    const r = this.pending.get(m.id);
    if (r === undefined) return;
    this.pending.delete(m.id);
    if (this.pending.size === 0) r.worker.unref();
    if (m.error === undefined) r.resolve(m.result);
    else if (m.error.fencedPartition !== undefined) r.reject(new FencedError(m.error.fencedPartition, revive(m.error)));
    else r.reject(revive(m.error));
  }

  private onGone(how: string, cause?: Error): void {
    this.gone ??= new WeirError(`the changelog thread ${how}`, { domain: 'internal', cause });
    for (const r of this.pending.values()) r.reject(this.gone);
    this.pending.clear();
  }
}
