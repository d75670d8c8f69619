// The kafkajs side of KafkaSource (src/sources/kafka.ts). It runs in a worker_threads
// Worker (entry: kafka-thread.ts), where fetching and decoding messages overlaps with
// Weir's own work per event on the main thread; there fetched records are decoded by
// kafka-decode.ts instead of kafkajs's decoder (~0.9 µs of this thread's CPU per
// message, fetch and hand-over included, against ~3.5 µs). This side owns the kafkajs
// Consumer and Admin, turns fetched batches into RecordBatch parts and posts them;
// everything that decides what a record means (positions, generations, the
// assignment hook, bounded ends, ticks) stays on the main side, which drops whatever
// this side posted before a change it has not seen yet.
//
// Protocol: one port, FIFO both ways, plain data only (errors cross as PlainError),
// the ArrayBuffers of a batch transferred, not copied (a consumed batch's buffer comes
// back with its ack, to be filled again).
//
//   main -> worker (ToWorker)
//     pause {paused}              stop or go on fetching the topic (kept across kafkajs restarts)
//     seek {partition, offset, epoch}
//                                 position a partition; what is built from then on carries `epoch`
//     open {generation}           the assignment hooks of that join ran: its batches may be built
//     ack {n, memory, behind?}    n posted batches left the main side (consumed or dropped);
//                                 memory: buffers of them given back (transferred) for reuse;
//                                 behind: batches wait for the operator (init.scan: scan the next ones)
//     request {id, req}           lookup | commit | close, answered by one reply of the same id
//   worker -> main (FromWorker)
//     join {generation, partitions, real}
//                                 GROUP_JOIN (real), or a crash kafkajs recovers from (nothing owned)
//     batch {generation, epoch, partition, next, buf, bytes, starts, ends, n, firstOffset, offsets?, highWatermark, scanAt?}
//                                 record k is buf[starts[k], ends[k]), within its first
//                                 `bytes` (bytes between records are Kafka's framing, not
//                                 records); offsets (a Float64Array) only when they are not
//                                 firstOffset, firstOffset + 1, ...; scanAt: the records'
//                                 scan follows in buf from there
//     advance {generation, epoch, partition, next}
//                                 the partition's position moves past records never posted
//                                 (control records, the end of a bounded read)
//     stats, log {entry}
//     crash {error}               kafkajs CRASH without restart: it will not come back
//     failed {what, error}        starting or eachBatch failed
//     reply {id, error?, result?}
//
// Backpressure: at most `readAhead` batches are posted and not yet acked; eachBatch
// waits (heartbeating, as kafkajs sends none while its handler runs) for an ack
// before it posts another, and kafkajs fetches again only when eachBatch returns. So
// this side runs ahead of the main side by at most `readAhead` RecordBatches plus one
// fetch response.
//
// The same code also runs on the main thread over a MessageChannel (kafka.ts does so
// when a consumer option is a function, as a partition assigner is: functions cannot
// be posted to a worker).
// Before kafkajs's producer loads: a linear grouping of messages per partition (see there).
import '../kafkajs-grouping';
// Before kafkajs's consumer loads: records of aborted transactions are dropped correctly (see there).
import '../kafkajs-aborted';
import type { TransferListItem } from 'node:worker_threads';
import { KafkaRecord } from './kafka-decode';
import { BatchScanner } from '../core/wasm';
import type { ScanSpec } from '../core/pathspec';
import { wakeSleepers } from '../kafkajs-sleep';
import { receiveSocketFactory } from '../kafkajs-receive';
import { Kafka, logLevel as LogLevel, type Admin, type Consumer, type ConsumerConfig, type EachBatchPayload, type KafkaConfig, type KafkaMessage, type LogEntry, type SASLOptions } from 'kafkajs';

export type LogLevelName = 'error' | 'warn' | 'info' | 'debug';

export interface KafkaLogEntry {
  level: LogLevelName;
  namespace: string;
  message: string;
  extra: Record<string, unknown>;
}

