// The consumer side of Weir's Kafka integration: a kafkajs consumer group whose
// push callbacks (eachBatch) are bridged to a pull iterator of StreamMessages.
//
// kafkajs runs in a worker thread (kafka-worker.ts, which documents the protocol):
// fetching and decoding messages there overlaps with Weir's work per event instead
// of adding to it (with a decoder of Weir's, kafka-decode.ts, in place of kafkajs's).
// On one core there is nothing to overlap, and the same worker code runs on this thread
// instead, over a MessageChannel (source.consumerThread; consumer-on-main.ts). This
// class keeps everything that decides what a record means: the assignment and its
// generations, positions, the assignment hook, the end of a bounded read, ticks.
//
// Backpressure: the worker posts a RecordBatch only while fewer than READ_AHEAD_BATCHES
// are posted and not yet consumed (the one in the iterator's hand counts), and kafkajs
// fetches again only when its eachBatch returns; so it never runs ahead by more than
// that many RecordBatches and one fetch response.
//
// Exactness: a batch the worker posted before it saw a seek or an assignment change
// may still arrive. Every batch carries the generation (one per group join) and the
// seek epoch of its partition it was built under; one that does not match the current
// ones is dropped, never yielded, and positions() only moves with batches yielded.
//
// Offsets: kafkajs never commits (autoCommit: false); commit() does, when the
// checkpoint coordinator says state is durable. kafkajs 2.x rebalances eagerly and
// builds a new OffsetManager on every join, so every partition it keeps would
// restart at the last *committed* offset; this class seeks those partitions back to
// the position already consumed (as the Java consumer's cooperative protocol would)
// so that in-memory state never sees a record twice.
//
// kafkajs has no background heartbeat thread: heartbeats are sent only from its
// fetch loop and from eachBatch. While eachBatch waits for a slow consumer (or for
// the assignment hook) the worker heartbeats itself, every heartbeatInterval.
import { readFileSync } from 'node:fs';
import { inspect } from 'node:util';
import { join } from 'node:path';
import { MessageChannel, Worker, type MessagePort } from 'node:worker_threads';
import type { ConsumerConfig, KafkaConfig, SASLOptions } from 'kafkajs';
import type { SourceConfig } from '../config';
import { usableCores } from '../cores';
import { ConfigError, WeirError, messageOf, toWeirError } from '../errors/errors';
import type { Logger } from '../log';
import { offsetOf, type RecordBatch, type StreamMessage } from '../pipeline/types';
import { fastDecoderInPlace } from './kafka-decode';
import type { ScanSpec } from '../core/pathspec';
import { scannedAt } from '../core/wasm';
import { serve, type FromWorker, type KafkaLogEntry, type LookupResult, type PlainError, type Request, type ToWorker, type WorkerInit } from './kafka-worker';

export type { KafkaLogEntry } from './kafka-worker';

export type KafkaSourceConfig = Extract<SourceConfig, { type: 'kafka' }>;

/** A partition and the next offset to read from it (Kafka's convention for commits and positions). */
export interface PartitionOffset {
  partition: number;
  offset: string;
}

/**
 * Called when a group join changes the assignment, before any record of a newly
 * assigned partition is yielded: `assigned` are the partitions this member did not own before, `revoked`
 * those it owned and lost (handle `revoked` first). Partitions it keeps are in
 * neither list and continue where they were. May be async (restore state, then
 * seek()); the iterator keeps yielding ticks meanwhile.
 */
export type AssignmentHook = (assigned: number[], revoked: number[]) => Promise<void> | void;

/**
 * Most RecordBatches the worker has posted and the iterator has not consumed yet (the
 * one in its hand included). kafkajs decodes a whole fetch response before it hands
 * over its first batch, so the read-ahead covers about one fetch (4 partitions of
 * 1 MiB is ~22k events of ~190 bytes: 6 to 8 batches of 4096): the worker then posts a
 * whole fetch without waiting and decodes the next one while Weir works on this one.
 * Memory: this many batches (up to ~1 MiB each at batchSize 4096, and 24 bytes per
 * record and scanned path more when the consumer's thread scanned them) plus one fetch response.
 */
export const READ_AHEAD_BATCHES = 8;

/**
 * Batches waiting for the operator when it takes one from which on it counts as behind:
 * the consumer's thread then scans the records of the next ones (KafkaSourceOptions.scan).
 * With fewer, a fetch's burst of batches would have it scan while the operator keeps
 * up; it costs that thread more than it saves the operator's (the bench's four
 * aggregations), and the broker shares the cores too.
 */
const BEHIND_BATCHES = 3;

/**
 * The young generation of the worker's heap, in MB (V8's default: 48). kafkajs turns a
 * fetch response (4 partitions of 1 MiB: ~22k messages) into objects that live until
 * the last of its batches is posted; with the default many are promoted and collected
 * in the old generation (--trace-gc, a million events: 116 scavenges and 14 full
 * collections in the worker; with 512, 40 and 4), and V8's GC helper threads, which
 * compete with both threads for the CPU, used ~1 s of it (about half with 512). The
 * Kafka bench ~10% faster, ~120 MB more resident memory (448 about as good, 384 and
 * below much less).
 */
export const WORKER_YOUNG_GENERATION_MB = 512;

/**
 * How often a bounded read that has nothing left to read of its own asks the group's
 * committed offsets whether the partitions it waits for are done (ms). A lookup is
 * one OffsetFetch request; the wait usually lasts until another member's final
 * checkpoint or a dead member's session timeout.
 */
export const BOUNDED_RECHECK_MS = 2000;

