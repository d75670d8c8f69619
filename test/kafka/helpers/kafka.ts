// Shared pieces of the tests against the local broker (scripts/kafka-up.sh).
import { randomBytes } from 'node:crypto';
import assert from 'node:assert/strict';
import { Kafka, logLevel, type Message } from 'kafkajs';
import type { KafkaSource, KafkaSourceConfig, KafkaSourceOptions } from '../../../src/sources/kafka';
import { offsetOf, type RecordBatch, type StreamMessage } from '../../../src/pipeline/types';

process.env['KAFKAJS_NO_PARTITIONER_WARNING'] = '1';

export const BROKERS = [`127.0.0.1:${process.env['KAFKA_PORT'] ?? '9092'}`];

/** Consumer settings that keep group joins and idle fetches short (the broker's minimum session is 6 s). */
export const FAST: NonNullable<KafkaSourceOptions['consumer']> = {
  sessionTimeout: 6000,
  rebalanceTimeout: 6000,
  heartbeatInterval: 300,
  maxWaitTimeInMs: 100,
};

/** A topic or group name no other test (or earlier run) uses. */
export function unique(prefix: string): string {
  return `${prefix}-${Date.now().toString(36)}-${randomBytes(4).toString('hex')}`;
}

const client = new Kafka({ clientId: 'weir-test', brokers: BROKERS, logLevel: logLevel.NOTHING });

export async function createTopic(topic: string, numPartitions: number): Promise<void> {
  const admin = client.admin();
  await admin.connect();
  try {
    await admin.createTopics({ topics: [{ topic, numPartitions, replicationFactor: 1 }], waitForLeaders: true });
  } finally {
    await admin.disconnect();
  }
}

/** Produces `messages` in sends of `perSend` (each send is one record batch per partition). */
export async function produce(topic: string, messages: Message[], perSend = 500): Promise<void> {
  const producer = client.producer();
  await producer.connect();
  try {
    for (let i = 0; i < messages.length; i += perSend) await producer.send({ topic, messages: messages.slice(i, i + perSend), acks: -1 });
  } finally {
    await producer.disconnect();
  }
}

export function sourceConfig(topic: string, groupId: string, over: Partial<KafkaSourceConfig> = {}): KafkaSourceConfig {
  return {
    type: 'kafka',
    brokers: BROKERS,
    topic,
    groupId,
    fromBeginning: true,
    bounded: true,
    idleTimeoutMs: 10_000,
    sessionTimeoutMs: 6000,
    maxBytesPerPartition: 1_048_576,
    clientId: 'weir-test',
    consumerThread: 'auto',
    ssl: false,
    ...over,
  };
}

export interface Rec {
  partition: number;
  offset: string;
  value: Buffer;
}

/** Checks the RecordBatch contract and returns its records. */
export function recordsOf(b: RecordBatch, batchSize: number): Rec[] {
  assert.ok(b.n >= 1 && b.n <= batchSize, `n = ${b.n} not in [1, ${batchSize}]`);
  assert.ok(b.starts.length >= b.n && b.ends.length >= b.n);
  if (b.offsets !== undefined) {
    assert.ok(b.offsets.length >= b.n);
    assert.equal(b.offsets[0], b.firstOffset, 'firstOffset is the offset of record 0');
    assert.ok(b.offsets[b.n - 1]! - b.firstOffset > b.n - 1, 'offsets are given only when they have gaps');
  }
  const out: Rec[] = [];
  let prevEnd = 0;
  for (let i = 0; i < b.n; i++) {
    const s = b.starts[i]!, e = b.ends[i]!;
    assert.ok(prevEnd <= s && s <= e && e <= b.buf.length, `record ${i}: [${s}, ${e}) after ${prevEnd}, buf ${b.buf.length}`);
    prevEnd = e;
    const offset = offsetOf(b, i);
    assert.ok(Number.isSafeInteger(offset) && offset >= 0, `offset ${offset}`);
    if (i > 0) assert.ok(offset > offsetOf(b, i - 1), 'offsets increase within a batch');
    out.push({ partition: b.partition, offset: String(offset), value: Buffer.from(b.buf.subarray(s, e)) });
  }
  return out;
}

/** Pulls one iterator of a KafkaSource step by step, keeping what it yielded. */
export class Reader {
  readonly records: Rec[] = [];
  readonly ticks: number[] = [];
  /** What came, in order: 'batch' | 'tick' | 'end', with performance.now() of arrival. */
  readonly log: Array<{ kind: StreamMessage['kind']; at: number }> = [];
  ended = false;
  private readonly it: AsyncIterator<StreamMessage>;

  constructor(
    readonly source: KafkaSource,
    private readonly batchSize: number,
    private readonly onBatch?: (b: RecordBatch) => void | Promise<void>,
  ) {
    this.it = source.messages()[Symbol.asyncIterator]();
  }

  /** Pulls until `done()` holds (checked after every message) or the iterator ends; fails after timeoutMs. */
  async until(done: (r: Reader) => boolean, timeoutMs: number, what: string): Promise<void> {
    const deadline = performance.now() + timeoutMs;
    while (!done(this)) {
      if (this.ended) assert.fail(`iterator ended before: ${what}`);
      if (performance.now() > deadline) assert.fail(`timed out after ${timeoutMs} ms waiting for: ${what} (records ${this.records.length}, ticks ${this.ticks.length})`);
      const r = await this.it.next();
      if (r.done === true) {
        this.ended = true;
        continue;
      }
      const m = r.value;
      this.log.push({ kind: m.kind, at: performance.now() });
      if (m.kind === 'batch') {
        this.records.push(...recordsOf(m.batch, this.batchSize));
        await this.onBatch?.(m.batch);
      } else if (m.kind === 'tick') this.ticks.push(m.nowMs);
      else this.ended = true;
    }
  }

  /** Pulls to the end of a bounded source. */
  toEnd(timeoutMs: number): Promise<void> {
    return this.until((r) => r.ended, timeoutMs, 'end');
  }

  async next(): Promise<IteratorResult<StreamMessage>> {
    return this.it.next();
  }
}

export function byPartition(recs: readonly Rec[]): Map<number, Rec[]> {
  const m = new Map<number, Rec[]>();
  for (const r of recs) {
    let l = m.get(r.partition);
    if (l === undefined) m.set(r.partition, (l = []));
    l.push(r);
  }
  return m;
}

export const sleep = (ms: number) => new Promise<void>((res) => setTimeout(res, ms));
