// The changelog's Kafka side: the topic, one transactional producer per input
// partition, and the restore reader. It runs on the changelog thread (thread.ts); the
// main thread only hands it change batches as bytes.
//
// Fencing: kafkajs's sendOffsets carries no group generation, so a transaction of a
// member that lost its partition would be accepted. The transactional id is therefore
// derived from the group, the input topic and the partition: whichever instance takes
// a partition over opens a producer with the same id, which bumps the producer epoch,
// aborts the previous owner's open transaction and fences it (a zombie's next commit
// fails with INVALID_PRODUCER_EPOCH). Only then does it read the changelog.
//
// Restore reads one changelog partition with Fetch requests at READ_COMMITTED (a
// kafkajs Cluster, as its consumer uses, but without a consumer group: a group join
// per restore would cost the broker's initial rebalance delay, 3 s by default), from a
// given offset to the last stable offset, and keeps the last record of every key.
// Before kafkajs's producer loads: a linear grouping of messages per partition, and a
// Produce request encoder that writes one buffer per request (see there); and a filter
// of aborted transactions' records that handles interleaved transactions (see there).
import '../kafkajs-grouping';
import { pushRun, runsSupported, type RunMessage } from '../kafkajs-produce';
import '../kafkajs-aborted';
import { JavaCompatiblePartitioner } from '../sinks/partitioner';
import { connectFor, newCluster, producerWithCluster, type KafkaCluster } from '../kafkajs-cluster';
import { Kafka, logLevel, type Producer, type SASLOptions, type Transaction } from 'kafkajs';
import Module from 'node:module';
import type { ConnectionOptions } from 'node:tls';
import { ChangeBatchWriter, readChangeBatch, type ChangeBatch } from '../state/batch';
import { messageOf, WeirError } from '../errors/errors';
import { FencedError } from './errors';
import { PARTITION_KEY } from './format';

export { FencedError };

export interface ChangelogKafkaOptions {
  brokers: string[];
  clientId: string;
  ssl: boolean | ConnectionOptions;
  sasl?: SASLOptions;
  groupId: string;
  /** The input topic. */
  topic: string;
  /** The changelog topic. */
  changelog: string;
  /** Create the changelog topic when it is missing. */
  create: boolean;
  /** kafkajs's transaction timeout (ms): an instance that dies mid-transaction holds readers back at most this long. */
  transactionTimeoutMs: number;
}

/** The largest send within a transaction (bytes of keys and values): below a broker's default 1 MB per batch. */
const SEND_BYTES = 768 * 1024;
/** Bytes fetched per restore request. */
const FETCH_BYTES = 16 * 1024 * 1024;
const READ_COMMITTED = 1;
/** Retries of the transactional producers: 10 ms doubling to at most 1 s, about 30 s in all. */
const TRANSACTION_RETRY = { initialRetryTime: 10, maxRetryTime: 1000, retries: 35 };

function isFenced(e: unknown): boolean {
  for (let x = e as { type?: unknown; cause?: unknown; originalError?: unknown } | undefined, i = 0; x !== undefined && x !== null && i < 5; i++) {
    if (x.type === 'INVALID_PRODUCER_EPOCH' || x.type === 'PRODUCER_FENCED' || (x as { code?: unknown }).code === 90) return true;
    x = (x.cause ?? x.originalError) as typeof x;
  }
  return false;
}

export interface RestoreResult {
  /** The last record of every key read (puts and deletes), as one change batch. */
  batch: ChangeBatch;
  /** The last partition record read, as its JSON text. */
  partitionRecord: string | undefined;
  /** Records read (all keys, partition records included). */
  records: number;
  /** The offset read up to (the last stable offset when the read began). */
  end: string;
}

/** kafkajs's internal modules by path (the same ones kafkajs itself loads). */
const load = Module.createRequire(require.resolve('kafkajs'));
/** kafkajs's fetched batch: it drops aborted transactions' records and control records. */
const Batch = load('./src/consumer/batch') as new (topic: string, fetchedOffset: string, partitionData: unknown) => {
  messages: Array<{ key: Buffer | null; value: Buffer | null; offset: string }>;
  messagesWithinOffset: Array<{ offset: string }>;
  rawMessages: unknown[];
};

/** kafkajs's coordinator type of a transactional id. */
const TRANSACTION_COORDINATOR = 1;

/**
 * Lookups of a producer's transaction coordinator, answered once per transaction.
 * kafkajs asks the broker for it (a FindCoordinator request) before each of its
 * transactional requests (AddPartitionsToTxn, AddOffsetsToTxn, EndTxn): three of a
 * checkpoint transaction's eleven round trips. Within one transaction the answer
 * is taken again; not across transactions, and not for the abort of one that failed
 * (a coordinator that moved fails a request, the transaction is aborted, and the
 * abort and the next transaction ask again). Group coordinator lookups go to the
 * broker as before (kafkajs looks the group's up again when a commit finds it moved).
 */
