// Kafka writers for results and dead letters: one message per record, one send per write().
// Before kafkajs's producer loads: a linear grouping of messages per partition, and a
// Produce request encoder that writes one buffer per request (see there).
import '../kafkajs-grouping';
import '../kafkajs-produce';
import { Kafka, logLevel, type Message, type Producer, type RetryOptions, type SASLOptions } from 'kafkajs';
import { RecordsRejectedError, WeirError, messageOf } from '../errors/errors';
import { deadLetterJson, type ResultBatch } from '../pipeline/results';
import type { DeadLetter } from '../pipeline/types';
import type { RecordSink } from './jsonl';
import { JavaCompatiblePartitioner } from './partitioner';
import { connectFor, producerWithCluster, type KafkaCluster } from '../kafkajs-cluster';

export interface KafkaSinkOptions {
  brokers: string[];
  topic: string;
  /** @default "weir" */
  clientId?: string;
  /** true, or TLS options with PEM text (sources/kafka.ts sslOptions). @default false */
  ssl?: boolean | { ca?: string[]; cert?: string; key?: string };
  sasl?: SASLOptions;
  /** kafkajs's retry policy for connecting and sending. @default kafkajs's (5 retries from 300 ms) */
  retry?: RetryOptions;
  /** ms to wait for a TCP connection to a broker. @default kafkajs's (1000) */
  connectionTimeout?: number;
  /** kafkajs's own log output; errors reach the caller as WeirError either way. @default logLevel.NOTHING */
  logLevel?: logLevel;
}

function retriableFlag(e: unknown): boolean | undefined {
  if (typeof e !== 'object' || e === null || !('retriable' in e)) return undefined;
  const r = (e).retriable;
  return typeof r === 'boolean' ? r : undefined;
}

/** Broker error types about the records sent, not the broker: the same records fail again, other records go through. */
const RECORD_ERRORS: ReadonlySet<string> = new Set(['MESSAGE_TOO_LARGE', 'INVALID_RECORD', 'RECORD_LIST_TOO_LARGE']);

/**
 * Converts whatever kafkajs threw into a WeirError of domain 'external'. Retriability is
 * kafkajs's own judgment, except that once its internal retries run out it throws
 * KafkaJSNumberOfRetriesExceeded, marked non-retriable even when what failed was a
 * broker being unavailable (https://github.com/tulios/kafkajs/blob/master/src/retry/index.js):
 * that is still transient for Weir, whose retry() then backs off and tries again.
 * A broker refusing the records themselves (too large) is a RecordsRejectedError.
 */
function kafkaError(what: string, opts: KafkaSinkOptions, e: unknown): WeirError {
  const detail = messageOf(e);
  const message = `kafka ${what} (topic "${opts.topic}", brokers ${opts.brokers.join(',')}): ${detail}`;
  const cause = typeof e === 'object' && e !== null ? (e as { cause?: unknown }).cause : undefined;
  const type = (cause as { type?: unknown } | undefined)?.type ?? (e as { type?: unknown } | undefined)?.type;
  if (typeof type === 'string' && RECORD_ERRORS.has(type)) return new RecordsRejectedError(message, e);
  let retriable = retriableFlag(e) ?? false;
  if (!retriable && e instanceof Error && e.name === 'KafkaJSNumberOfRetriesExceeded') retriable = retriableFlag(cause) === true;
  return new WeirError(message, { domain: 'external', retriable, cause: e });
}

/**
 * One connected producer writing to one topic. Idempotent with at most one request in
 * flight, so retries neither duplicate nor reorder messages within a partition:
 * the last message for a key is the last record written for it.
 */
class TopicProducer {
  private closed = false;

  private constructor(
    private readonly producer: Producer,
    private readonly opts: KafkaSinkOptions,
    private readonly what: string,
  ) {}

  static async open(opts: KafkaSinkOptions, what: string): Promise<TopicProducer> {
    if (opts.brokers.length === 0) throw new WeirError(`kafka ${what} (topic "${opts.topic}"): no brokers given`, { domain: 'user' });
    let producer: Producer;
    let cluster: KafkaCluster | undefined;
    try {
      const kafka = new Kafka({
        clientId: opts.clientId ?? 'weir',
        brokers: opts.brokers,
        ssl: opts.ssl ?? false,
        ...(opts.sasl !== undefined ? { sasl: opts.sasl } : {}),
        ...(opts.retry !== undefined ? { retry: opts.retry } : {}),
        ...(opts.connectionTimeout !== undefined ? { connectionTimeout: opts.connectionTimeout } : {}),
        logLevel: opts.logLevel ?? logLevel.NOTHING,
      });
      // kafkajs checks the options here, synchronously (an idempotent producer needs retries > 0).
      ({ producer, cluster } = producerWithCluster(kafka, {
        idempotent: true,
        maxInFlightRequests: 1,
        // Java-client compatible murmur2 on the key: the same window always lands in the same partition.
        createPartitioner: JavaCompatiblePartitioner,
      }));
    } catch (e) {
      throw kafkaError(`${what}: invalid producer options`, opts, e);
    }
    try {
      // Its topic is the producer's before its connect asks for metadata (kafkajs-cluster.ts).
      await connectFor(producer, cluster, opts.topic);
    } catch (e) {
      await producer.disconnect().catch(() => undefined);
      throw kafkaError(`${what}: cannot connect`, opts, e);
    }
    return new TopicProducer(producer, opts, what);
  }

  async send(messages: Message[]): Promise<void> {
    if (messages.length === 0) return;
    if (this.closed) throw new WeirError(`kafka ${this.what} (topic "${this.opts.topic}"): write after close`, { domain: 'internal' });
    try {
      await this.producer.send({ topic: this.opts.topic, acks: -1, messages });
    } catch (e) {
      throw kafkaError(`${this.what}: cannot send ${messages.length} message(s)`, this.opts, e);
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    try {
      await this.producer.disconnect();
    } catch (e) {
      throw kafkaError(`${this.what}: cannot disconnect`, this.opts, e);
    }
  }
}

/**
 * Writes each result as one message: key `name:key:start_end` (the state key), value the
 * result's JSON exactly as the JSON-lines sink writes it (without the newline). On a
 * compacted topic the last message per key is the window's final result.
 */
export class KafkaResultSink implements RecordSink<ResultBatch> {
  private constructor(private readonly out: TopicProducer) {}

  static async open(opts: KafkaSinkOptions): Promise<KafkaResultSink> {
    return new KafkaResultSink(await TopicProducer.open(opts, 'result sink'));
  }

  write(batches: readonly ResultBatch[]): Promise<void> {
    const messages: Message[] = [];
    for (const b of batches) for (let i = 0; i < b.n; i++) messages.push({ key: b.stateKeyOf(i), value: b.lineOf(i) });
    return this.out.send(messages);
  }

  close(): Promise<void> {
    return this.out.close();
  }
}

/**
 * Writes each dead letter as one message: value the record's JSON, key its aggregation's
 * name (null for `malformed` records, which belong to no aggregation).
 */
export class KafkaDeadLetterSink implements RecordSink<DeadLetter> {
  private constructor(private readonly out: TopicProducer) {}

  static async open(opts: KafkaSinkOptions): Promise<KafkaDeadLetterSink> {
    return new KafkaDeadLetterSink(await TopicProducer.open(opts, 'dead-letter sink'));
  }

  write(records: readonly DeadLetter[]): Promise<void> {
    return this.out.send(records.map((d) => ({ key: d.aggregation ?? null, value: deadLetterJson(d) })));
  }

  close(): Promise<void> {
    return this.out.close();
  }
}