export interface KafkaSourceOptions {
  /** Most records per RecordBatch (the core's batch capacity). */
  batchSize: number;
  /** A tick is yielded when no data arrived for this long (ms). @default 1000 */
  tickIntervalMs?: number;
  /** Wall clock of tick.nowMs (injected by tests). @default Date.now */
  clock?: () => number;
  /** Same as calling onAssignment(). */
  onAssignment?: AssignmentHook;
  /** Receives kafkajs's log lines at `logLevel` and above; without it they go nowhere. */
  logger?: (entry: KafkaLogEntry) => void;
  /** @default 'warn' */
  logLevel?: 'error' | 'warn' | 'info' | 'debug';
  /** Where Weir's own notices about the read go (a bounded read waiting for partitions of other members). */
  log?: Pick<Logger, 'info' | 'warn'>;
  /** Between two lookups of the group's committed offsets while a bounded read waits (ms). @default BOUNDED_RECHECK_MS */
  boundedRecheckMs?: number;
  /**
   * Bounded: called once when every owned partition has been read to its end and
   * partitions of other members are not done yet. Those members wait for this
   * instance's committed offsets as it waits for theirs: a checkpoint now (which
   * commits) lets them finish without waiting for the next interval.
   */
  onOwnPartitionsRead?: () => void;
  /** Where sasl.passwordEnv is looked up. @default process.env */
  env?: Record<string, string | undefined>;
  /**
   * The spec the operator's decoder scans records with (scanSpec): a consumer on a
   * thread of its own then scans batches there while the operator is behind
   * (RecordBatch.scanned; BEHIND_BATCHES), beside the operator's work instead of in
   * it. (On the main thread it would only add a copy.)
   */
  scan?: ScanSpec;
  /**
   * kafkajs consumer settings (timeouts, fetch sizes, retry). groupId comes from the
   * config. Defaults as kafkajs's except maxWaitTimeInMs (100 instead of 5000): while
   * every partition is paused (backpressure, a checkpoint barrier), kafkajs's fetch
   * loop sleeps maxWaitTimeInMs instead of fetching (kafkajs src/consumer/consumerGroup.js,
   * fetch()), and the first fetch after a resume waits for that sleep; an idle consumer
   * pays ~10 fetch requests a second. (Stopping the consumer wakes the sleep, and a
   * partition a bounded read has finished is paused in kafkajs: kafka-worker.ts.)
   *
   * A function among these or the client settings (partitionAssigners,
   * retry.restartOnFailure) cannot be posted to a worker thread: with one, kafkajs
   * runs on the main thread, behind the same protocol (and without the overlap).
   */
  consumer?: Partial<Omit<ConsumerConfig, 'groupId'>>;
  /** kafkajs client settings other than brokers, clientId, ssl, sasl and logging. */
  client?: Pick<KafkaConfig, 'connectionTimeout' | 'authenticationTimeout' | 'requestTimeout' | 'retry'>;
}

/** Counters of the hand-over (backpressure is observable, and tested). */
export interface KafkaSourceStats {
  /** kafkajs fetch requests started. */
  fetches: number;
  /** kafkajs batches given to eachBatch. */
  kafkaBatches: number;
  /** eachBatch calls running now, and at most ever (kafkajs runs them one at a time). */
  kafkaBatchesInFlight: number;
  maxKafkaBatchesInFlight: number;
  /** RecordBatches built (and posted) by the worker, and yielded by the iterator. */
  batchesBuilt: number;
  batchesYielded: number;
  /** RecordBatches that arrived and were never yielded: built before a seek, an assignment change, the end of a bounded read or close. */
  batchesDropped: number;
  /** Most RecordBatches ever posted by the worker and not yet consumed or dropped (at most READ_AHEAD_BATCHES). */
  maxPostedAhead: number;
  /** The consumer decodes fetched records with kafka-decode.ts (false: kafkajs's own decoder). */
  fastDecoder: boolean;
  /** Fetch responses are received into buffers used again (kafkajs-receive.ts; false: kafkajs's own receiving). */
  receiver: boolean;
  /** The consumer runs on the thread that reads the source (source.consumerThread), not on a thread of its own. */
  onMainThread: boolean;
  /** RecordBatches arrived but not yet pulled: now, and at most ever. */
  queued: number;
  maxQueued: number;
  records: number;
}

/** One arrived RecordBatch waiting for the iterator, or a position move queued behind batches of its partition. */
type Item =
  | { kind: 'batch'; msg: StreamMessage & { kind: 'batch' }; partition: number; next: bigint; memory: ArrayBuffer }
  | { kind: 'advance'; partition: number; next: bigint };

/** The worker, or the same code on this thread (see KafkaSourceOptions.consumer). */
interface Channel {
  post(m: ToWorker, transfer?: ArrayBuffer[]): void;
  /** Keep the process alive (while a request waits for its reply) or not. */
  hold(on: boolean): void;
  terminate(): Promise<void>;
}

/** kafkajs's rebalance errors (its errors.js isRebalancing). */
function isRebalancing(e: { type?: unknown } | null | undefined): boolean {
  const type = e?.type;
  return type === 'REBALANCE_IN_PROGRESS' || type === 'NOT_COORDINATOR_FOR_GROUP' || type === 'ILLEGAL_GENERATION';
}

/** An error that crossed from the worker, as the Error (or WeirError) it was there. */
function revive(p: PlainError): Error {
  const e = p.weir !== undefined ? new WeirError(p.message, { domain: p.weir.domain, retriable: p.weir.retriable }) : new Error(p.message);
  e.name = p.name;
  if (p.stack !== undefined) e.stack = p.stack;
  if (p.type !== undefined) Object.assign(e, { type: p.type });
  if (p.retriable !== undefined && p.weir === undefined) Object.assign(e, { retriable: p.retriable });
  return e;
}

/**
 * Whether the consumer runs on the thread that reads the source (source.consumerThread).
 * `auto` picks it when the process may use one core only, and only with Weir's decoder
 * in place on this thread (consumer-on-main.ts): kafkajs's own costs more than the
 * thread does.
 */
