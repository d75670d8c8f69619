// The composition root: wires a source, the operator, sinks, the dead-letter queue
// and metrics together. Everything else depends inward on pipeline/ and core/.
import type { Config } from './config';
import { ConfigError, InputError } from './errors/errors';
import { KafkaDeadLetterSink, KafkaResultSink, type KafkaSinkOptions } from './sinks/kafka';
import { PostgresResultSink } from './sinks/postgres';
import { KafkaSource, saslOptions } from './sources/kafka';
import { fileBatches, streamBatches } from './sources/lines';
import { generatorBatches } from './sources/generator';
import { JsonLinesSink, type RecordSink } from './sinks/jsonl';
import { WindowOperator, type Output } from './pipeline/operator';
import type { DeadLetter, RecordBatch, StreamMessage, WindowResult } from './pipeline/types';
import { isoOf } from './time/timestamp';
import { performance } from 'node:perf_hooks';
import { Instrumentation, createMetrics, instrumentOperator, instrumentOutput, startMetricsServer, type MetricsServer } from './metrics';

export interface RunSummary {
  records: number;
  results: number;
  deadLetters: number;
  lateEvents: number;
  elapsedMs: number;
}

export interface RunOptions {
  /** Progress line on stderr (events/s, watermark, open windows). @default stderr is a TTY */
  progress?: boolean;
  clock?: () => number;
  /** Instrumentation bus to report to (metrics subscribe to it). @default a new one */
  bus?: Instrumentation;
  /** Called with the metrics server's port once it listens (tests pass port 0). */
  onMetricsListening?: (port: number) => void;
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
          return JsonLinesSink.toFile<WindowResult>(s.path, `sinks[${i}] results`);
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
    await Promise.allSettled(opened.map((r) => (r.status === 'fulfilled' ? r.value.close() : undefined)));
    throw failed.reason;
  }
  return opened.map((r) => (r as PromiseFulfilledResult<RecordSink<WindowResult>>).value);
}

async function openDeadLetters(cfg: Config): Promise<RecordSink<DeadLetter>> {
  const d = cfg.deadLetter;
  switch (d.type) {
    case 'file':
      return JsonLinesSink.toFile<DeadLetter>(d.path, 'deadLetter');
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

function openSource(cfg: Config, op: WindowOperator, clock: () => number): OpenSource {
  const s = cfg.source;
  const batchSize = op.batchSize;
  switch (s.type) {
    case 'file':
      return { messages: thenEnd(fileBatches(s.path, batchSize)), close: async () => {} };
    case 'stdin':
      return { messages: thenEnd(streamBatches(process.stdin, batchSize)), close: async () => {} };
    case 'generator':
      return { messages: thenEnd(generatorBatches(s, batchSize)), close: async () => {} };
    case 'kafka': {
      const source = new KafkaSource(s, { batchSize, clock });
      // Assigned partitions hold the watermark back until they send or idle; revoked ones stop.
      source.onAssignment((assigned, revoked) => {
        for (const p of revoked) op.watermarks.unregister(p);
        for (const p of assigned) op.watermarks.register(p, clock());
      });
      return { messages: source.messages(), close: () => source.close() };
    }
  }
}

/** Runs a source to its end (a bounded one) or until it fails. */
export async function runEmbedded(cfg: Config, opts: RunOptions = {}): Promise<RunSummary> {
  const clock = opts.clock ?? Date.now;
  if (cfg.state.backend !== 'memory')
    throw new ConfigError(
      `state.backend: "${cfg.state.backend}" (durable state and checkpoints) is not in this build yet; set state: { backend: memory } (offsets are then never committed, so a restart reads the topic again)`,
    );
  const op = new WindowOperator(cfg, { clock });
  const names = cfg.aggregations.map((a) => a.name);
  const bus = opts.bus ?? new Instrumentation();
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
  const summary: RunSummary = { records: 0, results: 0, deadLetters: 0, lateEvents: 0, elapsedMs: 0 };
  const t0 = Date.now();
  const progress = opts.progress ?? process.stderr.isTTY === true;
  let lastReport = t0, lastRecords = 0;

  const emit = async (out: Output): Promise<void> => {
    summary.records += out.records;
    summary.results += out.results.length;
    summary.deadLetters += out.deadLetters.length;
    for (const l of out.late) summary.lateEvents += l;
    if (out.results.length > 0) for (const s of sinks) await s.write(out.results);
    if (out.deadLetters.length > 0) await dlq.write(out.deadLetters);
  };

  const source = openSource(cfg, op, clock);
  try {
    ready = true;
    for await (const m of source.messages) {
      if (m.kind === 'end') break;
      if (m.kind === 'tick') {
        await emit(step(-1, () => op.tick(m.nowMs)));
        continue;
      }
      const batch = m.batch;
      await emit(step(batch.partition, () => op.process(batch)));
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
    await emit(step(0, () => op.finish()));
  } catch (e) {
    bus.emit('error', { kind: 'critical' });
    throw e;
  } finally {
    ready = false;
    await source.close();
    await metricsServer?.close();
    if (progress) process.stderr.write('\n');
    await Promise.all([...sinks, dlq].map((s) => s.close()));
  }
  summary.elapsedMs = Date.now() - t0;
  return summary;
}
