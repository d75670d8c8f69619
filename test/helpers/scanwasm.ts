// Test harness for the WASM record scanner (assembly/scan.ts), the interning
// tables (assembly/intern.ts) and the ISO time parser (assembly/isotime.ts),
// plus compilePathSpec, the TypeScript half of the scanner's path-spec format.
//
// Loads the release build, build/core.wasm (npm run build), which exports the
// scanner, the interning tables and the ISO parser next to the window kernel.
import * as fs from 'node:fs';
import * as path from 'node:path';

import { FIELD_BYTES, KIND_MISSING, KIND_NUMBER, KIND_STRING, KIND_TRUE, KIND_FALSE, KIND_NULL, KIND_OBJECT, KIND_ARRAY, FLAG_NUM_EXACT, FLAG_STR_ESCAPED, STATUS_OK, STATUS_MALFORMED, STATUS_BLANK, compilePathSpec, wtf8, keySlotHash, SPEC_MAGIC, SPEC_VERSION, NO_PATH, NODE_NORMALIZE, CHILD_BYTES, NODE_BYTES } from '../../src/core/pathspec';
export { FIELD_BYTES, KIND_MISSING, KIND_NUMBER, KIND_STRING, KIND_TRUE, KIND_FALSE, KIND_NULL, KIND_OBJECT, KIND_ARRAY, FLAG_NUM_EXACT, FLAG_STR_ESCAPED, STATUS_OK, STATUS_MALFORMED, STATUS_BLANK, compilePathSpec, wtf8, keySlotHash, SPEC_MAGIC, SPEC_VERSION, NO_PATH, NODE_NORMALIZE, CHILD_BYTES, NODE_BYTES };
export interface ScanExports {
  readonly memory: WebAssembly.Memory;
  alloc(size: number): number;
  free(ptr: number): void;
  scanRecords(bytes: number, bounds: number, n: number, spec: number, out: number, status: number): void;
  internTableNew(): number;
  intern(table: number, ptr: number, len: number): number;
  internCount(table: number): number;
  internBytes(table: number, id: number): number;
  internLen(table: number, id: number): number;
  internFree(table: number): void;
  internRemove(table: number, id: number): number;
  internLive(table: number): number;
  internFresh(table: number): number;
  internFreshCount(table: number): number;
  internFreshReset(table: number): void;
  parseIsoMs(ptr: number, len: number): number;
}

/** The repository root: the nearest ancestor of this file holding assembly/scan.ts, else the cwd. */
function repoRoot(): string {
  for (let dir = __dirname; ; ) {
    if (fs.existsSync(path.join(dir, 'assembly', 'scan.ts'))) return dir;
    const up = path.dirname(dir);
    if (up === dir) return process.cwd();
    dir = up;
  }
}

export function scanWasmPath(): string {
  return path.join(repoRoot(), 'build', 'core.wasm');
}

export function loadScanWasm(file: string = scanWasmPath()): ScanExports {
  const module = new WebAssembly.Module(fs.readFileSync(file));
  const instance = new WebAssembly.Instance(module, {
    env: {
      abort(_msg: number, _file: number, line: number, col: number): never {
        throw new Error(`wasm abort at ${line}:${col}`);
      },
    },
  });
  return instance.exports as unknown as ScanExports;
}

// ─── Path spec ────────────────────────────────────────────────────────────────

export interface Field {
  kind: number;
  flags: number;
  start: number;
  end: number;
  num: number;
}

export interface ScanResult {
  /** All records joined by '\n', the text the offsets point into. */
  bytes: Uint8Array;
  status: Uint8Array;
  /** fields[i][p]: record i, path p. */
  fields: Field[][];
}

/** Copies `data` into fresh heap memory; returns its address. */
export function writeBytes(wasm: ScanExports, data: Uint8Array): number {
  const ptr = wasm.alloc(Math.max(1, data.length));
  new Uint8Array(wasm.memory.buffer).set(data, ptr);
  return ptr;
}

/** A compiled path spec living in WASM memory. */
export class RecordScanner {
  readonly spec: number;
  readonly pathCount: number;

  constructor(private readonly wasm: ScanExports, paths: string[]) {
    this.spec = writeBytes(wasm, compilePathSpec(paths));
    this.pathCount = paths.length;
  }

  /** Scans records joined by '\n' in one call (no newline inside a record). */
  scan(records: Uint8Array[]): ScanResult {
    const n = records.length;
    const P = this.pathCount;
    let total = 0;
    for (const r of records) total += r.length + 1;
    const bytes = new Uint8Array(total);
    const bounds = new Uint32Array(2 * n);
    let at = 0;
    records.forEach((r, i) => {
      bytes.set(r, at);
      bounds[2 * i] = at;
      bounds[2 * i + 1] = at + r.length;
      at += r.length;
      bytes[at++] = 0x0a;
    });
    const w = this.wasm;
    const bytesPtr = writeBytes(w, bytes);
    const boundsPtr = writeBytes(w, new Uint8Array(bounds.buffer));
    const outPtr = w.alloc(Math.max(1, n * P * FIELD_BYTES));
    const statusPtr = w.alloc(Math.max(1, n));
    w.scanRecords(bytesPtr, boundsPtr, n, this.spec, outPtr, statusPtr);
    // Memory may have grown during the call: fresh views only.
    const buf = w.memory.buffer;
    const status = new Uint8Array(buf, statusPtr, n).slice();
    const dv = new DataView(buf);
    const fields: Field[][] = [];
    for (let i = 0; i < n; i++) {
      const row: Field[] = [];
      for (let p = 0; p < P; p++) {
        const f = outPtr + (i * P + p) * FIELD_BYTES;
        row.push({
          kind: dv.getUint8(f),
          flags: dv.getUint8(f + 1),
          start: dv.getUint32(f + 4, true),
          end: dv.getUint32(f + 8, true),
          num: dv.getFloat64(f + 16, true),
        });
      }
      fields.push(row);
    }
    w.free(bytesPtr);
    w.free(boundsPtr);
    w.free(outPtr);
    w.free(statusPtr);
    return { bytes, status, fields };
  }
}

const decoder = (b: Uint8Array): string => Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('utf8');

/** The JS value of a field, as JSON.parse would give it; undefined for MISSING. */
export function fieldValue(bytes: Uint8Array, f: Field): unknown {
  const text = (): string => decoder(bytes.subarray(f.start, f.end));
  switch (f.kind) {
    case KIND_MISSING:
      return undefined;
    case KIND_NUMBER:
      return f.flags & FLAG_NUM_EXACT ? f.num : Number(text());
    case KIND_TRUE:
      return true;
    case KIND_FALSE:
      return false;
    case KIND_NULL:
      return null;
    default: // STRING, OBJECT, ARRAY
      return JSON.parse(text()) as unknown;
  }
}

/** Reads `len` bytes at `ptr` (fresh view). */
export function readBytes(wasm: ScanExports, ptr: number, len: number): Uint8Array {
  return new Uint8Array(wasm.memory.buffer, ptr, len).slice();
}