class TransactionCoordinator {
  private memo: Promise<unknown> | undefined;
  private scoped = false;

  constructor(readonly cluster: KafkaCluster) {
    const find = cluster.findGroupCoordinator.bind(cluster);
    cluster.findGroupCoordinator = (o) => {
      if (!this.scoped || o.coordinatorType !== TRANSACTION_COORDINATOR) return find(o);
      if (this.memo === undefined) {
        const p = (this.memo = find(o));
        p.catch(() => {
          if (this.memo === p) this.memo = undefined;
        });
      }
      return this.memo;
    };
  }

  /** From now until end(), one lookup is taken for all. */
  begin(): void {
    this.scoped = true;
  }

  end(): void {
    this.scoped = false;
    this.memo = undefined;
  }
}

export class ChangelogKafka {
  private readonly kafka: Kafka;
  private readonly producers = new Map<number, Producer>();
  /** Per partition: its producer's transaction coordinator lookups. */
  private readonly coordinators = new Map<number, TransactionCoordinator>();
  /** Per partition, the change and result batches of transactions that failed: they go into the next one, first. */
  private readonly carry = new Map<number, { changes: ChangeBatch[]; results: ChangeBatch[] }>();
  private cluster: KafkaCluster | undefined;
  /** Whether the changelog topic is among the cluster's target topics (its metadata kept). */
  private targeted = false;

  constructor(private readonly o: ChangelogKafkaOptions) {
    this.kafka = new Kafka({ clientId: o.clientId, brokers: o.brokers, ssl: o.ssl, ...(o.sasl === undefined ? {} : { sasl: o.sasl }), logLevel: logLevel.NOTHING });
  }

  /**
   * Connects the restores' cluster now, while the group forms (and the topic is created
   * on the main thread: topic.ts), not at the first assignment. If it cannot be, the
   * first restore tries again (and says why).
   */
  async connect(): Promise<void> {
    await this.clusterOf().catch(() => undefined);
  }

  transactionalId(partition: number): string {
    return `${this.o.groupId}:${this.o.topic}:${partition}`;
  }

  /** Opens partition `p`'s transactional producer, fencing any previous owner (its open transaction is aborted, its next one refused). */
  async open(p: number): Promise<void> {
    if (this.producers.has(p)) return;
    const { producer, cluster } = producerWithCluster(this.kafka, {
      transactionalId: this.transactionalId(p),
      // Its transactions' sends are idempotent whatever this says; true would only have
      // connect() ask for a non-transactional producer id too, a round trip at each open.
      idempotent: false,
      maxInFlightRequests: 1,
      transactionTimeout: this.o.transactionTimeoutMs,
      // A transaction begun right after the previous commit is refused (CONCURRENT_TRANSACTIONS)
      // until the broker has written that commit's markers, a few ms: kafkajs's default first
      // retry after 300 ms would stall every other checkpoint by that much.
      retry: TRANSACTION_RETRY,
      // Exactly-once results by key, to the partitions an at-least-once Kafka sink writes them to.
      createPartitioner: JavaCompatiblePartitioner,
    });
    try {
      // The changelog topic is the producer's before the fencing below asks for metadata (kafkajs-cluster.ts).
      await connectFor(producer, cluster, this.o.changelog);
      // kafkajs asks for the transactional producer id (InitProducerId: the fencing) at the
      // first transaction, not at connect. Fence now, before the restore reads the
      // changelog: a previous owner that commits after the restore read would have its
      // changes missing from this instance's state. An empty transaction sends nothing.
      const txn = await producer.transaction();
      await txn.abort();
    } catch (e) {
      await producer.disconnect().catch(() => undefined);
      throw new WeirError(`changelog: cannot open the transactional producer of partition ${p}: ${messageOf(e)}`, { domain: 'external', retriable: true, cause: e });
    }
    this.producers.set(p, producer);
    if (cluster !== undefined) this.coordinators.set(p, new TransactionCoordinator(cluster));
  }

  async close(p: number): Promise<void> {
    const producer = this.producers.get(p);
    this.producers.delete(p);
    this.coordinators.delete(p);
    this.carry.delete(p);
    await producer?.disconnect().catch(() => undefined);
  }