/** What the worker is started with (its workerData). Holds the SASL password: never log it. */
export interface WorkerInit {
  kind: 'weir-kafka-source';
  topic: string;
  groupId: string;
  bounded: boolean;
  fromBeginning: boolean;
  batchSize: number;
  readAhead: number;
  /** Forward kafkajs's log lines at this level and above; undefined: none. */
  logLevel: LogLevelName | undefined;
  client: KafkaConfig;
  consumer: ConsumerConfig;
  /** Scan the records of batches with this spec before posting them, while the operator is behind (BatchMessage.scanAt). */
  scan?: ScanSpec;
}

/** An error as data: what the main side needs to rebuild the WeirError it reports. */
export interface PlainError {
  name: string;
  message: string;
  stack?: string;
  /** kafkajs's error type (REBALANCE_IN_PROGRESS, ...). */
  type?: string;
  retriable?: boolean;
  /** Set when it was a WeirError. */
  weir?: { domain: 'user' | 'external' | 'internal'; retriable: boolean };
}

export interface WorkerStats {
  fetches: number;
  kafkaBatches: number;
  kafkaBatchesInFlight: number;
  maxKafkaBatchesInFlight: number;
  batchesBuilt: number;
  maxPostedAhead: number;
  /** Fetched records are decoded by kafka-decode.ts, not by kafkajs's own decoder. */
  fastDecoder: boolean;
  /** Fetch responses are received into buffers used again (kafkajs-receive.ts). */
  receiver: boolean;
}

export type Request =
  | { op: 'lookup'; ends: boolean; committed: boolean }
  | { op: 'commit'; offsets: Array<{ partition: number; offset: string }> }
  | { op: 'close' };

export interface LookupResult {
  /** Per partition: high (end) and low (earliest) offsets; when asked for. */
  ends?: Array<{ partition: number; high: string; low: string }>;
  /** The group's committed offset per partition ('-1': none); when asked for. */
  committed?: Array<{ partition: number; offset: string }>;
}

export type ToWorker =
  | { type: 'pause'; paused: boolean }
  | { type: 'seek'; partition: number; offset: string; epoch: number }
  | { type: 'open'; generation: number }
  | { type: 'ack'; n: number; memory: ArrayBuffer[]; behind?: boolean }
  | { type: 'request'; id: number; req: Request };

export interface BatchMessage {
  type: 'batch';
  generation: number;
  epoch: number;
  partition: number;
  /** Position of the partition once this batch is consumed. */
  next: string;
  /** Record k is buf[starts[k], ends[k]); bytes between records are not records. */
  buf: ArrayBuffer;
  /** The bytes of `buf` this batch uses (a buffer given back may be larger). */
  bytes: number;
  starts: Uint32Array;
  ends: Uint32Array;
  n: number;
  /** Offset of the first record (below 2^53, so exact). */
  firstOffset: number;
  /** Offset of every record; only when they have gaps (else record k is firstOffset + k). */
  offsets: Float64Array | undefined;
  /** Offsets of the records whose value was null (a tombstone); only when some was. */
  nullOffsets: number[] | undefined;
  highWatermark: string;
  /**
   * With init.scan: where in `buf` the scanner's output for the n records begins (after
   * `bytes`): their field records, then their status bytes (BatchScanner.scan).
   */
  scanAt?: number;
}

export type FromWorker =
  | { type: 'join'; generation: number; partitions: number[]; real: boolean; memberId?: string }
  | BatchMessage
  | { type: 'advance'; generation: number; epoch: number; partition: number; next: string }
  | { type: 'stats'; stats: WorkerStats }
  | { type: 'log'; entry: KafkaLogEntry }
  | { type: 'crash'; error: PlainError }
  | { type: 'failed'; what: string; error: PlainError }
  | { type: 'reply'; id: number; error?: PlainError; result?: LookupResult };

/** The part of a MessagePort this side uses (parentPort, or one end of a MessageChannel). */
export interface Port {
  postMessage(value: unknown, transferList?: readonly TransferListItem[]): void;
  on(event: 'message', listener: (value: unknown) => void): unknown;
}

