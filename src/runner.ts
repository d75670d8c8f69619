// The composition root: wires a source, the operator, sinks, the dead-letter queue
// and metrics together. Everything else depends inward on pipeline/ and core/.
import { maskSecrets, type Config } from './config';
import { ConfigError, WeirError, isOutputClosed, messageOf } from './errors/errors';
import { classify } from './errors/classify';
import { createLogger, type Logger } from './log';
import { KafkaDeadLetterSink, KafkaResultSink, type KafkaSinkOptions } from './sinks/kafka';
import { PostgresResultSink } from './sinks/postgres';
import { KafkaSource, saslOptions, sslOptions, type AssignmentHook } from './sources/kafka';
import { fileBatches, streamBatches } from './sources/lines';
import { generatorBatches } from './sources/generator';
import { EMBEDDED_TICK_INTERVAL_MS, withTicks } from './sources/ticks';
import { DEAD_LETTER_LINES, JsonLinesSink, RESULT_LINES, type RecordSink } from './sinks/jsonl';
import type { ResultBatch } from './pipeline/results';
import { Delivery } from './sinks/delivery';
import type { QueueLimits } from './sinks/queue';
import { PartitionedOperator } from './pipeline/partitioned';
import { Checkpointer } from './checkpoint/coordinator';
import { Changelog } from './changelog/thread';
import type { ChangelogKafkaOptions } from './changelog/kafka';
import { CheckpointScheduler } from './checkpoint/scheduler';
import { OperatorLoop } from './loop';
import { openStateBackend } from './state';
import type { StateBackend } from './state/backend';
import type { DeadLetter, RecordBatch, StreamMessage } from './pipeline/types';
import { RunDiagnostics } from './metrics/diagnostics';
import { scanSpec } from './core/pathspec';
import { usableCores } from './cores';
import { scanAhead } from './sources/scan-ahead';
import { Instrumentation, StatusModel, createMetrics, startMetricsServer, type MetricsServer } from './metrics';

export interface RunSummary {
  records: number;
  results: number;
  deadLetters: number;
  lateEvents: number;
  elapsedMs: number;
  /** True when the run was stopped (RunOptions.signal) before its source ended: open windows did not fire. */
  stopped: boolean;
  /** `deadLetters` by reason (`malformed`, `invalid`, `late`, `undeliverable`). */
  deadLettersByReason: Record<string, number>;
}

/** The run's one-line summary for stderr: counts, rate, dead letters by reason. */
export function summaryLine(s: RunSummary): string {
  const rate = s.elapsedMs > 0 ? Math.round((s.records * 1000) / s.elapsedMs) : s.records;
  const reasons = Object.entries(s.deadLettersByReason)
    .filter(([, n]) => n > 0)
    .map(([r, n]) => `${r} ${n}`)
    .join(', ');
  return `${s.stopped ? 'stopped' : 'done'}: ${s.records} events in ${(s.elapsedMs / 1000).toFixed(2)} s (${rate} events/s), ${s.results} results, ${s.deadLetters} dead letters${reasons === '' ? '' : ` (${reasons})`}, ${s.lateEvents} late`;
}

export interface RunOptions {
  /** Progress line on stderr (events/s, watermark, open windows). @default stderr is a TTY */
  progress?: boolean;
  clock?: () => number;
  /** Instrumentation bus to report to (metrics subscribe to it). @default a new one */
  bus?: Instrumentation;
  /** Called with the metrics server's port once it listens (tests pass port 0). */
  onMetricsListening?: (port: number) => void;
  /**
   * Aborting it stops the run gracefully: no more pulls from the source, the batch in
   * flight is finished and written, sinks are flushed and closed, and the run resolves
   * with its summary. Open windows do NOT fire: a stop is not the end of the input.
   */
  signal?: AbortSignal;
  /** Where logs go. @default createLogger(cfg): JSON lines on stderr, silent without a `log` section */
  logger?: Logger;
  /** Waits between retries of sink writes (tests inject one that returns at once). @default a timer */
  sleep?: (ms: number) => Promise<void>;
}

/**
 * Whether the state backend and the changelog's clients run on the loop's thread
 * (processing.backgroundThreads): `auto` puts them there for a bounded read whose
 * consumer is on the main thread, as on one core it is (source.consumerThread).
 */
export function backgroundHere(cfg: Config, kafka: KafkaSource | undefined): boolean {
  const where = cfg.processing.backgroundThreads;
  if (where !== 'auto') return where === 'main';
  return cfg.source.type === 'kafka' && cfg.source.bounded && kafka?.stats.onMainThread === true;
}

