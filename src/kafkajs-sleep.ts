// kafkajs's sleep (src/utils/sleep.js), with a way to end the sleeps in progress.
// While every partition it reads is paused, kafkajs's consumer sleeps its fetch wait
// (maxWaitTimeInMs) instead of fetching (src/consumer/consumerGroup.js, fetch()), and
// a stop waits for that sleep to end: at the end of a bounded read, every partition is
// paused. The Kafka source's thread wakes the sleepers when it stops the consumer.
// kafkajs's only other sleeper (src/utils/waitFor.js) just checks its condition again
// sooner when woken.
import { installInPlaceOf } from './kafkajs-modules';

const sleepers = new Set<() => void>();

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => {
    const done = (): void => {
      clearTimeout(timer);
      sleepers.delete(done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    sleepers.add(done);
  });
}

/** Ends every sleep in progress (in this thread) now. */
export function wakeSleepers(): void {
  for (const done of [...sleepers]) done();
}

/**
 * Puts the wakeable sleep in place of kafkajs's in this thread's module cache. False,
 * changing nothing, when kafkajs is not a version Weir replaces modules of or its
 * consumer is loaded already (installInPlaceOf).
 */
export function installWakeableSleep(): boolean {
  return installInPlaceOf('src/utils/sleep.js', 'src/consumer/consumerGroup.js', sleep);
}