function consumerOnThisThread(where: KafkaSourceConfig['consumerThread'] | undefined): boolean {
  if (where === 'main') return true;
  return (where ?? 'auto') === 'auto' && usableCores() === 1 && fastDecoderInPlace();
}

function hasFunction(x: unknown, depth = 0): boolean {
  if (typeof x === 'function') return true;
  if (x === null || typeof x !== 'object' || depth > 4) return false;
  return Object.values(x).some((v) => hasFunction(v, depth + 1));
}

/** The kafkajs SASL options, with the password taken from the config or the environment. */
export function saslOptions(sasl: KafkaSourceConfig['sasl'], env: Record<string, string | undefined>): SASLOptions | undefined {
  if (sasl === undefined) return undefined;
  let password: string;
  if (sasl.passwordEnv !== undefined) {
    const v = env[sasl.passwordEnv];
    if (v === undefined || v === '')
      throw new ConfigError(`source.sasl.passwordEnv: environment variable ${sasl.passwordEnv} is not set or empty (it must hold the SASL password of user "${sasl.username}")`);
    password = v;
  } else if (sasl.password !== undefined) password = sasl.password;
  else throw new ConfigError('source.sasl: needs passwordEnv (the name of an environment variable holding the password) or password');
  return { mechanism: sasl.mechanism, username: sasl.username, password };
}

/** TLS options as kafkajs passes them to tls.connect: PEM text, read from the configured files. */
export interface TlsOptions {
  ca?: string[];
  cert?: string;
  key?: string;
}

/**
 * kafkajs's `ssl` from `source.ssl`: true/false as they are, or the PEM files read
 * now (at start), so that a missing or unreadable file is one line naming it and
 * its key, not a TLS handshake error later.
 */
export function sslOptions(ssl: KafkaSourceConfig['ssl']): boolean | TlsOptions {
  if (typeof ssl === 'boolean') return ssl;
  const read = (key: 'ca' | 'cert' | 'key', file: string): string => {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      throw new ConfigError(`source.ssl.${key}: ${code === 'ENOENT' ? 'file not found' : 'cannot read file'}: ${file}${code === 'ENOENT' ? '' : ` (${(e as Error).message})`}`);
    }
    if (!text.includes('-----BEGIN ')) throw new ConfigError(`source.ssl.${key}: ${file} is not a PEM file (no "-----BEGIN" line)`);
    return text;
  };
  const out: TlsOptions = {};
  if (ssl.ca !== undefined) out.ca = [read('ca', ssl.ca)];
  if (ssl.cert !== undefined) out.cert = read('cert', ssl.cert);
  if (ssl.key !== undefined) out.key = read('key', ssl.key);
  return out;
}

export class KafkaSource {
  readonly topic: string;
  readonly groupId: string;
  readonly stats: KafkaSourceStats = {
    fetches: 0,
    kafkaBatches: 0,
    kafkaBatchesInFlight: 0,
    maxKafkaBatchesInFlight: 0,
    batchesBuilt: 0,
    batchesYielded: 0,
    batchesDropped: 0,
    maxPostedAhead: 0,
    fastDecoder: false,
    receiver: false,
    onMainThread: false,
    queued: 0,
    maxQueued: 0,
    records: 0,
  };

  private readonly bounded: boolean;
  private readonly fromBeginning: boolean;
  private readonly tickIntervalMs: number;
  private readonly clock: () => number;
  private readonly logger: ((entry: KafkaLogEntry) => void) | undefined;
  private readonly log: Pick<Logger, 'info' | 'warn'> | undefined;
  private readonly boundedRecheckMs: number;
  private readonly onOwnPartitionsRead: (() => void) | undefined;
  /** What the worker starts with; holds the SASL password, so never shown (see toJSON). */
  private readonly init: WorkerInit;
  /** kafkajs runs on this thread: source.consumerThread says so, or a consumer option is a function. */
  private readonly onThisThread: boolean;
  private channel: Channel | undefined;
  /** Set once the worker is gone (or never came up): nothing can be asked of it any more. */
  private dead = false;
  private hook: AssignmentHook | undefined;

  /** Current assignment, sorted. */
  private owned: number[] = [];
  private ownedSet = new Set<number>();
  /** Incremented on every assignment change (the worker's join count): batches of an older generation are stale. */
  private generation = 0;
  /** Per partition, the epoch of its last seek (0: never sought): batches built before it are stale. */
  private readonly epochs = new Map<number, number>();
  private lastEpoch = 0;
  /** Next offset to read, per owned partition, as far as the iterator's consumer got. */
  private readonly position = new Map<number, bigint>();
  /**
   * Per owned partition: the offset after the last record yielded, or where it was
   * sought or started if none was yielded since. From there to its position lie no
   * records (transaction markers, aborted records, the end of a bounded read).
   */
  private readonly recordsEnd = new Map<number, bigint>();
  /** Bounded: end offsets seen at start. */
  private endOffsets: Map<number, bigint> | undefined;
  /** Resolves when the assignment hooks of every join so far have run. */
  private gate: Promise<void> = Promise.resolve();
  private assigning = 0;
  /** Between a GROUP_JOIN and a crash: the assignment is the group's. */
  private inGroup = false;
  private lowOffsets: Map<number, bigint> | undefined;
  /** This member's id in the group, as of its last join. */
  private memberId: string | undefined;
  /**
   * The partitions this instance held when it found the group had dropped it (it was
   * stopped or cut off for longer than sessionTimeoutMs): others may have taken them
   * over and gone on meanwhile. Undefined while that has not happened.
   */
  droppedWith: readonly number[] | undefined;
  /** The group's committed offset of each partition, read when it was assigned. */
  private readonly committed = new Map<number, bigint>();
  /**
   * Bounded, waiting for partitions this instance does not own: the group's committed
   * offsets as last looked up. A partition another member committed at or past its
   * end offset is done; owning none of the topic proves nothing (a member that was
   * killed holds its partitions until its session times out).
   */
  private readonly groupCommitted = new Map<number, bigint>();
  /** Bounded: the next lookup of groupCommitted, while waiting. */
  private recheck: NodeJS.Timeout | undefined;
  private rechecking = false;
  /** Bounded: lookups of groupCommitted done (the first one is not delayed). */
  private lookups = 0;
  /** Bounded: nothing of its own left to read, waiting for partitions of other members. */
  private waiting = false;
  /** Bounded: that wait was logged (once a run). */
  private waitLogged = false;