const LEVEL_NAMES: Record<number, LogLevelName> = {
  [LogLevel.ERROR]: 'error',
  [LogLevel.WARN]: 'warn',
  [LogLevel.INFO]: 'info',
  [LogLevel.DEBUG]: 'debug',
};
export const LEVELS: Record<LogLevelName, LogLevel> = { error: LogLevel.ERROR, warn: LogLevel.WARN, info: LogLevel.INFO, debug: LogLevel.DEBUG };

/**
 * Restarts of a consumer that kafkajs gave up on because it found no group coordinator
 * (see restartLater), one after another before the run fails: backing off 1, 2, 4 ...
 * up to 30 s, about two minutes in all.
 */
const COORDINATOR_RESTARTS = 7;

/**
 * Most bytes between two values that are still copied with them as one run: Kafka's
 * framing of a record and a short key are a few dozen; large keys or headers are
 * not worth carrying along.
 */
const MAX_GAP = 512;
/** Batch buffers are allocated in multiples of this. */
const MEMORY_STEP = 64 * 1024;
const EMPTY = new ArrayBuffer(0);


export function plainError(e: unknown): PlainError {
  if (!(e instanceof Error)) return { name: 'Error', message: String(e) };
  const x = e as Error & { type?: unknown; retriable?: unknown; domain?: unknown };
  const p: PlainError = { name: e.name, message: e.message };
  if (e.stack !== undefined) p.stack = e.stack;
  if (typeof x.type === 'string') p.type = x.type;
  if (typeof x.retriable === 'boolean') p.retriable = x.retriable;
  // Duck-typed: this file does not import the error classes (it is also the worker's entry).
  if (x.domain === 'user' || x.domain === 'external' || x.domain === 'internal') p.weir = { domain: x.domain, retriable: x.retriable === true };
  return p;
}

/**
 * The values of msgs[i, j) as one batch: record k is memory[starts[k], ends[k]), within
 * its first `bytes` (a null value is an empty record). kafkajs's values are views into
 * the buffer it decoded the fetch response from, in offset order: each run of values
 * in one buffer with little between them (Kafka's framing of a record, its key) is
 * copied in one piece, not value by value, and those bytes between stay in between.
 * Values in other buffers, out of order or far apart start a new run. Fills `spare`
 * (a buffer of an earlier batch) if it is large enough.
 */
export function packValues(
  msgs: ReadonlyArray<Pick<KafkaMessage, 'value'>>,
  i: number,
  j: number,
  spare: ArrayBuffer | undefined,
  /** Room to leave in `memory` after the values (for the scanner's output). */
  extra = 0,
): { memory: ArrayBuffer; bytes: number; starts: Uint32Array<ArrayBuffer>; ends: Uint32Array<ArrayBuffer>; nulls: number[] | undefined } {
  const n = j - i;
  const starts = new Uint32Array(n);
  const ends = new Uint32Array(n);
  // Record indices whose value is null: the caller turns them into offsets.
  let nulls: number[] | undefined;
  // Runs as (buffer, from, to) triples; `bytes`: those before the current run.
  const runs: Array<ArrayBufferLike | number> = [];
  let bytes = 0;
  let src: ArrayBufferLike | undefined;
  let from = 0, to = 0;
  for (let k = 0; k < n; k++) {
    const m = msgs[i + k]!;
    // The value's bytes: where they are in its buffer, read in place from a KafkaRecord (no Buffer made).
    let buffer: ArrayBufferLike, o: number, length: number;
    if (m instanceof KafkaRecord) {
      buffer = m.source.buffer;
      o = m.source.byteOffset + m.valueStart;
      length = m.valueStart < 0 ? -1 : m.valueEnd - m.valueStart;
    } else {
      const v = m.value;
      buffer = v?.buffer ?? EMPTY;
      o = v?.byteOffset ?? 0;
      length = v === null ? -1 : v.length;
    }
    if (length > 0) {
      if (buffer !== src || o < to || o - to > MAX_GAP) {
        if (src !== undefined) runs.push(src, from, to);
        bytes += to - from;
        src = buffer;
        from = to = o;
      }
      to = o + length;
      starts[k] = bytes + o - from;
      ends[k] = bytes + to - from;
    } else {
      starts[k] = ends[k] = bytes + to - from;
      if (length < 0) (nulls ??= []).push(k);
    }
  }
  if (src !== undefined) runs.push(src, from, to);
  bytes += to - from;
  // Not from Buffer's shared pool: the whole ArrayBuffer is transferred. Rounded up, so
  // that the next batches, of about the same size, fit in it.
  const size = bytes + extra;
  const memory = spare !== undefined && spare.byteLength >= size ? spare : Buffer.allocUnsafeSlow(Math.ceil(size / MEMORY_STEP) * MEMORY_STEP).buffer;
  const out = new Uint8Array(memory, 0, bytes);
  let pos = 0;
  for (let r = 0; r < runs.length; r += 3) {
    const a = runs[r + 1] as number, b = runs[r + 2] as number;
    out.set(new Uint8Array(runs[r] as ArrayBufferLike, a, b - a), pos);
    pos += b - a;
  }
  return { memory, bytes, starts, ends, nulls };
}