  /**
   * One checkpoint of partition `p` as one transaction: the change batches (in order),
   * the partition record, the results its events produced since its previous checkpoint
   * (to every exactly-once result topic, key and value as an at-least-once Kafka sink
   * writes them), and the input offset for the group. Returns the changelog offset after
   * the partition record (where a restore from this checkpoint begins). A transaction
   * that fails is aborted and its batches go into the next one of the partition.
   */
  async commit(p: number, changes: readonly ChangeBatch[], partitionRecord: string, offset: string, results: readonly ChangeBatch[] = [], resultTopics: readonly string[] = []): Promise<string> {
    const producer = this.producers.get(p);
    if (producer === undefined) throw new WeirError(`changelog: partition ${p} has no producer open`, { domain: 'internal' });
    const carried = this.carry.get(p) ?? { changes: [], results: [] };
    const all = { changes: [...carried.changes, ...changes], results: [...carried.results, ...results] };
    this.carry.set(p, all);
    const txn = await producer.transaction().catch((e: unknown) => {
      throw isFenced(e) ? new FencedError(p, e) : e;
    });
    const coordinator = this.coordinators.get(p);
    coordinator?.begin();
    try {
      let last = '';
      await this.sendAll(txn, this.o.changelog, p, all.changes, { key: Buffer.from(PARTITION_KEY), value: Buffer.from(partitionRecord) }, (o) => (last = o));
      for (const topic of resultTopics) await this.sendAll(txn, topic, undefined, all.results);
      await txn.sendOffsets({ consumerGroupId: this.o.groupId, topics: [{ topic: this.o.topic, partitions: [{ partition: p, offset }] }] });
      await txn.commit();
      coordinator?.end();
      this.carry.delete(p);
      return (BigInt(last) + 1n).toString();
    } catch (e) {
      coordinator?.end();
      await txn.abort().catch(() => undefined);
      if (isFenced(e)) throw new FencedError(p, e);
      throw new WeirError(`changelog: the checkpoint transaction of partition ${p} failed: ${messageOf(e)}`, { domain: 'external', retriable: true, cause: e });
    }
  }

  /**
   * Sends every record of `batches` (and `final` after them) to `topic` within `txn`, in
   * sends below SEND_BYTES; to `partition`, or by key (kafkajs's default partitioner).
   * `lastOffset` gets the offset of the last record sent to a given partition.
   */
  private async sendAll(
    txn: Transaction,
    topic: string,
    partition: number | undefined,
    batches: readonly ChangeBatch[],
    final?: { key: Buffer; value: Buffer },
    lastOffset?: (offset: string) => void,
  ): Promise<void> {
    type Plain = { key: Buffer; value: Buffer | null; partition?: number };
    type Msg = Plain | RunMessage;
    let chunk: Msg[] = [];
    let bytes = 0;
    const flush = async (): Promise<void> => {
      if (chunk.length === 0) return;
      const meta = await txn.send({ topic, acks: -1, messages: chunk });
      if (partition !== undefined) lastOffset?.((BigInt(meta[0]!.baseOffset ?? '0') + BigInt(chunk.length - 1)).toString());
      chunk = [];
      bytes = 0;
    };
    if (partition !== undefined && runsSupported()) {
      // The records as runs of the batch's bytes (kafkajs-produce.ts), cut where a send is full.
      for (const b of batches) {
        const buf = new Uint8Array(b.buffer, 0, b.length);
        const words = new DataView(b.buffer, 0, b.length);
        let start = 0, p = 0, n = 0;
        for (let i = 0; i < b.count; i++) {
          const size = 8 + words.getUint32(p, true) + words.getUint32(p + 4, true);
          p += size;
          n++;
          bytes += size + 8;
          if (bytes >= SEND_BYTES) {
            pushRun(chunk, { buf, start, end: p, count: n }, partition);
            start = p;
            n = 0;
            await flush();
          }
        }
        if (n > 0) pushRun(chunk, { buf, start, end: p, count: n }, partition);
      }
      if (final !== undefined) chunk.push({ ...final, partition });
      await flush();
      return;
    }
    const at = partition === undefined ? {} : { partition };
    for (const b of batches) {
      const msgs: Plain[] = [];
      // Values are views of the batch's buffer: kafkajs copies them into its request.
      readChangeBatch(b, (key, value) => msgs.push({ key: Buffer.from(key, 'utf8'), value, ...at }));
      for (const m of msgs) {
        chunk.push(m);
        bytes += m.key.length + (m.value?.length ?? 0) + 16;
        if (bytes >= SEND_BYTES) await flush();
      }
    }
    if (final !== undefined) chunk.push({ ...final, ...at });
    await flush();
  }