  private readonly queue: Item[] = [];
  /** The buffer of the batch in the iterator's hand: consumed once the next message is asked for. */
  private handed: ArrayBuffer | undefined;
  private wake: (() => void) | undefined;
  private failure: WeirError | undefined;
  private userPaused = false;
  /** The pause state last sent to the worker. */
  private pausedSent = false;
  /** Bounded input consumed: nothing more is yielded but `end`. */
  private ended = false;
  private endPending = false;
  private closed = false;
  private started = false;
  private closing: Promise<void> | undefined;
  private readonly requests = new Map<number, { resolve: (r: LookupResult | undefined) => void; reject: (e: Error) => void }>();
  private lastRequest = 0;

  constructor(cfg: KafkaSourceConfig, opts: KafkaSourceOptions) {
    if (!Number.isInteger(opts.batchSize) || opts.batchSize < 1) throw new WeirError(`KafkaSource: batchSize must be a positive integer (got ${opts.batchSize})`, { domain: 'internal' });
    this.topic = cfg.topic;
    this.groupId = cfg.groupId;
    this.bounded = cfg.bounded;
    this.fromBeginning = cfg.fromBeginning;
    this.tickIntervalMs = opts.tickIntervalMs ?? 1000;
    this.clock = opts.clock ?? Date.now;
    this.hook = opts.onAssignment;
    this.logger = opts.logger;
    this.log = opts.log;
    this.boundedRecheckMs = opts.boundedRecheckMs ?? BOUNDED_RECHECK_MS;
    this.onOwnPartitionsRead = opts.onOwnPartitionsRead;
    const sasl = saslOptions(cfg.sasl, opts.env ?? process.env);
    const consumer: ConsumerConfig = {
      maxWaitTimeInMs: 100,
      sessionTimeout: cfg.sessionTimeoutMs,
      maxBytesPerPartition: cfg.maxBytesPerPartition,
      heartbeatInterval: Math.min(3000, Math.floor(cfg.sessionTimeoutMs / 3)),
      // kafkajs's consumer default (5 retries: ~9 s of backoff) gives up on the group
      // coordinator during an ordinary broker restart, and that error is final (no
      // restart: kafkajs src/consumer/index.js, onCrash). 8 retries back off 0.3, 0.6, ...
      // up to 30 s: about a minute before the consumer fails for good.
      retry: { retries: 8 },
      ...opts.consumer,
      groupId: cfg.groupId,
    };
    this.onThisThread = hasFunction(opts.consumer) || hasFunction(opts.client) || consumerOnThisThread(cfg.consumerThread);
    this.stats.onMainThread = this.onThisThread;
    this.init = {
      kind: 'weir-kafka-source',
      topic: cfg.topic,
      groupId: cfg.groupId,
      bounded: cfg.bounded,
      fromBeginning: cfg.fromBeginning,
      batchSize: opts.batchSize,
      readAhead: READ_AHEAD_BATCHES,
      logLevel: this.logger === undefined ? undefined : (opts.logLevel ?? 'warn'),
      client: { ...opts.client, clientId: cfg.clientId, brokers: cfg.brokers, ssl: sslOptions(cfg.ssl), ...(sasl === undefined ? {} : { sasl }) },
      consumer,
      ...(opts.scan === undefined || this.onThisThread ? {} : { scan: opts.scan }),
    };
  }

  /** Sets the assignment hook (replacing one given in the options). */
  onAssignment(cb: AssignmentHook): void {
    this.hook = cb;
  }

  /** Partitions owned now, sorted. */
  get assignment(): readonly number[] {
    return this.owned;
  }

  /**
   * Next offset to read of every owned partition whose position is known (consumed
   * from, sought, or, when bounded, its committed offset): what a checkpoint records.
   * Read it between two pulls of the iterator: it covers every batch yielded so far.
   */
  positions(): PartitionOffset[] {
    const out: PartitionOffset[] = [];
    for (const p of this.owned) {
      const pos = this.position.get(p);
      if (pos !== undefined) out.push({ partition: p, offset: pos.toString() });
    }
    return out;
  }

  /**
   * Where an owned partition stands, as the assignment hook sees it: the group's
   * committed offset (if any), the earliest offset the broker still has, and the
   * position it will be read from (until the hook seeks it elsewhere).
   */
  startInfo(partition: number): { committed: string | undefined; low: string; position: string | undefined } {
    return {
      committed: this.committed.get(partition)?.toString(),
      low: (this.lowOffsets?.get(partition) ?? 0n).toString(),
      position: this.position.get(partition)?.toString(),
    };
  }

  /**
   * The records of the topic, as batches of one partition each, ticks when idle,
   * and `end` once a bounded read is done. Starts the consumer on the first pull.
   * Throws a WeirError when the consumer fails for good. Iterate it once.
   *
   * A batch's `buf` goes back to the consumer thread, to be filled again, when the
   * next message is asked for: read (or copy) what you need of it before. (A batch
   * still held when the iteration stops is left alone.)
   */
  async *messages(): AsyncGenerator<StreamMessage> {
    if (this.started) throw new WeirError('KafkaSource.messages() can be iterated only once', { domain: 'internal' });
    this.started = true;
    if (this.closed) return;
    this.start();
    try {
      for (;;) {
        const m = await this.pull();
        if (m === undefined) return;
        yield m;
        if (m.kind === 'end') return;
      }
    } finally {
      // Whoever stops pulling stops the hand-over: the worker must not wait forever.
      this.dropAll();
    }
  }

