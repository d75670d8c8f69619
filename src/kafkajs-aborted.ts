// A correct replacement for kafkajs's consumer/filterAbortedMessages.js: which fetched
// records belong to aborted transactions, for a READ_COMMITTED read.
//
// A Fetch response lists the aborted transactions overlapping the records it returns,
// each as (producer id, first offset), in the order their abort markers were written.
// kafkajs takes that list as sorted by first offset and takes at most one entry per
// record. With transactions of several producers interleaved in a partition, as a topic
// written by several transactional producers (Weir's exactly-once results, one producer
// per input partition) has, the first offsets are out of order: then an aborted
// transaction is taken too late and its records are handed out as if committed. Java's
// consumer keeps the list in a priority queue by first offset and takes every entry at
// or below each batch; this does the same per record.
//
// `installAbortedFilter` puts it in place of kafkajs's module in this thread's module
// cache, before kafkajs's consumer loads it (as kafkajs-grouping.ts does); Weir's own
// record batches (sources/kafka-decode.ts) call it directly.
import { installInPlaceOf } from './kafkajs-modules';

const REPLACED = 'src/consumer/filterAbortedMessages.js';
/** The kafkajs module that holds the replaced one once loaded. */
const HOLDER = 'src/consumer/batch.js';

export interface FetchedRecord {
  offset: string;
  key: Buffer | null;
  isControlRecord: boolean;
  batchContext: { producerId: string; inTransaction: boolean };
}

export interface AbortedTransaction {
  producerId: string;
  firstOffset: string;
}

/** A control record's key: version (int16), then type (int16): 0 abort, 1 commit. */
function isAbortMarker(m: FetchedRecord): boolean {
  return m.isControlRecord && m.key !== null && m.key.length >= 4 && m.key.readInt16BE(2) === 0;
}

/**
 * `messages` (in offset order) without the records of aborted transactions; control
 * records stay (callers drop them).
 */
export function filterAbortedMessages<M extends FetchedRecord>({ messages, abortedTransactions }: { messages: M[]; abortedTransactions?: readonly AbortedTransaction[] | null }): M[] {
  if (abortedTransactions === undefined || abortedTransactions === null || abortedTransactions.length === 0) return messages;
  const pending = abortedTransactions.map((t) => ({ producerId: String(t.producerId), first: BigInt(t.firstOffset) })).sort((a, b) => (a.first < b.first ? -1 : a.first > b.first ? 1 : 0));
  const aborted = new Set<string>();
  let next = 0;
  return messages.filter((m) => {
    const offset = BigInt(m.offset);
    while (next < pending.length && pending[next]!.first <= offset) aborted.add(pending[next++]!.producerId);
    const producerId = String(m.batchContext.producerId);
    if (isAbortMarker(m)) {
      aborted.delete(producerId);
      return true;
    }
    return !(m.batchContext.inTransaction && !m.isControlRecord && aborted.has(producerId));
  });
}

/** Puts filterAbortedMessages in place of kafkajs's in this thread's module cache (see installInPlaceOf). */
export function installAbortedFilter(): boolean {
  return installInPlaceOf(REPLACED, HOLDER, filterAbortedMessages);
}

installAbortedFilter();
