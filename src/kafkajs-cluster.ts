// A kafkajs producer's cluster (its connections and metadata), which kafkajs creates per
// producer and gives no way to, and what Weir does with it: before anything asks for
// metadata, it makes the producer's topic the cluster's topic. Without one, kafkajs asks
// for the metadata of every topic of the cluster (an idempotent producer's connect, a
// transactional producer's fencing): 25 to 40 ms per producer on a broker with some
// hundreds of topics, more on larger clusters, at every start and assignment.
import type { Kafka, Producer, ProducerConfig } from 'kafkajs';

/** The part of kafkajs's Cluster that Weir uses. */
export interface KafkaCluster {
  connect(): Promise<void>;
  disconnect(): Promise<void>;
  addTargetTopic(topic: string): Promise<void>;
  refreshMetadata(): Promise<void>;
  findLeaderForPartitions(topic: string, partitions: number[]): Record<string, number[]>;
  findBroker(b: { nodeId: string }): Promise<{ fetch(req: object): Promise<{ responses: Array<{ partitions: Array<Record<string, unknown> & { partition: number }> }> }> }>;
  fetchTopicsOffset(t: Array<{ topic: string; fromBeginning: boolean; partitions: Array<{ partition: number }> }>): Promise<Array<{ partitions: Array<{ partition: number; offset: string }> }>>;
  findGroupCoordinator(o: { groupId: string; coordinatorType?: number }): Promise<unknown>;
}

/** kafkajs's factory of clusters on a Kafka client (kafkajs 2.2: a private symbol), if there is one. */
function clusterFactory(kafka: Kafka): { sym: symbol; create: (o: object) => KafkaCluster } | undefined {
  const k = kafka as unknown as Record<symbol, (o: object) => KafkaCluster>;
  const sym = Object.getOwnPropertySymbols(k).find((x) => x.description === 'private:Kafka:createCluster');
  const create = sym === undefined ? undefined : k[sym];
  return sym === undefined || create === undefined ? undefined : { sym, create };
}

/** A new cluster of `kafka`'s (for the changelog's restores: no producer, no consumer). */
export function newCluster(kafka: Kafka, options: object): KafkaCluster | undefined {
  return clusterFactory(kafka)?.create(options);
}

/** kafka.producer(config), and the cluster kafkajs made for it (undefined without kafkajs's factory). */
export function producerWithCluster(kafka: Kafka, config: ProducerConfig): { producer: Producer; cluster: KafkaCluster | undefined } {
  const f = clusterFactory(kafka);
  if (f === undefined) return { producer: kafka.producer(config), cluster: undefined };
  const k = kafka as unknown as Record<symbol, (o: object) => KafkaCluster>;
  let cluster: KafkaCluster | undefined;
  k[f.sym] = (o) => (cluster = f.create(o));
  try {
    return { producer: kafka.producer(config), cluster };
  } finally {
    k[f.sym] = f.create;
  }
}

/**
 * Connects `producer` with `topic` as its cluster's topic first. If that topic's
 * metadata cannot be had (a topic still to be created), the producer connects as
 * kafkajs would have it.
 */
export async function connectFor(producer: Producer, cluster: KafkaCluster | undefined, topic: string): Promise<void> {
  if (cluster !== undefined) {
    await cluster.connect();
    await cluster.addTargetTopic(topic).catch(() => undefined);
  }
  await producer.connect();
}
