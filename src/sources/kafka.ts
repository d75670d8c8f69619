// The consumer side of Weir's Kafka integration: a kafkajs consumer group whose
// push callbacks (eachBatch) are bridged to a pull iterator of StreamMessages.
//
// Backpressure: eachBatch hands the records of a fetched batch over one RecordBatch
// at a time and does not return until the iterator's consumer has pulled each of
// them and asked for the next, so kafkajs (which fetches again only when its
// handler returns) never runs ahead by more than one fetch response.
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
// the assignment hook) this class heartbeats itself, every heartbeatInterval.
import { inspect } from 'node:util';
import {
  Kafka,
  logLevel as LogLevel,
  type Admin,
  type Consumer,
  type ConsumerConfig,
  type EachBatchPayload,
  type KafkaConfig,
  type KafkaMessage,
  type LogEntry,
  type SASLOptions,
} from 'kafkajs';
import type { SourceConfig } from '../config';
import { ConfigError, WeirError, toWeirError } from '../errors/errors';
import type { RecordBatch, StreamMessage } from '../pipeline/types';

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

export interface KafkaLogEntry {
  level: 'error' | 'warn' | 'info' | 'debug';
  namespace: string;
  message: string;
  extra: Record<string, unknown>;
}

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
  /** Where sasl.passwordEnv is looked up. @default process.env */
  env?: Record<string, string | undefined>;
  /**
   * kafkajs consumer settings (timeouts, fetch sizes, retry). groupId comes from the
   * config. Defaults as kafkajs's except maxWaitTimeInMs (100 instead of 5000): while
   * every partition is paused (the end of a bounded read, a checkpoint barrier),
   * kafkajs's fetch loop sleeps maxWaitTimeInMs instead of fetching, and stopping the
   * consumer waits for that sleep (kafkajs src/consumer/consumerGroup.js, fetch()); so
   * does the first fetch after a resume. With 1000 ms a bounded run ended ~1 s after
   * its last record (bench/kafka.ts); an idle consumer pays ~10 fetch requests a second.
   */
  consumer?: Partial<Omit<ConsumerConfig, 'groupId'>>;
  /** kafkajs client settings other than brokers, clientId, ssl, sasl and logging. */
  client?: Pick<KafkaConfig, 'connectionTimeout' | 'authenticationTimeout' | 'requestTimeout' | 'retry'>;
}

/** Counters of the hand-over queue (backpressure is observable, and tested). */
export interface KafkaSourceStats {
  /** kafkajs fetch requests started. */
  fetches: number;
  /** kafkajs batches given to eachBatch. */
  kafkaBatches: number;
  /** eachBatch calls running now, and at most ever (kafkajs runs them one at a time). */
  kafkaBatchesInFlight: number;
  maxKafkaBatchesInFlight: number;
  /** RecordBatches built from kafkajs batches, and yielded by the iterator. */
  batchesBuilt: number;
  batchesYielded: number;
  /** RecordBatches built but not yet pulled: now, and at most ever. */
  queued: number;
  maxQueued: number;
  records: number;
}

/** One RecordBatch waiting in the hand-over queue, and the eachBatch call waiting on it. */
interface Pending {
  msg: StreamMessage & { kind: 'batch' };
  partition: number;
  /** Position of the partition once this batch is consumed. */
  next: bigint;
  state: 'queued' | 'handed' | 'settled';
  settle: (r: 'drained' | 'dropped') => void;
  done: Promise<'drained' | 'dropped'>;
}

const LEVEL_NAMES: Record<number, KafkaLogEntry['level']> = {
  [LogLevel.ERROR]: 'error',
  [LogLevel.WARN]: 'warn',
  [LogLevel.INFO]: 'info',
  [LogLevel.DEBUG]: 'debug',
};
const LEVELS: Record<KafkaLogEntry['level'], LogLevel> = { error: LogLevel.ERROR, warn: LogLevel.WARN, info: LogLevel.INFO, debug: LogLevel.DEBUG };

/** kafkajs's rebalance errors (its errors.js isRebalancing). */
function isRebalancing(e: unknown): boolean {
  const type = (e as { type?: unknown } | null)?.type;
  return type === 'REBALANCE_IN_PROGRESS' || type === 'NOT_COORDINATOR_FOR_GROUP' || type === 'ILLEGAL_GENERATION';
}

