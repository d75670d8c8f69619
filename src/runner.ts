// The composition root: wires a source, the operator, sinks, the dead-letter queue
// and metrics together. Everything else depends inward on pipeline/ and core/.
import { maskSecrets, type Config } from './config';
import { ConfigError, WeirError } from './errors/errors';
import { classify } from './errors/classify';
import { createLogger, type Logger } from './log';
import { KafkaDeadLetterSink, KafkaResultSink, type KafkaSinkOptions } from './sinks/kafka';
import { PostgresResultSink } from './sinks/postgres';
import { KafkaSource, saslOptions, type AssignmentHook } from './sources/kafka';
import { fileBatches, streamBatches } from './sources/lines';
import { generatorBatches } from './sources/generator';
import { JsonLinesSink, type RecordSink } from './sinks/jsonl';
import { Delivery, NO_POSITION, type InputPosition } from './sinks/delivery';
import type { Output } from './pipeline/operator';
import { PartitionedOperator } from './pipeline/partitioned';
import { Checkpointer } from './checkpoint/coordinator';
import { openStateBackend } from './state';
import { offsetOf, type DeadLetter, type RecordBatch, type StreamMessage, type WindowResult } from './pipeline/types';
import { isoOf } from './time/timestamp';
import { performance } from 'node:perf_hooks';
import { Instrumentation, createMetrics, instrumentOperator, instrumentOutput, startMetricsServer, type MetricsServer } from './metrics';

export interface RunSummary {
  records: number;
  results: number;
  deadLetters: number;
  lateEvents: number;
  elapsedMs: number;
  /** True when the run was stopped (RunOptions.signal) before its source ended: open windows did not fire. */
  stopped: boolean;
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

/** A Kafka sink's own brokers, or else the Kafka source's cluster with its client id, TLS and SASL. */
function kafkaSinkOptions(cfg: Config, where: string, s: { topic: string; brokers?: string[] | undefined }): KafkaSinkOptions {
  if (s.brokers !== undefined && s.brokers.length > 0) return { brokers: s.brokers, topic: s.topic };
  const src = cfg.source;
  if (src.type !== 'kafka') throw new ConfigError(`${where}.brokers: required when the source is not Kafka`);
  const sasl = saslOptions(src.sasl, process.env);
  return { brokers: src.brokers, topic: s.topic, clientId: src.clientId, ssl: src.ssl, ...(sasl === undefined ? {} : { sasl }) };
}

async function openResultSinks(cfg: Config): Promise<RecordSink<WindowResult>[]> {
  const opened = await Promise.allSettled(
    cfg.sinks.map(async (s, i): Promise<RecordSink<WindowResult>> => {
      switch (s.type) {
        case 'stdout':
          return new JsonLinesSink<WindowResult>(process.stdout, false, 'results');
        case 'file':
          return JsonLinesSink.toFile<WindowResult>(s.path, `sinks[${i}] results`, s.append ?? cfg.source.type === 'kafka');
        case 'kafka':
          return KafkaResultSink.open(kafkaSinkOptions(cfg, `sinks[${i}]`, s));
        case 'postgres':
          return PostgresResultSink.open({ url: s.url, table: s.table });
      }
    }),
  );
  const failed = opened.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed !== undefined) {
    // A connected producer or pool keeps the process alive: close whatever did open.
    await Promise.allSettled(opened.map((r) => (r.status === 'fulfilled' ? r.value.close() : Promise.resolve())));
    throw failed.reason;
  }
  return opened.map((r) => (r as PromiseFulfilledResult<RecordSink<WindowResult>>).value);
}

async function openDeadLetters(cfg: Config): Promise<RecordSink<DeadLetter>> {
  const d = cfg.deadLetter;
  switch (d.type) {
    case 'file':
      return JsonLinesSink.toFile<DeadLetter>(d.path, 'deadLetter', d.append ?? cfg.source.type === 'kafka');
    case 'stdout':
      return new JsonLinesSink<DeadLetter>(process.stdout, false, 'dead letters');
    case 'stderr':
      return new JsonLinesSink<DeadLetter>(process.stderr, false, 'dead letters');
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
    case 'file':
      return { messages: thenEnd(fileBatches(s.path, batchSize)), close: async () => {} };
    case 'stdin':
      // A stop leaves a read pending on stdin, which would keep the process alive.
      return { messages: thenEnd(streamBatches(process.stdin, batchSize)), close: async () => void process.stdin.destroy() };
    case 'generator':
      return { messages: thenEnd(generatorBatches(s, batchSize)), close: async () => {} };
    case 'kafka': {
      const source = new KafkaSource(s, { batchSize, clock, onAssignment, log, onOwnPartitionsRead });
      return { messages: source.messages(), close: () => source.close(), kafka: source };
    }
  }
}

