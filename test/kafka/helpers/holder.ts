// Another member of a consumer group, run as its own process (so it can be killed
// with SIGKILL and stay in the group until its session times out): a plain kafkajs
// consumer that takes every partition of the topic for itself and reads nothing.
//
//   node holder.js <topic> <groupId> <sessionTimeoutMs> [commit-ends]
//
// It prints `joined <partitions as JSON>` on stdout after each group join, and
// `committed` once it has committed the topic's end offsets (with commit-ends).
// SIGTERM: it leaves the group and exits.
//
// Every partition is its own because it is the group's leader (the first member to
// join, and it stays leader while it rejoins): the leader runs the assignment, with
// its own implementation of the protocol the members agree on. Its assigner has the
// name of kafkajs's default, so the group picks it with Weir's members.
import { AssignerProtocol, Kafka, logLevel, type PartitionAssigner } from 'kafkajs';
import { BROKERS } from './kafka';

const HOLDER_CLIENT_ID = 'holder';

const greedy: PartitionAssigner = ({ cluster }) => ({
  name: 'RoundRobinAssigner',
  version: 0,
  async assign({ members, topics }) {
    const mine = members.map((m) => m.memberId).filter((id) => id.startsWith(`${HOLDER_CLIENT_ID}-`));
    return members.map(({ memberId }) => ({
      memberId,
      memberAssignment: AssignerProtocol.MemberAssignment.encode({
        version: 0,
        assignment: Object.fromEntries(topics.map((t) => [t, memberId === mine[0] ? cluster.findTopicPartitionMetadata(t).map((m) => m.partitionId) : []])),
        userData: Buffer.alloc(0),
      }),
    }));
  },
  protocol({ topics }) {
    return { name: 'RoundRobinAssigner', metadata: AssignerProtocol.MemberMetadata.encode({ version: 0, topics, userData: Buffer.alloc(0) }) };
  },
});

async function main(): Promise<void> {
  const [topic, groupId, session, commitEnds] = process.argv.slice(2);
  if (topic === undefined || groupId === undefined || session === undefined) throw new Error('usage: holder.js <topic> <groupId> <sessionTimeoutMs> [commit-ends]');
  const kafka = new Kafka({ clientId: HOLDER_CLIENT_ID, brokers: BROKERS, logLevel: logLevel.NOTHING });
  const consumer = kafka.consumer({ groupId, sessionTimeout: Number(session), rebalanceTimeout: 10_000, heartbeatInterval: 300, maxWaitTimeInMs: 100, partitionAssigners: [greedy] });
  const admin = kafka.admin();
  process.once('SIGTERM', () => {
    consumer.disconnect().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  });
  await Promise.all([consumer.connect(), admin.connect()]);
  const ends = await admin.fetchTopicOffsets(topic);
  let joined!: () => void;
  const first = new Promise<void>((res) => (joined = res));
  consumer.on(consumer.events.GROUP_JOIN, (e) => {
    const partitions = e.payload.memberAssignment[topic] ?? [];
    process.stdout.write(`joined ${JSON.stringify(partitions)}\n`);
    if (partitions.length > 0) joined();
  });
  await consumer.subscribe({ topics: [topic], fromBeginning: true });
  // Holds the partitions and reads nothing: paused, nothing resolved, nothing committed.
  await consumer.run({ autoCommit: false, eachBatchAutoResolve: false, eachBatch: async () => {} });
  consumer.pause([{ topic }]);
  await first;
  if (commitEnds === 'commit-ends') {
    // (kafkajs drops a commit silently while its runner is not running yet: checked.)
    await consumer.commitOffsets(ends.map((o) => ({ topic, partition: o.partition, offset: o.high })));
    const [got] = await admin.fetchOffsets({ groupId, topics: [topic] });
    const short = got?.partitions.filter((p) => p.offset !== ends.find((o) => o.partition === p.partition)?.high) ?? [];
    process.stdout.write(short.length === 0 ? 'committed\n' : `commit failed: ${JSON.stringify(short)}\n`);
  }
  await admin.disconnect();
}

main().catch((e: unknown) => {
  process.stderr.write(`holder: ${String(e)}\n`);
  process.exit(1);
});