  /**
   * Starts the consumer (its thread, the group join) before the first pull: a caller
   * with more to open first (the state backend, the changelog) lets the join go on
   * meanwhile. The assignment hook then waits for what it needs. Idempotent; the
   * first pull of messages() starts it otherwise.
   */
  start(): void {
    if (this.channel !== undefined || this.closed || this.failure !== undefined) return;
    try {
      this.channel = this.open();
    } catch (e) {
      this.fail(e, 'cannot start');
    }
    this.applyPause();
  }

  /**
   * Positions `partition` at `offset` (the next record read has this offset). Meant
   * for the assignment hook (recovery from a checkpoint); any batch of the partition
   * fetched before is dropped. Returns false, doing nothing, when the partition is
   * not owned now.
   */
  seek(partition: number, offset: string): boolean {
    if (!this.ownedSet.has(partition) || this.closed) return false;
    let pos = -1n;
    try {
      pos = BigInt(offset);
    } catch {
      // reported below
    }
    if (pos < 0n) throw new WeirError(`KafkaSource.seek: offset must be a non-negative integer (got ${JSON.stringify(offset)})`, { domain: 'internal' });
    this.seekWorker(partition, pos);
    this.position.set(partition, pos);
    this.recordsEnd.set(partition, pos);
    this.withdraw((q) => q.partition === partition);
    this.checkBoundedDone();
    return true;
  }

  /** Stops fetching and yielding records (ticks go on) until resume(): checkpoint barriers. */
  pause(): void {
    this.userPaused = true;
    this.applyPause();
  }

  resume(): void {
    this.userPaused = false;
    this.applyPause();
    this.signal();
  }

  /**
   * Commits `offsets` (next offset to read, per partition) for the group: call it once
   * the checkpoint holding them is durable. Partitions not owned now are skipped:
   * their new owner commits them (Kafka would accept a commit from any member of the
   * generation, and it would overwrite the owner's).
   */
  async commit(offsets: readonly PartitionOffset[]): Promise<void> {
    if (this.closed) throw new WeirError('KafkaSource.commit: the source is closed', { domain: 'internal' });
    const mine = offsets.filter((o) => this.ownedSet.has(o.partition));
    if (mine.length === 0) return;
    try {
      await this.request({ op: 'commit', offsets: mine.map((o) => ({ partition: o.partition, offset: this.pastNonRecords(o.partition, o.offset) })) });
    } catch (e) {
      const x = e as { type?: unknown; retriable?: unknown };
      throw new WeirError(`kafka: committing offsets of topic ${this.topic} for group ${this.groupId} failed: ${messageOf(e)}`, {
        domain: 'external',
        retriable: isRebalancing(x) || x.retriable === true,
        cause: e,
      });
    }
  }

  /**
   * `offset` of `partition`, or its position when `offset` covers every record yielded
   * and only offsets without records (a transaction's commit marker) lie between: a
   * bounded read of another member takes a committed offset at the end offset as
   * the partition done, and one short of it behind a marker would keep it waiting.
   */
  pastNonRecords(partition: number, offset: string): string {
    const pos = this.position.get(partition);
    const covered = this.recordsEnd.get(partition);
    return pos !== undefined && covered !== undefined && covered.toString() === offset && pos > covered ? pos.toString() : offset;
  }

  /** Leaves the group and disconnects. Idempotent. */
  close(): Promise<void> {
    this.closing ??= this.doClose();
    return this.closing;
  }

  /**
   * Stops the consumer without leaving its group: its thread is ended at once, with no
   * request to the brokers (which may be down). For a run that failed before it read
   * anything; the group sees the member go when its session times out.
   */
  abandon(): Promise<void> {
    this.dead = true;
    return this.close();
  }

  [inspect.custom](): string {
    return `KafkaSource { topic: ${this.topic}, groupId: ${this.groupId}, assignment: [${this.owned.join(', ')}] }`;
  }

  toJSON(): object {
    return { topic: this.topic, groupId: this.groupId, assignment: this.owned };
  }

  // ---- the worker ----

  private open(): Channel {
    this.log?.info({ topic: this.topic, consumerThread: this.onThisThread ? 'main' : 'own' }, `kafka consumer of topic ${this.topic} on ${this.onThisThread ? 'the main thread' : 'a thread of its own'}`);
    if (this.onThisThread) {
      const { port1, port2 } = new MessageChannel();
      port1.on('message', (m: FromWorker) => this.onWorkerMessage(m));
      // kafkajs decodes with Weir's decoder if it is in place on this thread (consumer-on-main.ts).
      serve(port2, this.init, fastDecoderInPlace());
      // As the worker: kafkajs's own sockets and timers decide whether the process stays.
      port1.unref();
      port2.unref();
      return this.portChannel(port1);
    }
    // Compiled next to this file (dist/src/sources/).
    const worker = new Worker(join(__dirname, 'kafka-thread.js'), { workerData: this.init, resourceLimits: { maxYoungGenerationSizeMb: WORKER_YOUNG_GENERATION_MB } });
    worker.on('message', (m: FromWorker) => this.onWorkerMessage(m));
    worker.on('error', (e) => this.onWorkerGone(`failed: ${e.name}: ${e.message}`, e));
    worker.on('exit', (code) => this.onWorkerGone(`exited (code ${code})`));
    // The iterator's own timers keep the process alive while it is pulled; a forgotten
    // source must not (requests hold it while they wait).
    worker.unref();
    return {
      post: (m, transfer) => worker.postMessage(m, transfer),
      hold: (on) => (on ? worker.ref() : worker.unref()),
      terminate: async () => void (await worker.terminate()),
    };
  }

