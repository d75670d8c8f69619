// The entry point of the Kafka source's consumer thread (kafka.ts starts it with a
// WorkerInit as workerData). kafkajs's record decoding is replaced by Weir's
// (kafka-decode.ts) first: that works only before kafkajs is loaded, which importing
// kafka-worker.ts does. So is kafkajs's sleep, by one that stopping the consumer can
// end at once (kafkajs-sleep.ts).
import { parentPort, workerData } from 'node:worker_threads';
import { installFastDecoder } from './kafka-decode';
import { installWakeableSleep } from '../kafkajs-sleep';
import type { WorkerInit } from './kafka-worker';

const fastDecoder = installFastDecoder();
installWakeableSleep();
void import('./kafka-worker').then(({ serve }) => {
  if (parentPort !== null && (workerData as Partial<WorkerInit> | null)?.kind === 'weir-kafka-source') serve(parentPort, workerData as WorkerInit, fastDecoder);
});