  private async clusterOf(): Promise<KafkaCluster> {
    if (this.cluster === undefined) {
      const cluster = newCluster(this.kafka, { isolationLevel: READ_COMMITTED, allowAutoTopicCreation: false, metadataMaxAge: 300_000 });
      if (cluster === undefined) throw new WeirError('changelog: this kafkajs has no cluster factory (Weir needs kafkajs 2.2)', { domain: 'internal' });
      try {
        await cluster.connect();
      } catch (e) {
        await cluster.disconnect().catch(() => undefined);
        throw e;
      }
      this.cluster = cluster;
    }
    return this.cluster;
  }

  /** Reads changelog partition `p` from offset `from` to its last stable offset. */
  async restore(p: number, from: string): Promise<RestoreResult> {
    const cluster = await this.clusterOf();
    // The topic may have been created after the cluster connected: it is a target from the first restore on.
    if (!this.targeted) {
      await cluster.addTargetTopic(this.o.changelog);
      this.targeted = true;
    }
    await cluster.refreshMetadata();
    const offsetOf = async (fromBeginning: boolean): Promise<bigint> => {
      const [o] = await cluster.fetchTopicsOffset([{ topic: this.o.changelog, fromBeginning, partitions: [{ partition: p }] }]);
      return BigInt(o!.partitions[0]!.offset);
    };
    const [end, low] = await Promise.all([offsetOf(false), offsetOf(true)]);
    let next = BigInt(from) < low ? low : BigInt(from);
    // Every record here is written in a transaction, and the transaction's marker comes
    // after its records: the last offset below the last stable offset is a marker (for a
    // cache, the one of the checkpoint it holds), so one offset left holds no record.
    if (end - next === 1n) next = end;
    const latest = new Map<string, Buffer | null>();
    let partitionRecord: string | undefined;
    let records = 0;
    let failures = 0;
    while (next < end) {
      let data: Record<string, unknown> & { partition: number };
      try {
        const leaders = cluster.findLeaderForPartitions(this.o.changelog, [p]);
        const nodeId = Object.keys(leaders)[0];
        if (nodeId === undefined) throw new Error(`no leader for partition ${p}`);
        const broker = await cluster.findBroker({ nodeId });
        const r = await broker.fetch({
          replicaId: -1,
          isolationLevel: READ_COMMITTED,
          maxWaitTime: 100,
          minBytes: 1,
          maxBytes: FETCH_BYTES,
          topics: [{ topic: this.o.changelog, partitions: [{ partition: p, fetchOffset: next.toString(), maxBytes: FETCH_BYTES }] }],
        });
        data = r.responses[0]!.partitions[0]!;
      } catch (e) {
        if (++failures > 10) throw new WeirError(`changelog: cannot read partition ${p} of "${this.o.changelog}" at offset ${next}: ${messageOf(e)}`, { domain: 'external', retriable: true, cause: e });
        await new Promise((r) => setTimeout(r, 100 * failures));
        await cluster.refreshMetadata().catch(() => undefined);
        continue;
      }
      failures = 0;
      const batch = new Batch(this.o.changelog, next.toString(), data);
      for (const m of batch.messages) {
        if (BigInt(m.offset) >= end) break;
        records++;
        const key = m.key === null ? '' : m.key.toString('utf8');
        if (key === PARTITION_KEY) partitionRecord = m.value === null ? undefined : m.value.toString('utf8');
        else latest.set(key, m.value);
      }
      const within = batch.messagesWithinOffset;
      // Past the last record (control records included); a batch left empty by compaction moves on by one.
      next = within.length > 0 ? BigInt(within[within.length - 1]!.offset) + 1n : batch.rawMessages.length > 0 ? next + 1n : next;
      if (within.length === 0 && batch.rawMessages.length === 0) {
        // Nothing below the last stable offset came back: it is not there (yet). Wait briefly.
        if (++failures > 50) throw new WeirError(`changelog: partition ${p} of "${this.o.changelog}" returned nothing at offset ${next} below its end ${end}`, { domain: 'external', retriable: true });
        await new Promise((r) => setTimeout(r, 20));
      }
    }
    let size = 0;
    for (const [k, v] of latest) size += 9 + 3 * k.length + (v?.length ?? 0);
    const w = new ChangeBatchWriter(size);
    for (const [k, v] of latest) {
      if (v === null) w.delete(k);
      else w.put(k, v);
    }
    return { batch: w.finish(), partitionRecord, records, end: end.toString() };
  }

  async shutdown(): Promise<void> {
    const producers = [...this.producers.values()];
    this.producers.clear();
    this.coordinators.clear();
    await Promise.allSettled([...producers.map((x) => x.disconnect()), this.cluster?.disconnect()]);
    this.cluster = undefined;
    this.targeted = false;
  }
}