  private portChannel(port: MessagePort): Channel {
    return {
      post: (m, transfer) => port.postMessage(m, transfer),
      hold: (on) => (on ? port.ref() : port.unref()),
      terminate: async () => port.close(),
    };
  }

  private post(m: ToWorker, transfer?: ArrayBuffer[]): void {
    if (this.channel !== undefined && !this.dead) this.channel.post(m, transfer);
  }

  private request(req: Request): Promise<LookupResult | undefined> {
    if (this.channel === undefined || this.dead) return Promise.reject(new WeirError('kafka: the consumer thread is not running', { domain: 'internal' }));
    const id = ++this.lastRequest;
    const p = new Promise<LookupResult | undefined>((resolve, reject) => this.requests.set(id, { resolve, reject }));
    this.channel.hold(true);
    this.post({ type: 'request', id, req });
    return p;
  }

  private settle(id: number, error: Error | undefined, result?: LookupResult): void {
    const r = this.requests.get(id);
    if (r === undefined) return;
    this.requests.delete(id);
    if (this.requests.size === 0) this.channel?.hold(false);
    if (error !== undefined) r.reject(error);
    else r.resolve(result);
  }

  private onWorkerGone(how: string, cause?: Error): void {
    if (this.dead) return;
    this.dead = true;
    const e = new WeirError(`kafka: the consumer thread ${how} (topic ${this.topic}, group ${this.groupId})`, { domain: 'internal', cause });
    for (const id of [...this.requests.keys()]) this.settle(id, e);
    if (!this.closed) this.fail(e, 'worker');
  }

  private onWorkerMessage(m: FromWorker): void {
    switch (m.type) {
      case 'batch': {
        const p = m.partition;
        if (this.closed || this.ended || this.failure !== undefined || !this.current(m.generation, p, m.epoch)) {
          this.stats.batchesDropped++;
          this.release(1, [m.buf]);
          return;
        }
        const batch: RecordBatch = {
          buf: Buffer.from(m.buf, 0, m.bytes),
          starts: m.starts,
          ends: m.ends,
          n: m.n,
          partition: p,
          firstOffset: m.firstOffset,
          highWatermark: m.highWatermark,
          messages: true,
        };
        if (m.offsets !== undefined) batch.offsets = m.offsets;
        if (m.nullOffsets !== undefined) batch.nullOffsets = m.nullOffsets;
        const paths = this.init.scan?.paths;
        if (m.scanAt !== undefined && paths !== undefined && m.n > 0) batch.scanned = scannedAt(m.buf, m.scanAt, m.n, paths, m.starts[0]!);
        this.queue.push({ kind: 'batch', msg: { kind: 'batch', batch }, partition: p, next: BigInt(m.next), memory: m.buf });
        this.stats.queued++;
        this.stats.maxQueued = Math.max(this.stats.maxQueued, this.stats.queued);
        this.signal();
        return;
      }
      case 'advance':
        if (this.current(m.generation, m.partition, m.epoch)) {
          this.queue.push({ kind: 'advance', partition: m.partition, next: BigInt(m.next) });
          this.signal();
        }
        return;
      case 'join':
        if (m.real && m.memberId !== undefined) {
          // A new member id while holding partitions: the group dropped this member (no
          // heartbeat for sessionTimeoutMs) and gave its partitions to others meanwhile.
          if (this.memberId !== undefined && m.memberId !== this.memberId && this.owned.length > 0) this.droppedWith ??= [...this.owned];
          this.memberId = m.memberId;
        }
        this.onJoin(m.partitions, m.real, m.generation);
        return;
      case 'stats':
        Object.assign(this.stats, m.stats);
        return;
      case 'log':
        this.logger?.(m.entry);
        return;
      case 'crash': {
        // kafkajs has disconnected and will not come back: the process must restart and recover.
        const error = revive(m.error);
        this.fail(new WeirError(`kafka consumer crashed (topic ${this.topic}, group ${this.groupId}): ${error.name}: ${error.message}`, { domain: 'external', retriable: false, cause: error }), 'crashed');
        return;
      }
      case 'failed': {
        const error = revive(m.error);
        // A bug of ours in eachBatch: kafkajs would retry the batch again and again; stop the iterator instead.
        this.fail(m.what === 'eachBatch' ? toWeirError(error) : error, m.what);
        return;
      }
      case 'reply':
        this.settle(m.id, m.error === undefined ? undefined : revive(m.error), m.result);
        return;
    }
  }

  /** Whether a batch built under `generation` and `epoch` of `partition` still reads from where we are. */
  private current(generation: number, partition: number, epoch: number): boolean {
    return generation === this.generation && this.ownedSet.has(partition) && epoch === (this.epochs.get(partition) ?? 0);
  }

  private seekWorker(partition: number, offset: bigint): void {
    const epoch = ++this.lastEpoch;
    this.epochs.set(partition, epoch);
    this.post({ type: 'seek', partition, offset: offset.toString(), epoch });
  }

  // ---- start and stop ----

  private async doClose(): Promise<void> {
    this.closed = true;
    this.stopRecheck();
    this.dropAll();
    this.signal();
    const ch = this.channel;
    if (ch === undefined) return;
    try {
      if (!this.dead) await this.request({ op: 'close' });
    } finally {
      this.dead = true;
      // Not waited for: the consumer has left its group and closed its connections, and
      // the thread's teardown (its heap, with a young generation of
      // WORKER_YOUNG_GENERATION_MB) took 50 to 70 ms that nothing needs to wait for.
      ch.terminate().catch(() => undefined);
    }
  }