function messageOf(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
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
  return { mechanism: sasl.mechanism, username: sasl.username, password } as SASLOptions;
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
    queued: 0,
    maxQueued: 0,
    records: 0,
  };

  private readonly bounded: boolean;
  private readonly fromBeginning: boolean;
  private readonly batchSize: number;
  private readonly tickIntervalMs: number;
  private readonly heartbeatIntervalMs: number;
  private readonly clock: () => number;
  private readonly consumer: Consumer;
  private readonly admin: Admin | undefined;
  private hook: AssignmentHook | undefined;

  /** Current assignment, sorted. */
  private owned: number[] = [];
  private ownedSet = new Set<number>();
  /** Incremented on every assignment change: batches of an older generation are stale. */
  private generation = 0;
  /** Next offset to read, per owned partition, as far as the iterator's consumer got. */
  private readonly position = new Map<number, bigint>();
  /** Bounded: end offsets seen at start. */
  private endOffsets: Map<number, bigint> | undefined;
  /** Resolves when the assignment hooks of every join so far have run. */
  private gate: Promise<void> = Promise.resolve();
  private assigning = 0;
  /** Between a GROUP_JOIN and a crash: the assignment is the group's. */
  private inGroup = false;
  private lowOffsets: Map<number, bigint> | undefined;
  /** The group's committed offset of each partition, read when it was assigned. */
  private readonly committed = new Map<number, bigint>();

  private readonly queue: Pending[] = [];
  private handed: Pending | undefined;
  private wake: (() => void) | undefined;
  private failure: WeirError | undefined;
  private userPaused = false;
  /** Bounded input consumed: nothing more is yielded but `end`. */
  private ended = false;
  private endPending = false;
  private closed = false;
  private starting: Promise<void> | undefined;
  private closing: Promise<void> | undefined;

  constructor(cfg: KafkaSourceConfig, opts: KafkaSourceOptions) {
    if (!Number.isInteger(opts.batchSize) || opts.batchSize < 1) throw new WeirError(`KafkaSource: batchSize must be a positive integer (got ${opts.batchSize})`, { domain: 'internal' });
    this.topic = cfg.topic;
    this.groupId = cfg.groupId;
    this.bounded = cfg.bounded;
    this.fromBeginning = cfg.fromBeginning;
    this.batchSize = opts.batchSize;
    this.tickIntervalMs = opts.tickIntervalMs ?? 1000;
    this.clock = opts.clock ?? Date.now;
    this.hook = opts.onAssignment;
    const sasl = saslOptions(cfg.sasl, opts.env ?? process.env);

    const logger = opts.logger;
    const threshold = LEVELS[opts.logLevel ?? 'warn'];
    const secret = sasl !== undefined && 'password' in sasl ? sasl.password : undefined;
    // Always our own logCreator: KAFKAJS_LOG_LEVEL in the environment overrides
    // logLevel, and kafkajs's default creator writes to the console.
    const logCreator = () => (e: LogEntry) => {
      if (logger === undefined || e.level > threshold || e.level === LogLevel.NOTHING) return;
      const { timestamp: _t, logger: _l, message, ...extra } = e.log;
      let text = String(message);
      if (secret !== undefined && secret.length > 0) text = text.split(secret).join('***');
      logger({ level: LEVEL_NAMES[e.level] ?? 'debug', namespace: e.namespace, message: text, extra });
    };
    const kafka = new Kafka({
      ...opts.client,
      clientId: cfg.clientId,
      brokers: cfg.brokers,
      ssl: cfg.ssl,
      ...(sasl === undefined ? {} : { sasl }),
      logLevel: logger === undefined ? LogLevel.NOTHING : threshold,
      logCreator,
    });
    const consumerCfg: ConsumerConfig = {
      maxWaitTimeInMs: 100,
      sessionTimeout: cfg.sessionTimeoutMs,
      maxBytesPerPartition: cfg.maxBytesPerPartition,
      heartbeatInterval: Math.min(3000, Math.floor(cfg.sessionTimeoutMs / 3)),
      ...opts.consumer,
      groupId: cfg.groupId,
    };
    this.heartbeatIntervalMs = consumerCfg.heartbeatInterval ?? 3000;
    this.consumer = kafka.consumer(consumerCfg);
    // Always: where a partition starts (committed offset, earliest) is part of recovery.
    this.admin = kafka.admin();

    const ev = this.consumer.events;
    this.consumer.on(ev.GROUP_JOIN, (e) => this.onJoin(e.payload.memberAssignment[this.topic] ?? [], true));
    this.consumer.on(ev.CRASH, (e) => this.onCrash(e.payload.error, e.payload.restart));
    this.consumer.on(ev.FETCH_START, () => void this.stats.fetches++);
    // Batches that held only control records or aborted messages never reach
    // eachBatch; kafkajs resolves them itself. Move the position past them too, or a
    // bounded read whose tail is a transaction marker would never end.
    this.consumer.on(ev.END_BATCH_PROCESS, (e) => {
      if (e.payload.batchSize === 0) this.advance(e.payload.partition, BigInt(e.payload.lastOffset) + 1n);
    });
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
   */
  async *messages(): AsyncGenerator<StreamMessage> {
    if (this.starting !== undefined) throw new WeirError('KafkaSource.messages() can be iterated only once', { domain: 'internal' });
    if (this.closed) return;
    this.starting = this.start().catch((e: unknown) => this.fail(e, 'cannot start'));
    try {
      for (;;) {
        const m = await this.pull();
        if (m === undefined) return;
        yield m;
        if (m.kind === 'end') return;
      }
    } finally {
      // Whoever stops pulling stops the hand-over: eachBatch must not wait forever.
      this.dropAll();
    }
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
    this.consumer.seek({ topic: this.topic, partition, offset: pos.toString() });
    this.position.set(partition, pos);
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
      await this.consumer.commitOffsets(mine.map((o) => ({ topic: this.topic, partition: o.partition, offset: o.offset })));
    } catch (e) {
      throw new WeirError(`kafka: committing offsets of topic ${this.topic} for group ${this.groupId} failed: ${messageOf(e)}`, {
        domain: 'external',
        retriable: isRebalancing(e) || (e as { retriable?: unknown }).retriable === true,
        cause: e,
      });
    }
  }

  /** Leaves the group and disconnects. Idempotent. */
  close(): Promise<void> {
    this.closing ??= this.doClose();
    return this.closing;
  }

  [inspect.custom](): string {
    return `KafkaSource { topic: ${this.topic}, groupId: ${this.groupId}, assignment: [${this.owned.join(', ')}] }`;
  }

  toJSON(): object {
    return { topic: this.topic, groupId: this.groupId, assignment: this.owned };
  }

  // ---- start and stop ----

  private async start(): Promise<void> {
    await this.consumer.connect();
    if (this.closed) return;
    await this.consumer.subscribe({ topics: [this.topic], fromBeginning: this.fromBeginning });
    if (this.admin !== undefined) await this.admin.connect();
    if (this.closed) return;
    await this.consumer.run({
      autoCommit: false,
      eachBatchAutoResolve: false,
      partitionsConsumedConcurrently: 1,
      eachBatch: (payload) => this.eachBatch(payload),
    });
  }

  private async doClose(): Promise<void> {
    this.closed = true;
    this.dropAll();
    this.signal();
    await this.starting;
    try {
      await this.consumer.stop();
      await this.consumer.disconnect();
    } finally {
      await this.admin?.disconnect();
    }
  }

  private fail(e: unknown, what: string): void {
    if (this.failure !== undefined || this.closed) return;
    this.failure = e instanceof WeirError ? e : new WeirError(`kafka: ${what} (topic ${this.topic}, group ${this.groupId}): ${messageOf(e)}`, { domain: 'external', retriable: true, cause: e });
    this.dropAll();
    this.applyPause();
    this.signal();
  }

  private onCrash(error: Error, restart: boolean): void {
    if (!restart) {
      // kafkajs has disconnected and will not come back: the process must restart and recover.
      this.fail(new WeirError(`kafka consumer crashed (topic ${this.topic}, group ${this.groupId}): ${error.name}: ${error.message}`, { domain: 'external', retriable: false, cause: error }), 'crashed');
      return;
    }
    // kafkajs left the group and rejoins by itself: what we owned may be gone (or
    // consumed by another member meanwhile), so report it all revoked now.
    this.onJoin([], false);
  }

  // ---- assignment ----

  /**
   * GROUP_JOIN (`real`), or a crash after which kafkajs rejoins (everything revoked).
   * Synchronous, inside kafkajs's join and before it fetches: a throw would land in
   * kafkajs, so failures go to the iterator.
   */
  private onJoin(partitions: readonly number[], real: boolean): void {
    try {
      this.changeAssignment(partitions, real);
    } catch (e) {
      this.fail(e, 'assignment');
    }
  }

  private changeAssignment(partitions: readonly number[], real: boolean): void {
    const now = [...partitions].sort((a, b) => a - b);
    const nowSet = new Set(now);
    const assigned = now.filter((p) => !this.ownedSet.has(p));
    const revoked = this.owned.filter((p) => !nowSet.has(p));
    const retained = now.filter((p) => this.ownedSet.has(p));
    this.generation++;
    this.owned = now;
    this.ownedSet = nowSet;
    for (const p of revoked) this.position.delete(p);
    for (const p of assigned) this.position.delete(p);
    // Anything still queued was fetched under the old generation.
    this.withdraw(() => true);
    // kafkajs restarts every partition at its committed offset after a join:
    // continue retained ones where the iterator's consumer got.
    for (const p of retained) {
      const pos = this.position.get(p);
      if (pos !== undefined) this.consumer.seek({ topic: this.topic, partition: p, offset: pos.toString() });
    }
    // kafkajs's pause state does not survive its restarts.
    this.applyPause();
    this.assigning++;
    this.inGroup = real;
    this.gate = this.gate
      .then(() => this.completeAssignment(real, assigned, revoked))
      .catch((e: unknown) => this.fail(e instanceof WeirError ? e : toWeirError(e), 'assignment'))
      .finally(() => {
        this.assigning--;
        this.checkBoundedDone();
        this.signal();
      });
  }

  private async completeAssignment(real: boolean, assigned: number[], revoked: number[]): Promise<void> {
    if (this.closed) return;
    if (this.admin !== undefined && real) {
      if (this.endOffsets === undefined) {
        const ends = await this.admin.fetchTopicOffsets(this.topic);
        this.endOffsets = new Map(ends.map((o) => [o.partition, BigInt(o.high)]));
        this.lowOffsets = new Map(ends.map((o) => [o.partition, BigInt(o.low)]));
      }
      // Where each new partition starts: its committed offset, else fromBeginning decides.
      if (assigned.length > 0) {
        const [committed] = await this.admin.fetchOffsets({ groupId: this.groupId, topics: [this.topic] });
        for (const p of assigned) {
          if (!this.ownedSet.has(p) || this.position.has(p)) continue;
          const c = BigInt(committed?.partitions.find((x) => x.partition === p)?.offset ?? '-1');
          if (c >= 0n) this.committed.set(p, c);
          else this.committed.delete(p);
          const start = c >= 0n ? c : this.fromBeginning ? (this.lowOffsets?.get(p) ?? 0n) : (this.endOffsets.get(p) ?? 0n);
          this.position.set(p, start);
        }
      }
    }
    if (this.hook !== undefined && (assigned.length > 0 || revoked.length > 0)) await this.hook(assigned, revoked);
  }

  private applyPause(): void {
    const pause = this.userPaused || this.ended || this.closed || this.failure !== undefined;
    try {
      if (pause) this.consumer.pause([{ topic: this.topic }]);
      else this.consumer.resume([{ topic: this.topic }]);
    } catch {
      // Not running yet, or between a crash and kafkajs's restart: the next join applies it.
    }
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

  private checkBoundedDone(): void {
    if (!this.bounded || this.ended || !this.inGroup || this.assigning > 0 || this.endOffsets === undefined) return;
    for (const p of this.owned) {
      const end = this.endOffsets.get(p) ?? 0n; // created after start: nothing to read
      const pos = this.position.get(p);
      if (end > 0n && (pos === undefined || pos < end)) return;
    }
    this.ended = true;
    this.endPending = true;
    this.withdraw(() => true);
    this.applyPause();
    this.signal();
  }

  // ---- kafkajs side of the hand-over ----

  private async eachBatch(payload: EachBatchPayload): Promise<void> {
    const s = this.stats;
    s.kafkaBatches++;
    s.kafkaBatchesInFlight++;
    s.maxKafkaBatchesInFlight = Math.max(s.maxKafkaBatchesInFlight, s.kafkaBatchesInFlight);
    try {
      // Fetched under this generation; its assignment hook must have run first.
      const generation = this.generation;
      await this.aliveWhile(this.gate, payload);
      const { batch } = payload;
      const p = batch.partition;
      const msgs = batch.messages;
      const end = this.bounded ? this.endOffsets?.get(p) : undefined;
      // Control records after the last message belong to this batch: step over them at its end.
      const batchNext = BigInt(batch.lastOffset()) + 1n;
      let i = 0;
      while (i < msgs.length) {
        if (this.closed || this.ended || this.failure !== undefined || generation !== this.generation || !this.ownedSet.has(p) || !payload.isRunning() || payload.isStale()) return;
        let j = Math.min(msgs.length, i + this.batchSize);
        if (end !== undefined && BigInt(msgs[j - 1]!.offset) >= end) {
          // Bounded: never read past the end offset seen at start.
          let k = i;
          while (k < j && BigInt(msgs[k]!.offset) < end) k++;
          j = k;
          if (j === i) {
            this.advance(p, end);
            return;
          }
        }
        const last = msgs[j - 1]!.offset;
        let next = BigInt(last) + 1n;
        if (j === msgs.length && batchNext > next) next = end !== undefined && batchNext > end ? end : batchNext;
        const item = this.pending(this.build(p, msgs, i, j, batch.highWatermark), next);
        let r: 'drained' | 'dropped';
        try {
          r = await this.handOver(item, payload);
        } catch (e) {
          // A heartbeat found the group rebalancing: let kafkajs rejoin.
          this.withdraw((q) => q === item);
          throw e;
        }
        if (r === 'dropped') return;
        // Marks consumption only (autoCommit is off): commits come from commit().
        payload.resolveOffset(last);
        await payload.heartbeat();
        i = j;
        if (end !== undefined && next >= end) return;
      }
    } catch (e) {
      // kafkajs's own errors (a heartbeat that found the group rebalancing) are for kafkajs.
      if (e instanceof Error && e.name.startsWith('KafkaJS')) throw e;
      // A bug of ours: kafkajs would retry the batch again and again; stop the iterator instead.
      this.fail(toWeirError(e), 'eachBatch');
    } finally {
      s.kafkaBatchesInFlight--;
    }
  }

  /** A RecordBatch of msgs[i, j): their values concatenated into one buffer (a null value is an empty record). */
  private build(partition: number, msgs: readonly KafkaMessage[], i: number, j: number, highWatermark: string): RecordBatch {
    const n = j - i;
    let total = 0;
    for (let k = i; k < j; k++) total += msgs[k]!.value?.length ?? 0;
    const buf = Buffer.allocUnsafe(total);
    const starts = new Uint32Array(n);
    const ends = new Uint32Array(n);
    const offsets = new Array<string>(n);
    let pos = 0;
    for (let k = 0; k < n; k++) {
      const m = msgs[i + k]!;
      starts[k] = pos;
      if (m.value !== null) pos += m.value.copy(buf, pos);
      ends[k] = pos;
      offsets[k] = m.offset;
    }
    this.stats.batchesBuilt++;
    return { buf, starts, ends, n, partition, firstOffset: Number(msgs[i]!.offset), offsets, highWatermark };
  }

  private pending(batch: RecordBatch, next: bigint): Pending {
    let settle!: (r: 'drained' | 'dropped') => void;
    const done = new Promise<'drained' | 'dropped'>((res) => (settle = res));
    const item: Pending = {
      msg: { kind: 'batch', batch },
      partition: batch.partition,
      next,
      state: 'queued',
      done,
      settle: (r) => {
        if (item.state === 'settled') return;
        item.state = 'settled';
        settle(r);
      },
    };
    return item;
  }

  private handOver(item: Pending, payload: EachBatchPayload): Promise<'drained' | 'dropped'> {
    if (this.closed || this.ended || this.failure !== undefined) return Promise.resolve('dropped');
    this.queue.push(item);
    this.stats.queued = this.queue.length;
    this.stats.maxQueued = Math.max(this.stats.maxQueued, this.queue.length);
    this.signal();
    return this.aliveWhile(item.done, payload);
  }

  /** Waits for `p`, heartbeating meanwhile: kafkajs sends none while its handler runs. */
  private async aliveWhile<T>(p: Promise<T>, payload: EachBatchPayload): Promise<T> {
    const done = p.then((v) => ({ v }));
    for (;;) {
      let timer: NodeJS.Timeout | undefined;
      const beat = new Promise<'beat'>((res) => (timer = setTimeout(() => res('beat'), this.heartbeatIntervalMs)));
      const r = await Promise.race([done, beat]);
      clearTimeout(timer);
      if (r !== 'beat') return r.v;
      if (this.closed || !payload.isRunning()) continue;
      await payload.heartbeat();
    }
  }

  private withdraw(which: (q: Pending) => boolean): void {
    for (let k = this.queue.length - 1; k >= 0; k--) {
      const q = this.queue[k]!;
      if (!which(q)) continue;
      this.queue.splice(k, 1);
      q.settle('dropped');
    }
    this.stats.queued = this.queue.length;
  }

  private dropAll(): void {
    this.withdraw(() => true);
    this.handed?.settle('dropped');
    this.handed = undefined;
  }

  // ---- iterator side of the hand-over ----

  private signal(): void {
    const w = this.wake;
    this.wake = undefined;
    w?.();
  }

  /** The next message; undefined once closed. Asking for it means the previous batch is consumed. */
  private async pull(): Promise<StreamMessage | undefined> {
    const startMs = performance.now();
    if (this.handed !== undefined) {
      this.handed.settle('drained');
      this.handed = undefined;
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
          this.stats.queued = this.queue.length;
          item.state = 'handed';
          this.handed = item;
          this.stats.batchesYielded++;
          this.stats.records += item.msg.batch.n;
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
