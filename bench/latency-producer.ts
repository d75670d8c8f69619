// The load of the latency bench (bench/latency.ts), in a process of its own so that
// producing does not share Weir's CPU accounting or the measuring consumer's event
// loop. It writes generated events at a steady rate, each stamped with the wall
// clock at the moment it is handed to the producer, keyed by user (so a user's
// events stay in one partition, as sessions per user need).
//
// Run by the bench with `process.send` available: argv is
//   <brokers,comma-separated> <topic> <events/s> <users> <seed>
// It reports `{ sent, acked }` to the parent every 250 ms and on exit, and stops at
// the message "stop" (or when the parent goes away).
import { Kafka, logLevel, Partitioners, type Message } from 'kafkajs';
import { EventGenerator } from '../src/sources/eventgen';

process.env['KAFKAJS_NO_PARTITIONER_WARNING'] = '1';

/** Pacing step: each tick sends what the rate owes since the start. */
const TICK_MS = 5;
/** Sends awaiting their acknowledgement before a tick is skipped (what is owed is sent later, stamped later). */
const MAX_IN_FLIGHT = 16;
/** Most events in one send: a producer that fell behind catches up in sends the broker accepts (its default request limit is 1 MB). */
const MAX_SEND = 1000;

async function main(): Promise<void> {
  const [brokers, topic, rateText, usersText, seedText] = process.argv.slice(2);
  if (brokers === undefined || topic === undefined) throw new Error('usage: latency-producer <brokers> <topic> <events/s> <users> <seed>');
  const rate = Number(rateText), users = Number(usersText), seed = Number(seedText ?? 7);
  const kafka = new Kafka({ clientId: 'weir-bench-load', brokers: brokers.split(','), logLevel: logLevel.NOTHING });
  // The Java client's partitioner (murmur2 of the key), as Weir's docs assume.
  const producer = kafka.producer({ createPartitioner: Partitioners.DefaultPartitioner, allowAutoTopicCreation: false });
  await producer.connect();
  // Event time is the wall clock, so the generator's own clock and jitter do not matter.
  const gen = new EventGenerator({ seed, users, outOfOrderMs: 0 });
  let sent = 0, acked = 0, failed = 0, stopping = false;
  const inFlight = new Set<Promise<unknown>>();
  const report = (): void => void process.send?.({ sent, acked, failed });
  const reporter = setInterval(report, 250);
  // The first send fetches metadata and opens connections: done before pacing starts, so it does not start behind.
  await producer.send({ topic, messages: [], acks: 1 }).catch(() => {});
  const t0 = Date.now();

  const tick = (): void => {
    while (!stopping && inFlight.size < MAX_IN_FLIGHT) {
      const owed = Math.min(MAX_SEND, Math.floor(((Date.now() - t0) * rate) / 1000) - sent);
      if (owed <= 0) return;
      send(owed);
    }
  };
  const send = (owed: number): void => {
    const now = Date.now();
    const messages = new Array<Message>(owed);
    for (let i = 0; i < owed; i++) {
      const line = gen.next();
      // `"timestamp":<ms>` follows the id; the generator writes epoch ms (isoFraction 0).
      const ts = line.indexOf('"timestamp":') + 12;
      const tsEnd = line.indexOf(',', ts);
      const u = line.indexOf('"user_id":"') + 11;
      messages[i] = { key: line.slice(u, line.indexOf('"', u)), value: `${line.slice(0, ts)}${now}${line.slice(tsEnd)}` };
    }
    sent += owed;
    const p: Promise<unknown> = producer
      .send({ topic, messages, acks: 1 })
      .then(
        () => void (acked += owed),
        () => void (failed += owed),
      )
      .finally(() => inFlight.delete(p));
    inFlight.add(p);
  };
  const pacer = setInterval(tick, TICK_MS);

  await new Promise<void>((resolve) => {
    process.on('message', (m) => m === 'stop' && resolve());
    process.on('disconnect', resolve);
  });
  stopping = true;
  clearInterval(pacer);
  await Promise.allSettled(inFlight);
  clearInterval(reporter);
  await producer.disconnect();
  if (process.connected) await new Promise<void>((resolve) => process.send?.({ sent, acked, failed }, () => resolve()));
}

main().then(
  () => process.exit(0),
  (e: unknown) => {
    process.stderr.write(`latency-producer: ${e instanceof Error ? e.message : String(e)}\n`);
    process.exit(1);
  },
);