  private fail(e: unknown, what: string): void {
    if (this.failure !== undefined || this.closed) return;
    this.failure = e instanceof WeirError ? e : new WeirError(`kafka: ${what} (topic ${this.topic}, group ${this.groupId}): ${messageOf(e)}`, { domain: 'external', retriable: true, cause: e });
    this.stopRecheck();
    this.dropAll();
    this.applyPause();
    this.signal();
  }

  // ---- assignment ----

  /**
   * A GROUP_JOIN of the worker's kafkajs (`real`), or a crash after which kafkajs
   * rejoins (everything revoked). The worker builds nothing of the new generation
   * until its hooks ran (the `open` message).
   */
  private onJoin(partitions: readonly number[], real: boolean, generation: number): void {
    try {
      this.changeAssignment(partitions, real, generation);
    } catch (e) {
      this.fail(e, 'assignment');
    }
  }

  private changeAssignment(partitions: readonly number[], real: boolean, generation: number): void {
    const now = [...partitions].sort((a, b) => a - b);
    const nowSet = new Set(now);
    const assigned = now.filter((p) => !this.ownedSet.has(p));
    const revoked = this.owned.filter((p) => !nowSet.has(p));
    const retained = now.filter((p) => this.ownedSet.has(p));
    this.generation = generation;
    this.owned = now;
    this.ownedSet = nowSet;
    for (const p of [...revoked, ...assigned]) {
      this.position.delete(p);
      this.recordsEnd.delete(p);
    }
    // Anything still queued was fetched under the old generation.
    this.withdraw(() => true);
    // kafkajs restarts every partition at its committed offset after a join:
    // continue retained ones where the iterator's consumer got. (The worker holds
    // this generation's batches until `open`, so the seek comes first.)
    for (const p of retained) {
      const pos = this.position.get(p);
      if (pos !== undefined) this.seekWorker(p, pos);
    }
    this.assigning++;
    this.inGroup = real;
    this.gate = this.gate
      .then(() => this.completeAssignment(real, assigned, revoked))
      .catch((e: unknown) => this.fail(e instanceof WeirError ? e : toWeirError(e), 'assignment'))
      .finally(() => {
        this.assigning--;
        this.post({ type: 'open', generation });
        this.checkBoundedDone();
        this.signal();
      });
  }

  private async completeAssignment(real: boolean, assigned: number[], revoked: number[]): Promise<void> {
    if (this.closed) return;
    if (real) {
      const wantEnds = this.endOffsets === undefined;
      // Where each new partition starts: its committed offset, else fromBeginning decides.
      if (wantEnds || assigned.length > 0) {
        const r = await this.request({ op: 'lookup', ends: wantEnds, committed: assigned.length > 0 });
        if (r?.ends !== undefined && this.endOffsets === undefined) {
          this.endOffsets = new Map(r.ends.map((o) => [o.partition, BigInt(o.high)]));
          this.lowOffsets = new Map(r.ends.map((o) => [o.partition, BigInt(o.low)]));
        }
        const endOffsets = this.endOffsets ?? new Map<number, bigint>();
        for (const p of r?.committed === undefined ? [] : assigned) {
          if (!this.ownedSet.has(p) || this.position.has(p)) continue;
          const c = BigInt(r?.committed?.find((x) => x.partition === p)?.offset ?? '-1');
          if (c >= 0n) this.committed.set(p, c);
          else this.committed.delete(p);
          const start = c >= 0n ? c : this.fromBeginning ? (this.lowOffsets?.get(p) ?? 0n) : (endOffsets.get(p) ?? 0n);
          this.position.set(p, start);
          this.recordsEnd.set(p, start);
        }
      }
    }
    if (this.hook !== undefined && (assigned.length > 0 || revoked.length > 0)) await this.hook(assigned, revoked);
  }

  private applyPause(): void {
    const pause = this.userPaused || this.ended || this.closed || this.failure !== undefined;
    if (pause === this.pausedSent || this.channel === undefined) return;
    this.pausedSent = pause;
    this.post({ type: 'pause', paused: pause });
  }

  // ---- bounded ----

  private advance(partition: number, next: bigint): void {
    if (!this.ownedSet.has(partition)) return;
    const end = this.bounded ? this.endOffsets?.get(partition) : undefined;
    if (end !== undefined && next > end) next = end;
    const pos = this.position.get(partition);
    if (pos === undefined || next > pos) this.position.set(partition, next);
    this.checkBoundedDone();
  }

  /**
   * A bounded read is done when every partition of the topic (as the end offsets
   * seen at start list them) has been read to its end offset by this instance, or
   * the group's committed offset shows another member read it to its end. Owning no
   * partition (or only finished ones) is not the end: a member that was killed holds
   * its partitions until its session times out, and a live one may still be reading.
   */
  private checkBoundedDone(): void {
    if (!this.bounded || this.ended || !this.inGroup || this.assigning > 0 || this.endOffsets === undefined) return;
    for (const p of this.owned) {
      const end = this.endOffsets.get(p) ?? 0n; // created after start: nothing to read
      const pos = this.position.get(p);
      if (end > 0n && (pos === undefined || pos < end)) {
        this.waiting = false;
        return;
      }
    }
    const byOthers: number[] = [];
    const waiting: number[] = [];
    for (const [p, end] of this.endOffsets) {
      if (this.ownedSet.has(p) || end <= (this.lowOffsets?.get(p) ?? 0n)) continue;
      const c = this.groupCommitted.get(p);
      if (c !== undefined && c >= end) byOthers.push(p);
      else waiting.push(p);
    }
    if (waiting.length > 0) {
      this.waitForOthers(waiting.sort((a, b) => a - b));
      return;
    }
    this.stopRecheck();
    if (byOthers.length > 0) {
      byOthers.sort((a, b) => a - b);
      this.log?.info(
        { topic: this.topic, groupId: this.groupId, partitions: byOthers },
        `bounded read done: partitions ${byOthers.join(', ')} of topic ${this.topic} were read to their end by another member of group ${this.groupId} (its committed offsets are at their end offsets)`,
      );
    }
    this.ended = true;
    this.endPending = true;
    this.withdraw(() => true);
    this.applyPause();
    this.signal();
  }