/**
 * The offsets of msgs[i, j) (i < j): the first, and all of them only when they have
 * gaps. Throws for an offset of 2^53 or above (not exact as a number); `where` names
 * the partition for the message.
 */
export function packOffsets(msgs: ReadonlyArray<Pick<KafkaMessage, 'offset'>>, i: number, j: number, where: () => string): { firstOffset: number; offsets: Float64Array<ArrayBuffer> | undefined } {
  const firstOffset = Number(msgs[i]!.offset);
  const last = Number(msgs[j - 1]!.offset);
  if (!(last <= Number.MAX_SAFE_INTEGER)) throw new Error(`${where()}: offset ${msgs[j - 1]!.offset} is 2^53 or above, which Weir does not support`);
  // Offsets increase within a partition: n of them spanning n - 1 have no gaps.
  if (last - firstOffset === j - i - 1) return { firstOffset, offsets: undefined };
  const offsets = new Float64Array(j - i);
  for (let k = i; k < j; k++) offsets[k - i] = Number(msgs[k]!.offset);
  return { firstOffset, offsets };
}

/**
 * Serves one KafkaSource over `port` until it asks to close. `fastDecoder`: kafkajs
 * decodes fetched records with kafka-decode.ts's decoder (the consumer thread installs
 * it before it loads kafkajs; on the main thread kafkajs is usually loaded already).
 */
export function serve(port: Port, init: WorkerInit, fastDecoder = false): void {
  new ConsumerSide(port, init, fastDecoder);
}

class ConsumerSide {
  private readonly topic: string;
  private readonly consumer: Consumer;
  private readonly admin: Admin;
  private readonly heartbeatIntervalMs: number;
  private readonly stats: WorkerStats;
  private statsPending = false;

  /** Incremented on every join, as the main side does: the two agree on the numbers. */
  private generation = 0;
  /** The newest generation whose assignment hooks the main side has run. */
  private opened = 0;
  private owned = new Set<number>();
  /** Per partition, the epoch of the last seek the main side sent (0: none). */
  private readonly epochs = new Map<number, number>();
  /** Bounded: end offsets seen at start (the first lookup). */
  private endOffsets: Map<number, bigint> | undefined;
  /** Batches posted and not yet acked. */
  private posted = 0;
  /**
   * Buffers of consumed batches, given back to be filled again: a new one of ~1 MB
   * per batch cost more in page faults (first writes to fresh memory) than copying
   * into it, and its release is the main thread's work.
   */
  private readonly spare: ArrayBuffer[] = [];
  /** With init.scan, once it is compiled: scans batches' records before they are posted. */
  private scanner: BatchScanner | undefined;
  /** Whether the operator's thread had batches waiting when it last took one. */
  private operatorBehind = false;
  private paused = false;
  /**
   * Partitions a bounded read has read to their end offset: paused in kafkajs, so that
   * it does not keep a fetch waiting at the broker for records past the end (a stop
   * waits for that fetch).
   */
  private readonly atEnd = new Set<number>();
  private closed = false;
  private starting: Promise<void> | undefined;
  /** The topic's offsets, asked for while the consumer joins (the first lookup's ends). */
  private topicOffsets: Promise<Array<{ partition: number; high: string; low: string }>> | undefined;
  /** Resolves the waits of eachBatch when something they wait on may have changed. */
  private changed: () => void = () => {};
  private change: Promise<void> = this.nextChange();

