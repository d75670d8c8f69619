// The entry point of the scan thread (scan-ahead.ts starts it): scans batches of records
// with the operator's path spec.
//
// Protocol (one port, FIFO): main -> thread {id, buf, span, starts, ends, n}: the n
// records are buf[starts[k], ends[k]) within its first `span` bytes, and buf has room
// after them for their scan; thread -> main {id, buf} with the field records and then
// the status bytes of the n records written from byte `span` on, or {id, buf, failed}.
// `buf` is transferred both ways.
import { parentPort, workerData } from 'node:worker_threads';
import type { ScanSpec } from '../core/pathspec';
import { BatchScanner } from '../core/wasm';

export interface ScanRequest {
  id: number;
  buf: ArrayBuffer;
  span: number;
  starts: Uint32Array;
  ends: Uint32Array;
  n: number;
}

export interface ScanReply {
  id: number;
  buf: ArrayBuffer;
  failed?: string;
}

const port = parentPort;
const spec = (workerData as { scanSpec?: ScanSpec } | null)?.scanSpec;
if (port !== null && spec !== undefined) {
  const scanner = BatchScanner.create(spec);
  // An unhandled rejection would end the thread: a failed compile is answered per request.
  scanner.catch(() => undefined);
  port.on('message', (r: ScanRequest) => {
    scanner.then(
      (s) => {
        s.scan(new Uint8Array(r.buf, 0, r.span), r.starts, r.ends, r.n, new Uint8Array(r.buf, r.span, s.bytesFor(r.n)));
        port.postMessage({ id: r.id, buf: r.buf } satisfies ScanReply, [r.buf]);
      },
      (e: unknown) => port.postMessage({ id: r.id, buf: r.buf, failed: e instanceof Error ? e.message : String(e) } satisfies ScanReply, [r.buf]),
    );
  });
}