/** Runs a source to its end (a bounded one), until it fails, or until `opts.signal` stops it. */
export async function runEmbedded(cfg: Config, opts: RunOptions = {}): Promise<RunSummary> {
  const clock = opts.clock ?? Date.now;
  const log = opts.logger ?? createLogger(cfg);
  log.info({ config: maskSecrets(cfg) }, 'run starting');
  const op = new PartitionedOperator(cfg, { clock });
  op.onSharedKey = (aggregation, key, [a, b]) =>
    log.warn(
      { aggregation, key, partitions: [a, b] },
      `aggregation ${aggregation}: key ${key} comes from partitions ${a} and ${b}; each partition aggregates its own share and their results overwrite each other. Partition the topic by the group-by fields of every aggregation (see README, Scaling out)`,
    );
  const names = cfg.aggregations.map((a) => a.name);
  const bus = opts.bus ?? new Instrumentation();
  /** Every caught error: classified once, counted on the bus, logged. */
  const report = (e: unknown, msg: string): void => {
    const kind = classify(e);
    bus.emit('error', { kind });
    // A user's mistake gets its message, not a stack trace.
    const user = e instanceof WeirError && e.domain === 'user';
    log.error(user ? { kind } : { err: e, kind }, `${msg}: ${e instanceof Error ? e.message : String(e)}`);
  };
  let ready = false;
  let metricsServer: MetricsServer | undefined;
  if (cfg.metrics !== undefined) {
    const { registry } = createMetrics(bus, { aggregations: names });
    metricsServer = await startMetricsServer({ host: cfg.metrics.host, port: cfg.metrics.port, registry, ready: () => ready });
    opts.onMetricsListening?.(metricsServer.port);
  }
  let sinks: RecordSink<WindowResult>[] = [];
  let dlq: RecordSink<DeadLetter>;
  try {
    sinks = await openResultSinks(cfg);
    dlq = await openDeadLetters(cfg);
  } catch (e) {
    report(e, 'cannot open the sinks');
    // Nothing opened may keep the process alive.
    await Promise.allSettled(sinks.map((s) => s.close()));
    await metricsServer?.close();
    throw e;
  }
  /** One operator step, timed and reported. */
  const step = (partition: number, run: () => Output): Output => {
    const t0 = performance.now();
    const out = run();
    instrumentOutput(bus, out, names, partition, (performance.now() - t0) / 1000);
    instrumentOperator(bus, op, names, clock());
    return out;
  };
  const summary: RunSummary = { records: 0, results: 0, deadLetters: 0, lateEvents: 0, elapsedMs: 0, stopped: false };
  const t0 = Date.now();
  const progress = opts.progress ?? process.stderr.isTTY === true;
  let lastReport = t0, lastRecords = 0;

  // Results a sink does not take after the retries (or refuses) are dead-lettered; a
  // dead-letter queue or result sink that cannot be written stops the run with a
  // FatalError, which the loop below turns into a stop without a checkpoint past it
  // (sinks/delivery.ts says why).
  const delivery = new Delivery({
    results: sinks.map((sink, i) => ({ name: `sinks[${i}]`, sink })),
    deadLetters: { name: 'deadLetter', sink: dlq },
    retry: { ...cfg.retry, ...(opts.sleep === undefined ? {} : { sleep: opts.sleep }) },
    log,
    bus,
    instanceId: cfg.processing.instanceId,
    clock,
  });
  const emit = async (out: Output, at: InputPosition): Promise<void> => {
    summary.records += out.records;
    summary.results += out.results.length;
    for (const l of out.late) summary.lateEvents += l;
    summary.deadLetters += await delivery.deliver(out.results, out.deadLetters, at);
  };

  // A stop wins the race against a pull that may wait long (an idle topic, stdin): it
  // wakes the loop (wakeLoop, below), which sees the signal aborted. Not a promise that
  // stays pending all run and is raced on every pull: each Promise.race leaves a
  // reaction on it that holds the race's result, the batch, until the run ends (a
  // generator's or stdin's buffers, ~100 MB/s at full speed).
  let wakeLoop: (() => void) | undefined;
  const onAbort = (): void => wakeLoop?.();
  const aborted = (): boolean => opts.signal?.aborted === true;
  opts.signal?.addEventListener('abort', onAbort, { once: true });

  // Checkpoints exist for Kafka: a file or generator is read again from its start.
  let checkpointer: Checkpointer | undefined;
  if (cfg.source.type === 'kafka') {
    checkpointer = new Checkpointer(cfg, op, await openStateBackend(cfg.state, cfg.processing.instanceId), log, bus, clock);
    await checkpointer.init();
  }
  /**
   * Work the source's assignment hook hands to the loop: checkpoints, restores and
   * drops happen only between two batches, never while one is being processed or
   * its results are being written.
   */
  const control: Array<{ run: () => Promise<void>; resolve: () => void; reject: (e: unknown) => void }> = [];
  const inLoop = (run: () => Promise<void>): Promise<void> =>
    new Promise((resolve, reject) => {
      control.push({ run, resolve, reject });
      wakeLoop?.();
    });
  const onAssignment: AssignmentHook = (assigned, revoked) =>
    inLoop(async () => {
      if (checkpointer === undefined || kafka === undefined) return;
      // Revoked partitions are checkpointed with the rest, then dropped: if they come back, they resume from there.
      if (revoked.length > 0) await checkpointer.checkpoint(kafka, `partitions ${revoked.join(', ')} revoked`);
      for (const p of revoked) await checkpointer.revoke(p);
      if (assigned.length > 0) await checkpointer.assign(assigned, kafka);
    });
  // A bounded run that has read its own partitions waits for the other members' commits,
  // and they for its: it checkpoints (and so commits) once the batch in hand is
  // processed (the pull that read it is what calls back), not at the next interval.
  let checkpointNow = false;
  const source = openSource(cfg, op.batchSize, clock, onAssignment, log, () => (checkpointNow = true));
  const kafka = source.kafka;
  const messages = source.messages[Symbol.asyncIterator]();
  const WAKE = Symbol('wake');
  let failed = false;
  let pending: Promise<IteratorResult<StreamMessage>> | undefined;
  const checkpoint = async (reason: string): Promise<void> => {
    if (checkpointer === undefined || kafka === undefined) return;
    // Every result before the barrier is with the sinks before offsets move past it.
    await delivery.flush();
    await checkpointer.checkpoint(kafka, reason);
  };
  try {
    ready = true;
    for (;;) {
      while (control.length > 0) {
        const c = control.shift()!;
        // Not ready while partitions are being restored (or checkpointed on a rebalance).
        ready = false;
        try {
          await c.run();
          c.resolve();
        } catch (e) {
          c.reject(e);
          throw e;
        }
        ready = true;
      }
      if (checkpointNow) {
        checkpointNow = false;
        await checkpoint('own partitions read to their end');
      } else if (checkpointer?.due() === true) await checkpoint('interval');
      if (opts.signal?.aborted === true) {
        summary.stopped = true;
        break;
      }
      if (pending === undefined) {
        pending = messages.next();
        // A pull left behind by a stop may still fail; it is no longer anyone's concern.
        pending.catch(() => undefined);
      }
      const wake = new Promise<typeof WAKE>((resolve) => (wakeLoop = () => resolve(WAKE)));
      if (control.length > 0) wakeLoop?.();
      const next = await Promise.race([pending, wake]);
      wakeLoop = undefined;
      if (next === WAKE) {
        if (aborted()) {
          summary.stopped = true;
          break;
        }
        continue;
      }
      pending = undefined;
      if (next.done === true) break;
      const m = next.value;
      if (m.kind === 'end') break;
      if (m.kind === 'tick') {
        await emit(step(-1, () => op.tick(m.nowMs)), NO_POSITION);
        continue;
      }
      const batch = checkpointer?.unseen(m.batch) ?? m.batch;
      if (batch.n === 0) continue;
      await emit(step(batch.partition, () => op.process(batch)), {
        partition: batch.partition,
        offset: String(offsetOf(batch, batch.n - 1)),
      });
      checkpointer?.processed(batch);
      if (batch.highWatermark !== undefined) {
        const lag = Number(batch.highWatermark) - offsetOf(batch, batch.n - 1) - 1;
        bus.emit('consumer.lag', { partition: batch.partition, lag: Math.max(0, lag) });
      }
      if (progress && Date.now() - lastReport >= 1000) {
        const now = Date.now();
        const rate = ((summary.records - lastRecords) * 1000) / (now - lastReport);
        let open = 0;
        cfg.aggregations.forEach((_, a) => (open += op.openWindows(a)));
        process.stderr.write(`\r${summary.records} events, ${Math.round(rate)} events/s, watermark ${isoOf(op.watermarks.current)}, ${open} open windows `);
        lastReport = now;
        lastRecords = summary.records;
      }
    }
    // Only the end of the input fires the open windows; after a stop, the next run
    // goes on with them from the checkpoint taken now.
    if (!summary.stopped) await emit(step(0, () => op.finish()), NO_POSITION);
    await checkpoint(summary.stopped ? 'stop' : 'end of input');
  } catch (e) {
    failed = true;
    report(e, 'run failed');
    throw e;
  } finally {
    ready = false;
    opts.signal?.removeEventListener('abort', onAbort);
    // Not awaited: after a stop a pull may still be pending, and the generator's return waits for it.
    messages.return?.(undefined)?.catch(() => undefined);
    if (progress) process.stderr.write('\n');
    // Hooks still queued (a join during the stop) must not keep the source's close waiting.
    for (const c of control.splice(0)) c.reject(new WeirError('the run stopped', { domain: 'internal' }));
    const closed = await Promise.allSettled([source.close(), metricsServer?.close(), ...[...sinks, dlq].map((s) => s.close())]);
    await checkpointer?.close();
    const closeFailure = closed.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (closeFailure !== undefined) {
      report(closeFailure.reason, 'cannot close the source, sinks or metrics server');
      // Not over the error that ended the run: that one says what went wrong first.
      if (!failed) throw closeFailure.reason;
    }
  }
  summary.elapsedMs = Date.now() - t0;
  log.info({ summary }, summary.stopped ? 'run stopped' : 'run finished');
  return summary;
}