  constructor(
    private readonly port: Port,
    private readonly init: WorkerInit,
    fastDecoder: boolean,
  ) {
    this.stats = { fetches: 0, kafkaBatches: 0, kafkaBatchesInFlight: 0, maxKafkaBatchesInFlight: 0, batchesBuilt: 0, maxPostedAhead: 0, fastDecoder, receiver: false };
    this.topic = init.topic;
    // Batches posted before it is ready are scanned on the operator's thread, as without it.
    if (init.scan !== undefined)
      BatchScanner.create(init.scan).then(
        (s) => (this.scanner = s),
        (e: unknown) => this.postLog({ level: 'warn', namespace: 'weir', message: `records are scanned on the operator's thread: ${plainError(e).message}`, extra: {} }),
      );
    const threshold = init.logLevel === undefined ? undefined : LEVELS[init.logLevel];
    const sasl = init.client.sasl as SASLOptions | undefined;
    const secret = sasl !== undefined && 'password' in sasl ? sasl.password : undefined;
    // Always our own logCreator: KAFKAJS_LOG_LEVEL in the environment overrides
    // logLevel, and kafkajs's default creator writes to the console.
    const logCreator = () => (e: LogEntry) => {
      if (threshold === undefined || e.level > threshold || e.level === LogLevel.NOTHING) return;
      const { timestamp: _t, logger: _l, message, ...extra } = e.log;
      let text = String(message);
      if (secret !== undefined && secret.length > 0) text = text.split(secret).join('***');
      this.postLog({ level: LEVEL_NAMES[e.level] ?? 'debug', namespace: e.namespace, message: text, extra });
    };
    // Fetch responses into buffers used again: eachBatch keeps nothing of its messages (postBatch copies their values).
    const socketFactory = sasl === undefined ? receiveSocketFactory() : undefined;
    this.stats.receiver = socketFactory !== undefined;
    const kafka = new Kafka({ ...init.client, ...(socketFactory === undefined ? {} : { socketFactory }), logLevel: threshold ?? LogLevel.NOTHING, logCreator });
    this.heartbeatIntervalMs = init.consumer.heartbeatInterval ?? 3000;
    this.consumer = kafka.consumer(init.consumer);
    this.admin = kafka.admin();

    const ev = this.consumer.events;
    this.consumer.on(ev.GROUP_JOIN, (e) => {
      this.restarts = 0;
      this.onJoin(e.payload.memberAssignment[this.topic] ?? [], true, e.payload.memberId);
    });
    this.consumer.on(ev.CRASH, (e) => {
      // kafkajs left the group and rejoins by itself: report it all revoked now.
      if (e.payload.restart) this.onJoin([], false);
      else if (this.mayRestart(e.payload.error)) {
        this.onJoin([], false);
        this.restartLater();
      } else this.post({ type: 'crash', error: plainError(e.payload.error) });
    });
    this.consumer.on(ev.FETCH_START, () => {
      this.stats.fetches++;
      this.statsChanged();
    });
    // Batches that held only control records or aborted messages never reach
    // eachBatch; kafkajs resolves them itself. Move the position past them too, or a
    // bounded read whose tail is a transaction marker would never end.
    this.consumer.on(ev.END_BATCH_PROCESS, (e) => {
      const p = e.payload.partition;
      if (e.payload.batchSize === 0 && this.owned.has(p)) this.postAdvance(p, BigInt(e.payload.lastOffset) + 1n);
    });

    port.on('message', (m) => this.onMessage(m as ToWorker));
    this.starting = this.start().catch((e: unknown) => this.post({ type: 'failed', what: 'cannot start', error: plainError(e) }));
  }

  /** Restarts in a row after kafkajs found no group coordinator (reset by a join). */
  private restarts = 0;

