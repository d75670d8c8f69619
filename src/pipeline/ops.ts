// Session ops, encoded in the core's op layout (assembly/layout.ts, OP_*).
import { Layout } from '../core/wasm';

const { OP, OP_BYTES } = Layout;

export class OpWriter {
  private buf = new ArrayBuffer(OP_BYTES * 1024);
  private u32 = new Uint32Array(this.buf);
  private f64 = new Float64Array(this.buf);
  count = 0;

  bytes(): Uint8Array {
    return new Uint8Array(this.buf);
  }

  reset(): void {
    this.count = 0;
  }

  private put(op: number, a: number, b: number, x: number, y: number): void {
    if ((this.count + 1) * OP_BYTES > this.buf.byteLength) {
      const next = new ArrayBuffer(this.buf.byteLength * 2);
      new Uint8Array(next).set(new Uint8Array(this.buf));
      this.buf = next;
      this.u32 = new Uint32Array(next);
      this.f64 = new Float64Array(next);
    }
    const w = this.count * (OP_BYTES / 4), d = this.count * (OP_BYTES / 8);
    this.u32[w] = op;
    this.u32[w + 1] = a;
    this.u32[w + 2] = b;
    this.f64[d + 2] = x;
    this.f64[d + 3] = y;
    this.count++;
  }

  create(sid: number, key: number): void { this.put(OP.NEW, sid, key, 0, 0); }
  add(sid: number, eventIndex: number): void {
    // The hot op: only the words the core reads.
    if ((this.count + 1) * OP_BYTES > this.buf.byteLength) return this.put(OP.ADD, sid, eventIndex, 0, 0);
    const w = this.count * (OP_BYTES / 4);
    this.u32[w] = OP.ADD;
    this.u32[w + 1] = sid;
    this.u32[w + 2] = eventIndex;
    this.count++;
  }
  merge(dst: number, src: number): void { this.put(OP.MERGE, dst, src, 0, 0); }
  /** The window travels with the firing: the core needs it only then. */
  fire(sid: number, late: boolean, start: number, end: number): void { this.put(OP.FIRE, sid, late ? 1 : 0, start, end); }
  free(sid: number, start: number, end: number): void { this.put(OP.FREE, sid, 0, start, end); }
}
