// Ticks for unbounded embedded sources (stdin, an unbounded generator): when no
// message arrives for `intervalMs`, a `tick` is yielded so that W can move without
// events (idle partitions, eventTime.idleAdvance), as the Kafka source does for
// its topic. The pull in flight is kept across ticks, never started twice.
import type { StreamMessage } from '../pipeline/types';

/** How often an idle embedded source ticks (ms): as the Kafka source's default. */
export const EMBEDDED_TICK_INTERVAL_MS = 1000;

/** `messages`, with a `tick` at `clock()` after every `intervalMs` without one. */
export async function* withTicks(messages: AsyncIterable<StreamMessage>, intervalMs: number, clock: () => number = Date.now): AsyncGenerator<StreamMessage> {
  const it = messages[Symbol.asyncIterator]();
  let pending: Promise<IteratorResult<StreamMessage>> | undefined;
  let timer: NodeJS.Timeout | undefined;
  const TICK = Symbol('tick');
  try {
    for (;;) {
      pending ??= it.next();
      const tick = new Promise<typeof TICK>((resolve) => (timer = setTimeout(() => resolve(TICK), intervalMs)));
      const next = await Promise.race([pending, tick]);
      clearTimeout(timer);
      if (next === TICK) {
        yield { kind: 'tick', nowMs: clock() };
        continue;
      }
      pending = undefined;
      if (next.done === true) return;
      yield next.value;
    }
  } finally {
    clearTimeout(timer);
    // Not awaited: a read may still be pending (stdin), and return() would wait for it.
    if (pending !== undefined) pending.catch(() => undefined);
    it.return?.(undefined)?.catch(() => undefined);
  }
}