  /** Bounded, nothing of its own left to read: looks the group's committed offsets up until `partitions` are done or assigned here. */
  private waitForOthers(partitions: number[]): void {
    if (!this.waiting) {
      this.waiting = true;
      this.onOwnPartitionsRead?.();
    }
    // Logged once a lookup has shown they are not done (the first one comes at once).
    if (!this.waitLogged && this.lookups > 0) {
      this.waitLogged = true;
      const none = this.owned.length === 0;
      const why = none ? 'this instance holds no partition of it' : `this instance has read its partitions ${this.owned.join(', ')} to their end`;
      this.log?.[none ? 'warn' : 'info'](
        { topic: this.topic, groupId: this.groupId, partitions, owned: this.owned },
        `bounded read waits for partitions ${partitions.join(', ')} of topic ${this.topic}: ${why}, and they belong to other members of group ${this.groupId} whose committed offsets are not at the end offsets yet. ` +
          `It finishes once they are (checked every ${this.boundedRecheckMs} ms), or reads them itself when they are assigned here (a member that was killed holds them until its session times out, sessionTimeoutMs)`,
      );
    }
    if (this.recheck !== undefined || this.rechecking || this.closed || this.dead) return;
    // The first lookup at once: the others may be done already.
    this.recheck = setTimeout(() => void this.lookUpCommitted(), this.lookups === 0 ? 0 : this.boundedRecheckMs);
    // The iterator's own timers keep the process alive while it is pulled.
    this.recheck.unref();
  }

  private async lookUpCommitted(): Promise<void> {
    this.recheck = undefined;
    this.rechecking = true;
    try {
      const r = await this.request({ op: 'lookup', ends: false, committed: true });
      for (const c of r?.committed ?? []) {
        const offset = BigInt(c.offset);
        if (offset >= 0n) this.groupCommitted.set(c.partition, offset);
      }
    } catch {
      // The consumer thread is gone (its failure is reported by the iterator) or the
      // coordinator moves: the next lookup asks again.
    } finally {
      this.rechecking = false;
      this.lookups++;
    }
    this.checkBoundedDone();
  }

  private stopRecheck(): void {
    clearTimeout(this.recheck);
    this.recheck = undefined;
  }

  // ---- the hand-over ----

  /** Drops the queued items `which` selects; the worker may post as many batches again. */
  private withdraw(which: (q: Item) => boolean): void {
    const memory: ArrayBuffer[] = [];
    for (let k = this.queue.length - 1; k >= 0; k--) {
      const q = this.queue[k]!;
      if (!which(q)) continue;
      this.queue.splice(k, 1);
      if (q.kind === 'batch') memory.push(q.memory);
    }
    this.stats.queued -= memory.length;
    this.stats.batchesDropped += memory.length;
    this.release(memory.length, memory);
  }

  private dropAll(): void {
    this.withdraw(() => true);
    if (this.handed !== undefined) {
      // Not given back: whoever stopped pulling may still hold that batch.
      this.handed = undefined;
      this.release(1);
    }
  }

  /**
   * `n` batches left our hands (consumed or dropped): the worker may post as many
   * again, into `memory` (their buffers, given back: no longer ours to read).
   */
  private release(n: number, memory: ArrayBuffer[] = [], behind?: boolean): void {
    if (n > 0) this.post(behind === undefined ? { type: 'ack', n, memory } : { type: 'ack', n, memory, behind }, memory);
  }

  private signal(): void {
    const w = this.wake;
    this.wake = undefined;
    w?.();
  }

  /** The next message; undefined once closed. Asking for it means the previous batch is consumed. */
  private async pull(): Promise<StreamMessage | undefined> {
    const startMs = performance.now();
    if (this.handed !== undefined) {
      const memory = this.handed;
      this.handed = undefined;
      // Batches waiting now: the consumer's thread is ahead, and scans the next ones (init.scan).
      this.release(1, [memory], this.queue.length >= BEHIND_BATCHES);
    }
    for (;;) {
      if (this.failure !== undefined) throw this.failure;
      if (this.closed) return undefined;
      if (this.endPending) {
        this.endPending = false;
        return { kind: 'end' };
      }
      if (!this.userPaused && !this.ended) {
        const item = this.queue.shift();
        if (item !== undefined) {
          if (item.kind === 'advance') {
            this.advance(item.partition, item.next);
            continue;
          }
          const { batch } = item.msg;
          this.stats.queued--;
          const pos = this.position.get(item.partition);
          if (pos !== undefined && BigInt(batch.firstOffset) < pos) {
            // Yielding it would count records twice; exactly-once recovery rests on this never happening.
            this.stats.batchesDropped++;
            this.release(1, [item.memory]);
            this.fail(new WeirError(`kafka: partition ${item.partition} of topic ${this.topic} delivered offset ${batch.firstOffset} behind its position ${pos}`, { domain: 'internal' }), 'hand-over');
            continue;
          }
          this.handed = item.memory;
          this.recordsEnd.set(item.partition, BigInt(offsetOf(batch, batch.n - 1)) + 1n);
          this.stats.batchesYielded++;
          this.stats.records += batch.n;
          this.advance(item.partition, item.next);
          return item.msg;
        }
      }
      const left = startMs + this.tickIntervalMs - performance.now();
      if (left <= 0) return { kind: 'tick', nowMs: this.clock() };
      await new Promise<void>((res) => {
        const timer = setTimeout(res, left);
        this.wake = () => {
          clearTimeout(timer);
          res();
        };
      });
    }
  }
}
