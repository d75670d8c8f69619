// Receiving a consumer's Fetch responses into memory used again, instead of fresh memory
// for each (kafkajs 2.2.x; otherwise kafkajs works as it always did).
//
// kafkajs's Connection gathers a socket's chunks and, once a response is complete,
// copies them into one new Buffer (Buffer.concat); it copies every chunk that way,
// even one that holds a whole response. A Fetch response is up to a megabyte per
// partition, and memory that large is fresh from the system each time: writing it
// faults every page in. Copying a million events' responses (~250 MB) took 110 to
// 170 ms on this project's test machine; copying them into a buffer written before,
// about 10.
//
// Here a response is copied once, as it arrives, into a buffer of its own: for a Fetch
// response, one of two buffers that the connection takes turns with and keeps; for any
// other response that spans chunks, a new one; a response within one chunk is not copied
// at all (a view of the chunk). A Fetch response's buffer is therefore written again two
// Fetch responses later on the same connection. That is safe for a consumer whose
// eachBatch keeps nothing of its messages once it returns (the Kafka source's worker
// copies their values out, packValues in sources/kafka-worker.ts): kafkajs sends a
// broker's next Fetch only once every batch of the last one was handled
// (consumer/fetcher.js), so when a Fetch response arrives, the one before it is done
// with, and the one before that, whose buffer it takes, all the more.
//
// Only connections whose socket comes from receiveSocketFactory() receive so (the Kafka
// source's consumer, without SASL); kafkajs's other connections on the thread (a
// producer's, the changelog's restores, which keep views of the values they read) are
// not touched.
import net from 'node:net';
import tls from 'node:tls';
import type { ISocketFactory } from 'kafkajs';
import { kafkajsRoot, loadKafkajs } from './kafkajs-modules';

/** Fetch's API key. */
const FETCH = 1;
/** kafkajs's keep-alive delay for its sockets (network/socketFactory.js). */
const KEEP_ALIVE_DELAY = 60_000;

/** What a marked socket's connection receives with: its framing state and buffers (exported for its tests). */
export class Receiver {
  /** Correlation ids of the Fetch requests written and not yet answered. */
  readonly fetches = new Set<number>();
  /** A response's first 8 bytes (size, correlation id) while they come in pieces. */
  private readonly head = Buffer.alloc(8);
  private headBytes = 0;
  /** The response being gathered, its length (with its size field) and how much of it is there. */
  private frame: Buffer | undefined;
  private total = 0;
  private filled = 0;
  /** The two buffers Fetch responses take turns with, and whose turn it is. */
  private readonly pool: Buffer[] = [];
  private turn = 0;

  /**
   * Hands every response completed by `chunk` to `deliver` (its bytes with their size
   * field); keeps the rest for the next chunk.
   */
  push(chunk: Buffer, deliver: (frame: Buffer) => void): void {
    let at = 0;
    while (at < chunk.length) {
      if (this.frame === undefined) {
        // A whole response in the chunk: a view of it.
        if (this.headBytes === 0 && chunk.length - at >= 8) {
          const total = chunk.readInt32BE(at) + 4;
          const correlationId = chunk.readInt32BE(at + 4);
          if (chunk.length - at >= total) {
            this.fetches.delete(correlationId);
            deliver(chunk.subarray(at, at + total));
            at += total;
            continue;
          }
          this.start(total, correlationId);
          continue;
        }
        const take = Math.min(8 - this.headBytes, chunk.length - at);
        chunk.copy(this.head, this.headBytes, at, at + take);
        this.headBytes += take;
        at += take;
        if (this.headBytes < 8) return;
        this.headBytes = 0;
        this.start(this.head.readInt32BE(0) + 4, this.head.readInt32BE(4));
        this.head.copy(this.frame!, 0);
        this.filled = 8;
        if (this.filled === this.total) this.finish(deliver);
        continue;
      }
      const take = Math.min(this.total - this.filled, chunk.length - at);
      chunk.copy(this.frame, this.filled, at, at + take);
      this.filled += take;
      at += take;
      if (this.filled === this.total) this.finish(deliver);
    }
  }

  /** A response of `total` bytes begins: where it is gathered. */
  private start(total: number, correlationId: number): void {
    this.total = total;
    this.filled = 0;
    if (this.fetches.delete(correlationId)) {
      const i = this.turn;
      this.turn ^= 1;
      let b = this.pool[i];
      if (b === undefined || b.length < total) {
        // Room to grow into: a later response may be somewhat larger.
        b = Buffer.allocUnsafeSlow(Math.max(total, Math.ceil((b?.length ?? 0) * 1.5)));
        this.pool[i] = b;
      }
      this.frame = b.subarray(0, total);
    } else this.frame = Buffer.allocUnsafe(total);
  }

  private finish(deliver: (frame: Buffer) => void): void {
    const frame = this.frame!;
    this.frame = undefined;
    deliver(frame);
  }
}

const RECEIVER = Symbol('weir.receiver');

type Marked = net.Socket & { [RECEIVER]?: Receiver };

interface ConnectionLike {
  socket: Marked | null;
  authHandlers: unknown;
  requestQueue: { fulfillRequest(r: { size: number; correlationId: number; payload: Buffer }): void };
}

let installed: boolean | undefined;

/**
 * Puts the receiving above in kafkajs's Connection (for marked sockets only). True when
 * it is in place (now or before); false for a kafkajs it was not written for.
 */
export function installReceiver(): boolean {
  if (installed !== undefined) return installed;
  const root = kafkajsRoot();
  if (root === undefined) return (installed = false);
  type ProcessData = (this: ConnectionLike, data: Buffer) => unknown;
  const Connection = loadKafkajs<{ prototype: { processData: ProcessData } }>(root, 'src/network/connection.js');
  const original = Connection.prototype.processData;
  Connection.prototype.processData = function (this: ConnectionLike, data: Buffer): unknown {
    const r = this.socket?.[RECEIVER];
    // SASL's exchange (authHandlers) is kafkajs's own; marked sockets have none.
    if (r === undefined || this.authHandlers) return original.call(this, data);
    r.push(data, (frame) => this.requestQueue.fulfillRequest({ size: frame.length - 4, correlationId: frame.readInt32BE(4), payload: frame.subarray(8) }));
    return undefined;
  };
  return (installed = true);
}

/**
 * kafkajs's socket factory (network/socketFactory.js), its sockets marked to receive as
 * above; undefined where the receiving cannot be put in place. Not for SASL: its
 * exchange is left to kafkajs.
 */
export function receiveSocketFactory(): ISocketFactory | undefined {
  if (!installReceiver()) return undefined;
  return ({ host, port, ssl, onConnect }) => {
    const socket: Marked = ssl ? tls.connect({ host, port, ...(net.isIP(host) ? {} : { servername: host }), ...ssl }, onConnect) : net.connect({ host, port }, onConnect);
    socket.setKeepAlive(true, KEEP_ALIVE_DELAY);
    const r = new Receiver();
    socket[RECEIVER] = r;
    // Which requests are Fetches: kafkajs writes each request whole, its size first,
    // then its API key, version and correlation id.
    const write = socket.write.bind(socket) as (...a: unknown[]) => boolean;
    socket.write = ((chunk: unknown, ...rest: unknown[]): boolean => {
      if (Buffer.isBuffer(chunk) && chunk.length >= 12 && chunk.readInt32BE(0) === chunk.length - 4 && chunk.readInt16BE(4) === FETCH) r.fetches.add(chunk.readInt32BE(8));
      return write(chunk, ...rest);
    });
    return socket;
  };
}