/** A Kafka sink's own brokers, or else the Kafka source's cluster with its client id, TLS and SASL. */
export function kafkaSinkOptions(cfg: Config, where: string, s: { topic: string; brokers?: string[] | undefined }): KafkaSinkOptions {
  if (s.brokers !== undefined && s.brokers.length > 0) return { brokers: s.brokers, topic: s.topic };
  const src = cfg.source;
  if (src.type !== 'kafka') throw new ConfigError(`${where}.brokers: required when the source is not Kafka`);
  const sasl = saslOptions(src.sasl, process.env);
  return { brokers: src.brokers, topic: s.topic, clientId: src.clientId, ssl: sslOptions(src.ssl), ...(sasl === undefined ? {} : { sasl }) };
}

/** Opens result sink `sinks[i]`; `append`: a file sink keeps what its file holds. */
export function openResultSink(cfg: Config, i: number, append: boolean, log?: Logger): Promise<RecordSink<ResultBatch>> {
  const s = cfg.sinks[i]!;
  switch (s.type) {
    case 'stdout':
      return Promise.resolve(new JsonLinesSink(process.stdout, false, 'results', RESULT_LINES));
    case 'file':
      return JsonLinesSink.toFile(s.path, `sinks[${i}] results`, RESULT_LINES, append, log);
    case 'kafka':
      return KafkaResultSink.open(kafkaSinkOptions(cfg, `sinks[${i}]`, s));
    case 'postgres':
      return PostgresResultSink.open({ url: s.url, table: s.table });
  }
}

/** Whether sinks[i] takes its results in the checkpoint transactions (not through delivery). */
const transactional = (s: Config['sinks'][number]): boolean => s.type === 'kafka' && s.exactlyOnce;

/** Opens every result sink delivery writes to (exactly-once ones are written by the checkpoints), with its index. */
async function openResultSinks(cfg: Config, log: Logger): Promise<Array<{ i: number; sink: RecordSink<ResultBatch> }>> {
  const which = cfg.sinks.flatMap((s, i) => (transactional(s) ? [] : [{ s, i }]));
  const opened = await Promise.allSettled(which.map(({ s, i }) => openResultSink(cfg, i, s.type === 'file' && (s.append ?? cfg.source.type === 'kafka'), log)));
  const failed = opened.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed !== undefined) {
    // A connected producer or pool keeps the process alive: close whatever did open.
    await Promise.allSettled(opened.map((r) => (r.status === 'fulfilled' ? r.value.close() : Promise.resolve())));
    throw failed.reason;
  }
  return opened.map((r, k) => ({ i: which[k]!.i, sink: (r as PromiseFulfilledResult<RecordSink<ResultBatch>>).value }));
}

async function openDeadLetters(cfg: Config, log: Logger): Promise<RecordSink<DeadLetter>> {
  const d = cfg.deadLetter;
  switch (d.type) {
    case 'file':
      return JsonLinesSink.toFile(d.path, 'deadLetter', DEAD_LETTER_LINES, d.append ?? cfg.source.type === 'kafka', log);
    case 'stdout':
      return new JsonLinesSink(process.stdout, false, 'dead letters', DEAD_LETTER_LINES);
    case 'stderr':
      return new JsonLinesSink(process.stderr, false, 'dead letters', DEAD_LETTER_LINES);
    case 'kafka':
      return KafkaDeadLetterSink.open(kafkaSinkOptions(cfg, 'deadLetter', d));
  }
}

/** The stream of a source: batches, then `end` for a bounded one. */
interface OpenSource {
  messages: AsyncIterable<StreamMessage>;
  close(): Promise<void>;
}

async function* thenEnd(batches: AsyncIterable<RecordBatch>): AsyncGenerator<StreamMessage> {
  for await (const batch of batches) yield { kind: 'batch', batch };
  yield { kind: 'end' };
}