  /**
   * Whether a crash is one to restart from: kafkajs looks for the group coordinator on
   * every broker it knows, and when none answers (a single broker restarting) it gives
   * up at once with KafkaJSGroupCoordinatorNotFound, which it counts final, not
   * retriable, whatever its retry settings.
   */
  private mayRestart(error: Error): boolean {
    let cause: unknown = error;
    while (cause instanceof Error && cause.name !== 'KafkaJSGroupCoordinatorNotFound' && (cause as { cause?: unknown }).cause !== undefined) cause = (cause as { cause?: unknown }).cause;
    return !this.closed && this.restarts < COORDINATOR_RESTARTS && cause instanceof Error && cause.name === 'KafkaJSGroupCoordinatorNotFound';
  }

  /** Runs the consumer again (kafkajs disconnected it) after a backoff; the run fails if that does. */
  private restartLater(): void {
    const delay = Math.min(30_000, 1000 * 2 ** this.restarts++);
    setTimeout(() => {
      if (this.closed) return;
      this.run().catch((e: unknown) => this.post({ type: 'crash', error: plainError(e) }));
    }, delay);
  }

  private async start(): Promise<void> {
    // The admin client connects and asks for the topic's offsets while the consumer
    // connects: the first assignment needs them, and asked for only after the join
    // they delayed the first record. (Promise.all: a failure of either is handled.)
    const admin = this.admin.connect().then(() => {
      this.topicOffsets = this.admin.fetchTopicOffsets(this.topic);
      this.topicOffsets.catch(() => {}); // the lookup that awaits it asks again
    });
    const consumer = this.consumer.connect().then(async () => {
      if (!this.closed) await this.consumer.subscribe({ topics: [this.topic], fromBeginning: this.init.fromBeginning });
    });
    await Promise.all([consumer, admin]);
    if (this.closed) return;
    await this.run();
  }

  private async run(): Promise<void> {
    await this.consumer.run({
      autoCommit: false,
      eachBatchAutoResolve: false,
      partitionsConsumedConcurrently: 1,
      eachBatch: (payload) => this.eachBatch(payload),
    });
    this.applyPause();
  }

  private onMessage(m: ToWorker): void {
    switch (m.type) {
      case 'pause':
        this.paused = m.paused;
        this.applyPause();
        break;
      case 'seek':
        this.epochs.set(m.partition, m.epoch);
        if (this.atEnd.delete(m.partition)) this.applyPause();
        try {
          this.consumer.seek({ topic: this.topic, partition: m.partition, offset: m.offset });
        } catch (e) {
          this.post({ type: 'failed', what: `seek of partition ${m.partition}`, error: plainError(e) });
        }
        break;
      case 'open':
        this.opened = Math.max(this.opened, m.generation);
        break;
      case 'ack':
        this.posted -= m.n;
        if (m.behind !== undefined) this.operatorBehind = m.behind;
        for (const b of m.memory) if (this.spare.length <= this.init.readAhead) this.spare.push(b);
        break;
      case 'request':
        this.handle(m.req).then(
          (result) => this.post(result === undefined ? { type: 'reply', id: m.id } : { type: 'reply', id: m.id, result }),
          (e: unknown) => this.post({ type: 'reply', id: m.id, error: plainError(e) }),
        );
        break;
    }
    this.changed();
  }

  private async handle(req: Request): Promise<LookupResult | undefined> {
    switch (req.op) {
      case 'lookup': {
        const out: LookupResult = {};
        // The topic's offsets and the group's committed ones at the same time. The
        // first lookup takes the topic's offsets asked for at start (or, if that
        // failed, asks again).
        const fresh = () => this.admin.fetchTopicOffsets(this.topic);
        const ends = req.ends ? (this.topicOffsets?.catch(fresh) ?? fresh()) : undefined;
        this.topicOffsets = undefined; // the next lookup asks again
        const committed = req.committed ? this.admin.fetchOffsets({ groupId: this.init.groupId, topics: [this.topic] }) : undefined;
        const [e, c] = await Promise.all([ends, committed]);
        if (e !== undefined) {
          this.endOffsets = new Map(e.map((o) => [o.partition, BigInt(o.high)]));
          out.ends = e.map((o) => ({ partition: o.partition, high: o.high, low: o.low }));
        }
        if (c !== undefined) out.committed = (c[0]?.partitions ?? []).map((x) => ({ partition: x.partition, offset: x.offset }));
        return out;
      }
      case 'commit':
        await this.consumer.commitOffsets(req.offsets.map((o) => ({ topic: this.topic, ...o })));
        return undefined;
      case 'close':
        this.closed = true;
        this.changed();
        await this.starting;
        try {
          // A fetch loop asleep (every partition paused) would be waited for.
          const stopped = this.consumer.stop();
          wakeSleepers();
          await stopped;
          await this.consumer.disconnect();
        } finally {
          await this.admin.disconnect();
        }
        return undefined;
    }
  }

