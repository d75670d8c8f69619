// The changelog topic: created (compacted, one partition per input partition) when it
// is missing and allowed to be, checked when it exists. This runs on the main thread
// while the changelog thread starts (thread.ts): the thread's start (loading kafkajs)
// and the broker's creation of the topic take a good part of a start each, and neither
// needs the other.
import { Kafka, logLevel, type Admin } from 'kafkajs';
import { messageOf, WeirError } from '../errors/errors';
import type { ChangelogKafkaOptions } from './kafka';

export interface ChangelogTopic {
  /** Its partitions (= the input topic's). */
  partitions: number;
  /** Its delete.retention.ms: tombstones older than this may have been compacted away. */
  deleteRetentionMs: number;
}

/** Kafka's default delete.retention.ms, taken when the topic's cannot be read. */
const DEFAULT_DELETE_RETENTION_MS = 86_400_000;

/** Waits before the attempts after the first (ms): kafkajs's default retries, about 9 s in all. */
const RETRY_WAITS_MS = [300, 600, 1200, 2400, 4800];

/**
 * The changelog topic of `o`, created when it is missing and `o.create` allows it.
 * kafkajs retries nothing here (its retries cannot be stopped: a client's disconnect
 * leaves a connect retrying); a failure that may pass is tried again from the start
 * after each of RETRY_WAITS_MS, and `signal` stops that at once.
 */
export async function ensureChangelogTopic(o: ChangelogKafkaOptions, signal?: AbortSignal): Promise<ChangelogTopic> {
  const kafka = new Kafka({ clientId: o.clientId, brokers: o.brokers, ssl: o.ssl, ...(o.sasl === undefined ? {} : { sasl: o.sasl }), logLevel: logLevel.NOTHING, retry: { retries: 0 } });
  const aborted = (): boolean => signal?.aborted === true;
  for (let attempt = 0; ; attempt++) {
    try {
      return await ensureOnce(kafka, o);
    } catch (e) {
      const wait = RETRY_WAITS_MS[attempt];
      if (wait === undefined || !mayPass(e) || aborted()) throw e;
      await new Promise<void>((resolve) => {
        const timer = setTimeout(done, wait);
        signal?.addEventListener('abort', done, { once: true });
        function done(): void {
          clearTimeout(timer);
          signal?.removeEventListener('abort', done);
          resolve();
        }
      });
      if (aborted()) throw e;
    }
  }
}

/** Whether an attempt's failure may pass if tried again (the broker unreachable, a leader moving): not a user's mistake. */
function mayPass(e: unknown): boolean {
  if (e instanceof WeirError) return e.retriable;
  return (e as { retriable?: unknown } | null)?.retriable === true || (e as { name?: unknown } | null)?.name === 'KafkaJSConnectionError';
}

async function ensureOnce(kafka: Kafka, o: ChangelogKafkaOptions): Promise<ChangelogTopic> {
  const admin = kafka.admin();
  try {
    await admin.connect();
  } catch (e) {
    throw new WeirError(`kafka: cannot reach the brokers ${o.brokers.join(',')} for the changelog topic "${o.changelog}": ${messageOf(e)}`, { domain: 'external', retriable: true, cause: e });
  }
  try {
    // Both looked up at once: one round trip, not two.
    const [input, existing] = await Promise.all([partitionsOf(admin, o.topic), partitionsOf(admin, o.changelog)]);
    if (input === undefined) throw new WeirError(`changelog: the input topic "${o.topic}" does not exist`, { domain: 'user' });
    let have = existing;
    if (have === undefined) {
      if (!o.create) throw new WeirError(`changelog.topic: "${o.changelog}" does not exist (create it compacted with ${input} partitions, or set changelog.create: true)`, { domain: 'user' });
      // Its leaders are waited for here, in short steps: kafkajs's own wait (waitForLeaders)
      // looks every 100 ms, and the first restore needs them.
      let created: unknown;
      try {
        await admin.createTopics({ waitForLeaders: false, topics: [{ topic: o.changelog, numPartitions: input, configEntries: [{ name: 'cleanup.policy', value: 'compact' }] }] });
      } catch (e) {
        created = e;
      }
      // Created (by this instance or, at the same time, another), but slow to show in the metadata with its leaders (many partitions, a busy broker): wait for it a while.
      if (!(await appears(admin, o.changelog, input))) {
        const why = created === undefined ? 'it has no leader after 30 s' : messageOf(created);
        throw new WeirError(`changelog: cannot create topic "${o.changelog}": ${why}`, { domain: 'external', ...(created === undefined ? {} : { cause: created }) });
      }
      have = await partitionsOf(admin, o.changelog);
    }
    if (have !== input)
      throw new WeirError(`changelog.topic: "${o.changelog}" has ${have} partitions, the input topic "${o.topic}" ${input}: they must be equal (a partition's state is in the changelog partition with its number)`, { domain: 'user' });
    const cfg = await admin.describeConfigs({ includeSynonyms: false, resources: [{ type: 2, name: o.changelog, configNames: ['cleanup.policy', 'delete.retention.ms'] }] });
    const entries = cfg.resources[0]?.configEntries ?? [];
    const policy = entries.find((c) => c.configName === 'cleanup.policy')?.configValue ?? '';
    if (!policy.split(',').includes('compact'))
      throw new WeirError(`changelog.topic: "${o.changelog}" has cleanup.policy=${policy}; it must be compact (or the state of old windows is deleted with it)`, { domain: 'user' });
    const retention = Number(entries.find((c) => c.configName === 'delete.retention.ms')?.configValue);
    return { partitions: input, deleteRetentionMs: Number.isFinite(retention) && retention > 0 ? retention : DEFAULT_DELETE_RETENTION_MS };
  } finally {
    await admin.disconnect();
  }
}

/** Whether `topic` shows in the metadata with `partitions` partitions, all with a leader, within 30 s (looked for after 0, 5, 10, 20, ... ms, then every 500). */
async function appears(admin: Admin, topic: string, partitions: number): Promise<boolean> {
  let wait = 5;
  for (const until = Date.now() + 30_000; Date.now() < until; await new Promise((r) => setTimeout(r, wait)), wait = Math.min(500, 2 * wait)) {
    const m = await admin.fetchTopicMetadata({ topics: [topic] }).catch(() => undefined);
    const ps = m?.topics[0]?.partitions;
    if (ps !== undefined && ps.length === partitions && ps.every((x) => x.leader >= 0)) return true;
  }
  return false;
}

async function partitionsOf(admin: Admin, topic: string): Promise<number | undefined> {
  try {
    const m = await admin.fetchTopicMetadata({ topics: [topic] });
    return m.topics[0]?.partitions.length;
  } catch (e) {
    if ((e as { type?: string }).type === 'UNKNOWN_TOPIC_OR_PARTITION') return undefined;
    throw new WeirError(`changelog: cannot read the metadata of topic "${topic}": ${messageOf(e)}`, { domain: 'external', retriable: true, cause: e });
  }
}
