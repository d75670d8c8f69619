// Line sources with their records' JSON scanned on a thread of its own, a few batches
// ahead of the operator: with more than one core, the operator's thread then only
// decodes the fields (RecordBatch.scanned), as with a Kafka consumer on a thread of its
// own (kafka-worker.ts). Reading lines costs little: the operator is the slower side,
// and every batch is scanned there.
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import type { ScanSpec } from '../core/pathspec';
import { scanBytes, scannedAt } from '../core/wasm';
import { WeirError } from '../errors/errors';
import type { RecordBatch } from '../pipeline/types';
import type { ScanReply, ScanRequest } from './scan-thread';

/** Batches at the scan thread or scanned and not yet handed on. */
export const SCAN_AHEAD_BATCHES = 8;
/** Buffers are allocated in multiples of this. */
const BUFFER_STEP = 64 * 1024;

/**
 * The batches of `batches` in order, each a copy (its source may reuse its buffers) with
 * its records scanned by `spec` on the scan thread. A batch's buffer is used again once
 * the next batch is asked for. The thread ends with the iteration.
 */
export async function* scanAhead(batches: AsyncIterable<RecordBatch>, spec: ScanSpec): AsyncGenerator<RecordBatch> {
  const worker = new Worker(join(__dirname, 'scan-thread.js'), { workerData: { scanSpec: spec } });
  worker.unref();
  const spare: ArrayBuffer[] = [];
  const waiting = new Map<number, { resolve: (r: ScanReply) => void; reject: (e: Error) => void }>();
  let gone: Error | undefined;
  const fail = (e: Error): void => {
    gone ??= new WeirError(`the scan thread failed: ${e.message}`, { domain: 'internal', cause: e });
    for (const w of waiting.values()) w.reject(gone);
    waiting.clear();
  };
  worker.on('message', (r: ScanReply) => {
    const w = waiting.get(r.id);
    waiting.delete(r.id);
    w?.resolve(r);
  });
  worker.on('error', fail);
  worker.on('exit', (code) => fail(new Error(`it exited (code ${code})`)));
  const pending: Array<{ batch: RecordBatch; span: number; reply: Promise<ScanReply> }> = [];
  let lastId = 0;
  /** Sends a copy of `b`'s records (rebased to 0) to be scanned, in a buffer with room for the scan. */
  const send = (b: RecordBatch): void => {
    if (gone !== undefined) throw gone;
    const n = b.n;
    const base = b.starts[0]!, span = b.ends[n - 1]! - base;
    const size = span + scanBytes(n, spec.paths);
    let buf = spare.pop();
    if (buf === undefined || buf.byteLength < size) buf = Buffer.allocUnsafeSlow(Math.ceil(size / BUFFER_STEP) * BUFFER_STEP).buffer;
    new Uint8Array(buf, 0, span).set(b.buf.subarray(base, base + span));
    const starts = new Uint32Array(n), ends = new Uint32Array(n);
    for (let k = 0; k < n; k++) {
      starts[k] = b.starts[k]! - base;
      ends[k] = b.ends[k]! - base;
    }
    const id = ++lastId;
    const reply = new Promise<ScanReply>((resolve, reject) => waiting.set(id, { resolve, reject }));
    reply.catch(() => undefined);
    worker.postMessage({ id, buf, span, starts, ends, n } satisfies ScanRequest, [buf]);
    pending.push({ batch: { ...b, buf: Buffer.alloc(0), starts, ends }, span, reply });
  };
  const it = batches[Symbol.asyncIterator]();
  let ended = false;
  let handed: ArrayBuffer | undefined;
  try {
    for (;;) {
      // The batch handed on last is done with.
      if (handed !== undefined) spare.push(handed);
      handed = undefined;
      while (!ended && pending.length < SCAN_AHEAD_BATCHES) {
        const r = await it.next();
        if (r.done === true) ended = true;
        else if (r.value.n > 0) send(r.value);
      }
      const next = pending.shift();
      if (next === undefined) return;
      const { batch, span } = next;
      const r = await next.reply;
      batch.buf = Buffer.from(r.buf, 0, span);
      if (r.failed === undefined) batch.scanned = scannedAt(r.buf, span, batch.n, spec.paths, 0);
      handed = r.buf;
      yield batch;
    }
  } finally {
    await it.return?.();
    await worker.terminate();
  }
}
