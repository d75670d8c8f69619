// The Kafka bench's bare consumer (bench/kafka.ts), run as `node dist/bench/bare.js
// '{"topic":…,"count":…,"maxBytesPerPartition":…,"groupId":…,"brokers":[…]}'`: a
// kafkajs consumer that counts the topic's messages and nothing else, with kafkajs's
// own decoder. Prints its run (KafkaRun) as JSON on stdout.
import { Kafka, logLevel } from 'kafkajs';
import type { KafkaRun } from './kafka';

interface BareArgs {
  topic: string;
  count: number;
  maxBytesPerPartition: number;
  groupId: string;
  brokers: string[];
}

/** Its run ends when it has seen `count` messages; timed from before it connects. */
async function bare(a: BareArgs): Promise<KafkaRun> {
  const kafka = new Kafka({ clientId: 'weir-bench-bare', brokers: a.brokers, logLevel: logLevel.NOTHING });
  // The same fetch settings as Weir's source (src/sources/kafka.ts): its maxWaitTimeInMs, the config's default fetch size.
  const consumer = kafka.consumer({ groupId: a.groupId, maxWaitTimeInMs: 100, maxBytesPerPartition: a.maxBytesPerPartition });
  const t0 = performance.now();
  let seen = 0, firstMs = 0, lastMs = 0;
  let done!: () => void;
  const all = new Promise<void>((res) => (done = res));
  try {
    await consumer.connect();
    await consumer.subscribe({ topics: [a.topic], fromBeginning: true });
    await consumer.run({
      autoCommit: false,
      eachBatch: async ({ batch }) => {
        if (seen === 0) firstMs = performance.now() - t0;
        seen += batch.messages.length;
        if (seen >= a.count) {
          lastMs = performance.now() - t0;
          done();
        }
      },
    });
    await all;
    if (seen !== a.count) throw new Error(`bare consumer saw ${seen} of ${a.count} messages`);
    return { firstMs, lastMs, totalMs: lastMs };
  } finally {
    await consumer.disconnect();
  }
}

bare(JSON.parse(process.argv[2] ?? '{}') as BareArgs).then(
  (run) => process.stdout.write(JSON.stringify(run) + '\n'),
  (e: unknown) => {
    console.error(e);
    process.exit(1);
  },
);