function openSource(cfg: Config, batchSize: number, clock: () => number, onAssignment: AssignmentHook, log: Logger, onOwnPartitionsRead: () => void): OpenSource & { kafka?: KafkaSource } {
  const s = cfg.source;
  switch (s.type) {
    case 'file': {
      // With more than one core, the records' JSON is scanned on a thread of its own.
      const lines = fileBatches(s.path, batchSize);
      return { messages: thenEnd(usableCores() > 1 ? scanAhead(lines, scanSpec(cfg.eventTime.field, cfg.aggregations)) : lines), close: async () => {} };
    }
    case 'stdin':
      // A stop leaves a read pending on stdin, which would keep the process alive.
      // Ticks let W move while stdin is quiet (eventTime.idleAdvance).
      return { messages: withTicks(thenEnd(streamBatches(process.stdin, batchSize)), EMBEDDED_TICK_INTERVAL_MS, clock), close: async () => void process.stdin.destroy() };
    case 'generator': {
      const messages = thenEnd(generatorBatches(s, batchSize));
      // An unbounded generator ticks like stdin; a bounded one ends, and its end fires everything.
      return { messages: s.count === undefined ? withTicks(messages, EMBEDDED_TICK_INTERVAL_MS, clock) : messages, close: async () => {} };
    }
    case 'kafka': {
      // Its consumer's thread scans the records for the operator's decoder.
      const scan = scanSpec(cfg.eventTime.field, cfg.aggregations);
      const source = new KafkaSource(s, { batchSize, clock, onAssignment, log, onOwnPartitionsRead, scan });
      return { messages: source.messages(), close: () => source.close(), kafka: source };
    }
  }
}

/** The queue limits of a sink's config. */
function limitsOf(s: { maxInFlightRecords: number; maxInFlightBytes: number; lingerMs?: number }): Partial<QueueLimits> {
  return { maxRecords: s.maxInFlightRecords, maxBytes: s.maxInFlightBytes, ...(s.lingerMs === undefined ? {} : { lingerMs: s.lingerMs }) };
}

/**
 * Runs a source to its end (a bounded one), until it fails, or until `opts.signal`
 * stops it. The stages: the source (Kafka: kafkajs in a worker, reading ahead), the
 * operator loop (loop.ts), delivery (a queue per sink, sinks/delivery.ts) and
 * checkpointing (checkpoint/scheduler.ts); this function opens and wires them, and
 * closes whatever opened, whatever fails.
 */
