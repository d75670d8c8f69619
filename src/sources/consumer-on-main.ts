// Imported first by the entry points that may run the Kafka source's consumer on the
// main thread (source.consumerThread; the `weir` command, the benchmarks): Weir's
// record decoder (kafka-decode.ts) and kafkajs's wakeable sleep (kafkajs-sleep.ts)
// go in place on this thread as on the consumer thread (kafka-thread.ts). That works
// only before kafkajs's consumer is loaded here, and importing most of Weir loads it.
// A consumer on its own thread is not affected; kafkajs's consumers on this thread get
// the same messages (test/kafka/decode.test.ts).
import { installFastDecoder } from './kafka-decode';
import { installWakeableSleep } from '../kafkajs-sleep';

installFastDecoder();
installWakeableSleep();