  private post(m: FromWorker, transfer?: readonly TransferListItem[]): void {
    this.port.postMessage(m, transfer);
  }

  private postLog(entry: KafkaLogEntry): void {
    try {
      this.post({ type: 'log', entry });
    } catch {
      // Something in `extra` cannot be cloned (a function, a socket): send what JSON keeps of it.
      let extra: Record<string, unknown>;
      try {
        extra = JSON.parse(JSON.stringify(entry.extra, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v instanceof Error ? plainError(v) : v))) as Record<string, unknown>;
      } catch {
        extra = {};
      }
      this.post({ type: 'log', entry: { ...entry, extra } });
    }
  }

  private statsChanged(): void {
    if (this.statsPending) return;
    this.statsPending = true;
    queueMicrotask(() => {
      this.statsPending = false;
      this.post({ type: 'stats', stats: { ...this.stats } });
    });
  }

  private onJoin(partitions: readonly number[], real: boolean, memberId?: string): void {
    this.generation++;
    this.owned = new Set(partitions);
    // The new owner of a partition positions it again (and a read to its end pauses it again).
    this.atEnd.clear();
    // kafkajs's pause state does not survive its restarts.
    this.applyPause();
    this.post({ type: 'join', generation: this.generation, partitions: [...partitions], real, ...(memberId === undefined ? {} : { memberId }) });
    this.changed();
  }

  private applyPause(): void {
    try {
      if (this.paused || this.closed) this.consumer.pause([{ topic: this.topic }]);
      else {
        this.consumer.resume([{ topic: this.topic }]);
        // Pausing some partitions ends kafkajs's pause of the whole topic: only now.
        if (this.atEnd.size > 0) this.consumer.pause([{ topic: this.topic, partitions: [...this.atEnd] }]);
      }
    } catch {
      // Not running yet, or between a crash and kafkajs's restart: start() or the next join applies it.
    }
  }

  /** A bounded read is done with partition `p`: kafkajs fetches it no more (until a seek or a join). */
  private pauseAtEnd(p: number): void {
    if (this.atEnd.has(p)) return;
    this.atEnd.add(p);
    this.applyPause();
  }

  private postAdvance(partition: number, next: bigint): void {
    this.post({ type: 'advance', generation: this.generation, epoch: this.epochs.get(partition) ?? 0, partition, next: next.toString() });
  }

  private nextChange(): Promise<void> {
    return new Promise<void>((res) => {
      this.changed = () => {
        this.change = this.nextChange();
        res();
      };
    });
  }

  private async eachBatch(payload: EachBatchPayload): Promise<void> {
    const s = this.stats;
    s.kafkaBatches++;
    s.kafkaBatchesInFlight++;
    s.maxKafkaBatchesInFlight = Math.max(s.maxKafkaBatchesInFlight, s.kafkaBatchesInFlight);
    this.statsChanged();
    try {
      // Fetched under this generation; its assignment hook must have run first.
      const generation = this.generation;
      await this.aliveUntil(() => this.opened >= generation, payload);
      const { batch } = payload;
      const p = batch.partition;
      const msgs = batch.messages;
      const stale = () => this.closed || generation !== this.generation || this.opened < generation || !this.owned.has(p) || !payload.isRunning() || payload.isStale();
      const end = this.init.bounded ? this.endOffsets?.get(p) : undefined;
      // Control records after the last message belong to this batch: step over them at its end.
      const batchNext = BigInt(batch.lastOffset()) + 1n;
      let i = 0;
      while (i < msgs.length) {
        if (stale()) return;
        let j = Math.min(msgs.length, i + this.init.batchSize);
        if (end !== undefined && BigInt(msgs[j - 1]!.offset) >= end) {
          // Bounded: never read past the end offset seen at start.
          let k = i;
          while (k < j && BigInt(msgs[k]!.offset) < end) k++;
          j = k;
          if (j === i) {
            this.postAdvance(p, end);
            this.pauseAtEnd(p);
            return;
          }
        }
        const last = msgs[j - 1]!.offset;
        let next = BigInt(last) + 1n;
        if (j === msgs.length && batchNext > next) next = end !== undefined && batchNext > end ? end : batchNext;
        await this.aliveUntil(() => this.posted < this.init.readAhead, payload);
        // A seek, a join or close may have come while we waited.
        if (stale()) return;
        this.postBatch(generation, p, msgs, i, j, next, batch.highWatermark);
        // Marks consumption only (autoCommit is off): commits come from commit(). If the
        // main side drops the batch, it is for a seek or a join, which reposition kafkajs.
        payload.resolveOffset(last);
        await payload.heartbeat();
        i = j;
        if (end !== undefined && next >= end) {
          this.pauseAtEnd(p);
          return;
        }
      }
    } catch (e) {
      // kafkajs's own errors (a heartbeat that found the group rebalancing) are for kafkajs.
      if (e instanceof Error && e.name.startsWith('KafkaJS')) throw e;
      // A bug of ours: kafkajs would retry the batch again and again; stop the iterator instead.
      this.post({ type: 'failed', what: 'eachBatch', error: plainError(e) });
    } finally {
      s.kafkaBatchesInFlight--;
      this.statsChanged();
    }
  }

  /** Posts msgs[i, j) as one batch. */
  private postBatch(generation: number, partition: number, msgs: readonly KafkaMessage[], i: number, j: number, next: bigint, highWatermark: string): void {
    // Scanned here while the operator's thread is behind (batches wait for it): it then
    // only decodes the fields. While it waits for batches, this thread is the slower
    // one (it shares the cores with the broker too), and the operator's thread scans.
    const scanner = this.operatorBehind ? this.scanner : undefined;
    const scanned = scanner?.bytesFor(j - i) ?? 0;
    const { memory, bytes, starts, ends, nulls } = packValues(msgs, i, j, this.spare.pop(), scanned);
    scanner?.scan(new Uint8Array(memory, 0, bytes), starts, ends, j - i, new Uint8Array(memory, bytes, scanned));
    const { firstOffset, offsets } = packOffsets(msgs, i, j, () => `partition ${partition} of topic ${this.topic}`);
    const transfer: TransferListItem[] = [memory, starts.buffer, ends.buffer];
    if (offsets !== undefined) transfer.push(offsets.buffer);
    const epoch = this.epochs.get(partition) ?? 0;
    this.post({ type: 'batch', generation, epoch, partition, next: next.toString(), buf: memory, bytes, starts, ends, n: j - i, firstOffset, offsets, highWatermark, nullOffsets: nulls?.map((k) => Number(msgs[i + k]!.offset)), ...(scanner === undefined ? {} : { scanAt: bytes }) }, transfer);
    this.posted++;
    this.stats.batchesBuilt++;
    this.stats.maxPostedAhead = Math.max(this.stats.maxPostedAhead, this.posted);
    this.statsChanged();
  }

  /**
   * Waits until `done()`, or until the batch is no longer worth waiting for (close, a
   * seek, kafkajs stopping), heartbeating meanwhile: kafkajs sends none while its handler runs.
   */
  private async aliveUntil(done: () => boolean, payload: EachBatchPayload): Promise<void> {
    while (!done() && !this.closed && payload.isRunning() && !payload.isStale()) {
      let timer: NodeJS.Timeout | undefined;
      const beat = new Promise<'beat'>((res) => (timer = setTimeout(() => res('beat'), this.heartbeatIntervalMs)));
      const r = await Promise.race([this.change, beat]);
      clearTimeout(timer);
      if (r === 'beat') await payload.heartbeat();
    }
  }
}

