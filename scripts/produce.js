#!/usr/bin/env node
// Produces a JSON-lines file into a Kafka topic, one message per line, keyed by
// model and region (so every group of the example aggregations stays in one
// partition), creating the topic if missing.
//   node scripts/produce.js FILE TOPIC [--brokers 127.0.0.1:9092] [--partitions 4]
'use strict';
const { readFileSync } = require('node:fs');
const { Kafka, Partitioners, logLevel } = require('kafkajs');

function usage(msg) {
  process.stderr.write(`produce: ${msg}\nusage: node scripts/produce.js FILE TOPIC [--brokers HOST:PORT,...] [--partitions N]\n`);
  process.exit(2);
}
const args = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = args.indexOf(name);
  if (i < 0) return dflt;
  const v = args[i + 1];
  if (v === undefined) usage(`${name} needs a value`);
  args.splice(i, 2);
  return v;
};
const brokers = opt('--brokers', '127.0.0.1:9092').split(',');
const partitions = Number(opt('--partitions', '4'));
if (!Number.isInteger(partitions) || partitions < 1) usage('--partitions must be a positive integer');
const [file, topic] = args;
if (file === undefined || topic === undefined) usage('FILE and TOPIC are required');

let lines;
try {
  lines = readFileSync(file, 'utf8').split('\n').filter((l) => l.trim() !== '');
} catch (e) {
  usage(`cannot read ${file}: ${e.message}`);
}
const keyOf = (line) => {
  const m = /"model"\s*:\s*"([^"]*)"[^}]*?"region"\s*:\s*"([^"]*)"/.exec(line);
  return m === null ? null : `${m[1]}:${m[2]}`;
};

(async () => {
  const kafka = new Kafka({ clientId: 'weir-produce', brokers, logLevel: logLevel.NOTHING });
  const admin = kafka.admin();
  await admin.connect();
  const created = await admin.createTopics({ topics: [{ topic, numPartitions: partitions, replicationFactor: 1 }], waitForLeaders: true });
  await admin.disconnect();
  const producer = kafka.producer({ createPartitioner: Partitioners.DefaultPartitioner });
  await producer.connect();
  for (let i = 0; i < lines.length; i += 1000) {
    await producer.send({ topic, acks: -1, messages: lines.slice(i, i + 1000).map((value) => ({ key: keyOf(value), value })) });
  }
  await producer.disconnect();
  process.stdout.write(`produced ${lines.length} messages to ${topic}${created ? ` (created with ${partitions} partitions)` : ''}\n`);
})().catch((e) => {
  process.stderr.write(`produce: ${e.message} (brokers ${brokers.join(',')})\n`);
  process.exit(1);
});