export async function runEmbedded(cfg: Config, opts: RunOptions = {}): Promise<RunSummary> {
  const clock = opts.clock ?? Date.now;
  const log = opts.logger ?? createLogger(cfg);
  log.info({ config: maskSecrets(cfg) }, 'run starting');
  const op = new PartitionedOperator(cfg, { clock, gone: false });
  op.onSharedKey = (aggregation, key, [a, b]) =>
    log.warn(
      { aggregation, key, partitions: [a, b] },
      `aggregation ${aggregation}: key ${key} comes from partitions ${a} and ${b}; each partition aggregates its own share and their results overwrite each other. Partition the topic by the group-by fields of every aggregation (see README, Scaling out)`,
    );
  const names = cfg.aggregations.map((a) => a.name);
  const bus = opts.bus ?? new Instrumentation();
  /** Every caught error: classified once, counted on the bus, logged. */
  const report = (e: unknown, msg: string): void => {
    // A reader that went away (`weir run | head`) ends the run quietly.
    if (isOutputClosed(e)) return;
    const kind = classify(e);
    bus.emit('error', { kind });
    // A user's mistake gets its message, not a stack trace.
    const user = e instanceof WeirError && e.domain === 'user';
    log.error(user ? { kind } : { err: e, kind }, `${msg}: ${messageOf(e)}`);
  };
  // The model behind GET /status and the page at GET /.
  const status = new StatusModel(bus, cfg, op, { clock });
  // Warns once about a wrong eventTime.field or groupBy path; counts dead letters by reason.
  const diagnostics = new RunDiagnostics(cfg, bus, { warn: (msg, fields) => log.warn(fields, msg) });
  const t0 = Date.now();
  const progress = opts.progress ?? process.stderr.isTTY === true;
  let ready = false;
  // Whatever opens is closed in the finally below, in reverse order, whatever fails:
  // an open metrics server, producer, pool or consumer would keep the process alive.
  let metricsServer: MetricsServer | undefined;
  let sinks: Array<{ i: number; sink: RecordSink<ResultBatch> }> = [];
  let dlq: RecordSink<DeadLetter> | undefined;
  let checkpointer: Checkpointer | undefined;
  let changelog: Changelog | undefined;
  let source: (OpenSource & { kafka?: KafkaSource }) | undefined;
  let messages: AsyncIterator<StreamMessage> | undefined;
  let loop: OperatorLoop | undefined;
  let delivery: Delivery | undefined;
  let scheduler: CheckpointScheduler | undefined;
  let failed = false;
  let summary: RunSummary | undefined;
  // Resolved once the loop exists; a Kafka source's assignment hook waits for it.
  const wired = deferred();
  // Settled below either way; a hook that never ran must not leave it unhandled.
  wired.promise.catch(() => undefined);
  try {
    if (cfg.metrics !== undefined) {
      const { registry } = createMetrics(bus, { aggregations: names });
      metricsServer = await startMetricsServer({ host: cfg.metrics.host, port: cfg.metrics.port, registry, ready: () => ready, status: () => status.snapshot() });
      opts.onMetricsListening?.(metricsServer.port);
    }
    try {
      sinks = await openResultSinks(cfg, log);
      dlq = await openDeadLetters(cfg, log);
    } catch (e) {
      report(e, 'cannot open the sinks');
      failed = true;
      throw e;
    }
    // Results a sink does not take after the retries (or refuses) are dead-lettered; a
    // dead-letter queue or result sink that cannot be written stops the run with a
    // FatalError, which ends the loop without a checkpoint past it (sinks/delivery.ts says why).
    delivery = new Delivery({
      results: sinks.map(({ i, sink }) => ({ name: `sinks[${i}]`, sink, limits: limitsOf(cfg.sinks[i]!) })),
      deadLetters: { name: 'deadLetter', sink: dlq, limits: limitsOf(cfg.deadLetter) },
      retry: { ...cfg.retry, ...(opts.sleep === undefined ? {} : { sleep: opts.sleep }) },
      log,
      bus,
      instanceId: cfg.processing.instanceId,
      clock,
    });
    // A Kafka source starts first: its thread's start and the group join go on while the
    // state backend and the changelog open (each takes a good part of a start). Its
    // assignment hook waits until the checkpointer and the loop exist (`wired`).
    const onAssignment: AssignmentHook = async (assigned, revoked) => {
      await wired.promise;
      return loop!.inLoop(async () => {
        const ck = checkpointer;
        const kafka = source?.kafka;
        if (ck === undefined || scheduler === undefined || kafka === undefined) return;
        // With a changelog, the partitions this instance held have new owners that restored
        // them from their last committed checkpoint: what it did since is void, and its
        // producers are fenced. It stops; a restart rejoins with the state of the changelog.
        if (changelog !== undefined && kafka.droppedWith !== undefined)
          throw new WeirError(
            `kafka: group ${kafka.groupId} dropped this instance (no heartbeat for source.sessionTimeoutMs: it was stopped or cut off) while it held partitions ${kafka.droppedWith.join(', ')}; they were taken over by another instance, and what this one did since its last checkpoint is discarded. It stops so that it can restart and rejoin`,
            { domain: 'external' },
          );
        // Revoked partitions are checkpointed with the rest (after the one in flight), then dropped: if they come back, they resume from there.
        if (revoked.length > 0) await scheduler.now(`partitions ${revoked.join(', ')} revoked`);
        else await scheduler.idle();
        for (const p of revoked) await ck.revoke(p);
        if (assigned.length > 0) await ck.assign(assigned, kafka);
      });
    };
    // A bounded read whose own partitions are done checkpoints (and commits) at once, so
    // that the other members of the group see them done and finish too.
    const open = (): OpenSource & { kafka?: KafkaSource } => openSource(cfg, op.batchSize, clock, onAssignment, log, () => scheduler?.request());
    // Checkpoints exist for Kafka: a file or generator is read again from its start.
    if (cfg.source.type === 'kafka') {
      source = open();
      source.kafka?.start();
      const src = cfg.source;
      // The state backend and the changelog's clients run on threads of their own: a
      // checkpoint's writes take no time from the loop. With one core and a bounded read
      // they run on this thread instead (backgroundHere). The backend's partitions are the
      // group's (Redis keys name the group, not the instance): state follows a partition
      // to whichever instance is assigned it.
      const nice = cfg.processing.backgroundNice;
      const here = backgroundHere(cfg, source.kafka);
      log.info({ backgroundThreads: here ? 'main' : 'own' }, `state backend${cfg.changelog.enabled ? ' and changelog' : ''} on ${here ? 'the main thread' : 'threads of their own'}`);
      // The changelog (its topic checked or created on the broker) starts while the state
      // backend opens: each takes a good part of the start. If the backend fails, its
      // error is the one named and the changelog's start is stopped.
      const sasl = saslOptions(src.sasl, process.env);
      const stop = new AbortController();
      const clo: ChangelogKafkaOptions = {
        brokers: src.brokers,
        clientId: src.clientId,
        ssl: sslOptions(src.ssl),
        ...(sasl === undefined ? {} : { sasl }),
        groupId: src.groupId,
        topic: src.topic,
        changelog: cfg.changelog.topic ?? `${src.groupId}-changelog`,
        create: cfg.changelog.create,
        transactionTimeoutMs: cfg.changelog.transactionTimeoutMs,
      };
      const starting = cfg.changelog.enabled
        ? here
          ? Changelog.startHere(clo, stop.signal)
          : Changelog.start(clo, nice, stop.signal)
        : Promise.resolve(undefined);
      // Its failure is taken below, whichever finishes first.
      starting.catch(() => undefined);
      let backend: StateBackend;
      try {
        // With a changelog, the backend's checkpoints are a cache of it: written without an fsync.
        backend = await openStateBackend({ ...cfg.state, sync: !cfg.changelog.enabled }, src.groupId, { thread: !here, nice });
      } catch (e) {
        stop.abort();
        void starting.then((c) => c?.shutdown(), () => undefined);
        throw e;
      }
      try {
        changelog = await starting;
      } catch (e) {
        await backend.close();
        throw e;
      }
      checkpointer = new Checkpointer(cfg, op, backend, log, bus, clock, changelog);
      await checkpointer.init();
    }
    const ck = checkpointer;
    source ??= open();
    const kafka = source.kafka;
    if (ck !== undefined && kafka !== undefined) scheduler = new CheckpointScheduler(ck, kafka, delivery);
    messages = source.messages[Symbol.asyncIterator]();
    loop = new OperatorLoop({
      op,
      names,
      messages,
      delivery,
      bus,
      clock,
      maxOutOfOrdernessMs: cfg.eventTime.maxOutOfOrdernessMs,
      checkpointer: ck,
      scheduler,
      signal: opts.signal,
      progress,
      setReady: (r) => (ready = r),
      observe: (batch) => diagnostics.observe(batch),
    });
    wired.resolve();
    await loop.run();
    // The last checkpoint covers everything handed to the sinks; without one (no
    // Kafka), the sinks are drained before they close.
    if (scheduler !== undefined) await scheduler.now(loop.counts.stopped ? 'stop' : 'end of input');
    else await delivery.flush();
    summary = { ...loop.counts, deadLetters: delivery.deadLettersWritten, elapsedMs: 0, deadLettersByReason: {} };
  } catch (e) {
    wired.reject(e);
    if (!failed) report(e, 'run failed');
    failed = true;
    throw e;
  } finally {
    ready = false;
    // Not awaited: after a stop a pull may still be pending, and the generator's return waits for it.
    messages?.return?.(undefined)?.catch(() => undefined);
    // Hooks still queued (a join during the stop) must not keep the source's close waiting.
    loop?.refusePending();
    // A checkpoint still in flight (the run failed meanwhile) completes or fails before its stores close.
    await scheduler?.idle().catch(() => undefined);
    // A run that failed before its loop (the state backend or the changelog) read
    // nothing: its consumer goes at once, not after a leave the brokers may not answer.
    const closeSource = loop === undefined && source?.kafka !== undefined ? source.kafka.abandon() : source?.close();
    // The state backend and the changelog's clients close beside them: neither waits on
    // the source or a sink, and no checkpoint is in flight any more.
    const [closed, stores] = await Promise.all([
      Promise.allSettled([closeSource, metricsServer?.close(), ...[...sinks.map((x) => x.sink), ...(dlq === undefined ? [] : [dlq])].map((s) => s.close())]),
      Promise.allSettled([checkpointer?.close(), changelog?.shutdown().catch(() => undefined)]),
    ]);
    if (stores[0].status === 'rejected') throw stores[0].reason;
    const closeFailure = closed.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (closeFailure !== undefined) {
      report(closeFailure.reason, 'cannot close the source, sinks or metrics server');
      // Not over the error that ended the run: that one says what went wrong first.
      if (!failed) throw closeFailure.reason;
    }
  }
  summary.elapsedMs = Date.now() - t0;
  status.setSourceState(summary.stopped ? 'stopped' : 'ended');
  // Dead letters by reason come from the bus; the rest are results the sinks refused.
  diagnostics.finish();
  summary.deadLettersByReason = { ...diagnostics.deadLettersByReason };
  const counted = Object.values(summary.deadLettersByReason).reduce((a, n) => a + n, 0);
  if (summary.deadLetters > counted) summary.deadLettersByReason['undeliverable'] = summary.deadLetters - counted;
  log.info({ summary }, summary.stopped ? 'run stopped' : 'run finished');
  return summary;
}

/** A promise with its resolve and reject. */
function deferred(): { promise: Promise<void>; resolve: () => void; reject: (e: unknown) => void } {
  let resolve!: () => void, reject!: (e: unknown) => void;
  const promise = new Promise<void>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}
