// Results as JSON lines, per result: the object path (a WindowResult per result, as
// WindowOperator.collect() builds it, then JSON.stringify + '\n' per result, as
// JsonLinesSink.write() does, then the UTF-8 bytes the stream writes) against
// ResultEncoder (src/pipeline/results.ts): the same bytes from the core's result
// records. And per number: the WebAssembly formatter against String(x).
import { readFileSync } from 'node:fs';
import { WasmCore, Layout } from '../src/core/wasm';
import { KeyRegistry } from '../src/pipeline/keys';
import { ResultEncoder, encodeDeadLetters, windowResult } from '../src/pipeline/results';
import type { DeadLetter, WindowResult } from '../src/pipeline/types';
import { collectGarbage, median, rng } from './stats';


const { RES, RES_BYTES, RES_LATE, ENCODE } = Layout;

export interface EncodeFigures {
  results: number;
  keys: number;
  /** ns per result, median of the rounds. */
  objectPath: number;
  encoder: number;
  /** ns per number, median of the rounds, by kind of number. */
  numbers: Array<{ kind: string; wasm: number; string: number }>;
  /** ns per dead letter. */
  deadLetters: { stringify: number; encoder: number };
}

const BATCH = 1024; // results per operator step
const STEPS = 64;

const bits = new Float64Array(1);
const word = new BigUint64Array(bits.buffer);

/**
 * The quantile the core's sketch gives for values near `x` (positive, normal): the
 * midpoint of x's bucket, the top 6 mantissa bits and the exponent of x, then a 1
 * (assembly/sketch.ts, bucketValue). Such numbers have at most 7 significant bits:
 * integers from 128 up, short binary fractions below.
 */
function bucketMidpoint(x: number): number {
  bits[0] = x;
  word[0] = ((word[0]! >> 46n) << 46n) | (1n << 45n);
  return bits[0];
}

/**
 * Realistic result records: per-user sessions and per-model windows, latencies with
 * one decimal (812.4), their sums as the core gives them (compensated: the exact sum,
 * rounded once, so one decimal too), means and standard deviations (17 significant
 * digits), the sketch's quantiles (bucket midpoints), epoch-ms window bounds.
 */
export function fillResults(core: WasmCore, regs: KeyRegistry[], steps: number, rand: () => number): number[] {
  const bases: number[] = [];
  const models = ['gpt-4o', 'claude-sonnet', 'llama-3-70b', 'claude-opus', 'gemini-pro'];
  const regions = ['us', 'eu', 'ap'];
  for (let s = 0; s < steps; s++) {
    const base = core.alloc(BATCH * RES_BYTES);
    bases.push(base);
    for (let k = 0; k < BATCH; k++) {
      const a = k % 4 === 0 ? 1 : 0;
      const id = a === 0 ? regs[0]!.idOf([`u-${Math.floor(rand() * 20_000)}`]) : regs[1]!.idOf([models[Math.floor(rand() * 5)]!, regions[Math.floor(rand() * 3)]!]);
      const count = 1 + Math.floor(rand() * 40);
      let tenths = 0, min = Infinity, max = -Infinity, sq = 0;
      for (let j = 0; j < count; j++) {
        const t = Math.round(rand() * 40_000);
        const v = t / 10;
        tenths += t;
        sq += v * v;
        min = Math.min(min, v);
        max = Math.max(max, v);
      }
      // A naive running sum drifts off the decimal (17 digits, as 0.1 + 0.2 has); the core's does not.
      const sum = tenths / 10;
      const avg = sum / count;
      const stddev = Math.sqrt(Math.max(0, sq / count - avg * avg));
      const q = bucketMidpoint;
      // Tumbling windows of one firing share their bounds; sessions do not.
      const start = 1_767_225_600_000 + s * 300_000 + (a === 0 ? Math.floor(rand() * 1000) * 1000 : 0);
      const u32 = core.words(), f64 = core.doubles();
      const w = (base >>> 2) + k * (RES_BYTES / 4), d = (base >>> 3) + k * (RES_BYTES / 8);
      u32[w + RES.AGG / 4] = a;
      u32[w + RES.KEY / 4] = id;
      u32[w + RES.FLAGS / 4] = rand() < 0.01 ? RES_LATE : 0;
      f64[d + RES.START / 8] = start;
      f64[d + RES.END / 8] = start + (a === 0 ? 120_000 + Math.floor(rand() * 600_000) : 300_000);
      f64[d + RES.COUNT / 8] = count;
      f64[d + RES.SUM / 8] = sum;
      f64[d + RES.AVG / 8] = avg;
      f64[d + RES.MIN / 8] = min;
      f64[d + RES.MAX / 8] = max;
      f64[d + RES.P50 / 8] = q(min + (max - min) * 0.5);
      f64[d + RES.P95 / 8] = q(min + (max - min) * 0.95);
      f64[d + RES.P99 / 8] = q(min + (max - min) * 0.99);
      f64[d + RES.STDDEV / 8] = stddev;
    }
  }
  return bases;
}

/** Today's path: WindowOperator.collect()'s objects, JsonLinesSink.write()'s text, the stream's bytes. */
function objectPath(core: WasmCore, names: readonly string[], regs: KeyRegistry[], base: number, n: number, nowMs: number): Buffer {
  const u32 = core.words(), f = core.doubles();
  const results: WindowResult[] = [];
  for (let k = 0; k < n; k++) {
    const b = base + k * RES_BYTES;
    const w = b >>> 2, d = b >>> 3;
    const a = u32[w + RES.AGG / 4]!;
    const reg = regs[a]!;
    const keyId = u32[w + RES.KEY / 4]!;
    results.push(windowResult(names[a]!, reg.keys[keyId]!, reg.groupOf(keyId), f, d, (u32[w + RES.FLAGS / 4]! & RES_LATE) !== 0, nowMs));
  }
  let text = '';
  for (const r of results) text += JSON.stringify(r) + '\n';
  return Buffer.from(text, 'utf8');
}

/**
 * CPU time per item, ns, of the thread that runs `f` (Linux: /proc/thread-self/schedstat;
 * elsewhere every thread's): on a shared machine, wall time also counts the other
 * processes, and the process's CPU time counts the collector's threads sweeping what
 * the previous round left (the object path leaves much).
 */
function nsPer(items: number, f: () => void): number {
  collectGarbage();
  const t = threadCpuNs();
  if (t !== undefined) {
    f();
    return (threadCpuNs()! - t) / items;
  }
  const c = process.cpuUsage();
  f();
  const d = process.cpuUsage(c);
  return ((d.user + d.system) * 1000) / items;
}

/** For a sleep of a few microseconds (Atomics.wait). */
const nap = new Int32Array(new SharedArrayBuffer(4));

/**
 * This thread's CPU time, ns, where the kernel tells it. The kernel adds a running
 * thread's time to schedstat only at a scheduler tick (4 ms here) or when the thread
 * stops running: read as it is, a round of ~8 ms was off by up to half. A sleep of
 * 20 µs first stops it, so the figure is its time up to now.
 */
function threadCpuNs(): number | undefined {
  try {
    Atomics.wait(nap, 0, 0, 0.02);
    return Number(readFileSync('/proc/thread-self/schedstat', 'latin1').split(' ')[0]);
  } catch {
    return undefined;
  }
}

export function benchEncode(rounds = 5): EncodeFigures {
  const rand = rng(42);
  const core = new WasmCore(16, [{ kind: 0, sizeMs: 1000, slideMs: 1000, latenessMs: 0 }]);
  const names = ['user_sessions', 'latency_metrics'];
  const regs = [new KeyRegistry(['metadata.user_id']), new KeyRegistry(['data.model', 'data.region'])];
  const bases = fillResults(core, regs, STEPS, rand);
  const enc = new ResultEncoder(core, names, regs);
  const nowMs = 1_767_226_000_000;
  // Same bytes, or the figures mean nothing.
  for (const base of bases) {
    if (!enc.encode({ count: BATCH, base }, nowMs).json.equals(objectPath(core, names, regs, base, BATCH, nowMs))) throw new Error('bench encode: the encoder and JSON.stringify differ');
  }
  const total = BATCH * bases.length;
  const obj: number[] = [], ours: number[] = [];
  let sink = 0;
  // Two rounds each to warm up (optimized code, the encoder's key cache), not counted.
  for (let r = -2; r < rounds; r++) {
    const o = nsPer(total, () => bases.forEach((b) => (sink += objectPath(core, names, regs, b, BATCH, nowMs).length)));
    // Each batch released once read, as the sinks' queues release them once written.
    const e = nsPer(total, () =>
      bases.forEach((b) => {
        const batch = enc.encode({ count: BATCH, base: b }, nowMs);
        sink += batch.json.length;
        batch.release();
      }),
    );
    if (r >= 0) {
      obj.push(o);
      ours.push(e);
    }
  }

  // Numbers, one kind at a time.
  const N = 1 << 16;
  const src = core.alloc(N * 8), out = core.alloc(N * ENCODE.NUMBER_MAX + ENCODE.SLACK), bnd = core.alloc(N * 4);
  const kinds: Array<[string, () => number]> = [
    ['latency, one decimal (812.4)', () => Math.round(rand() * 40_000) / 10],
    ['mean of such (17 digits)', () => (Math.round(rand() * 40_000) / 10 + Math.round(rand() * 40_000) / 10) / 3],
    ['epoch ms integer', () => 1_767_225_600_000 + Math.floor(rand() * 1e9)],
    ['any bit pattern', () => new Float64Array(new Uint32Array([(rand() * 2 ** 32) >>> 0, (rand() * 2 ** 32) >>> 0]).buffer)[0]!],
  ];
  const numbers = kinds.map(([kind, gen]) => {
    const xs = Float64Array.from({ length: N }, gen);
    core.doubles().set(xs, src >>> 3);
    const w: number[] = [], s: number[] = [];
    for (let r = 0; r < rounds; r++) {
      w.push(nsPer(N * 8, () => { for (let i = 0; i < 8; i++) sink += core.formatDoubles(src, N, out, bnd); }));
      s.push(nsPer(N, () => { for (let i = 0; i < N; i++) sink += String(xs[i]).length; }));
    }
    return { kind, wasm: median(w), string: median(s) };
  });

  // Dead letters: a late event each.
  const line = '{"id":"e-2","timestamp":"2025-12-31T23:49:57.966Z","data":{"model":"llama-3-70b","region":"eu","latency_ms":964.532,"tokens":363,"cost":0.00029},"metadata":{"user_id":"u-41","source":"observatory"}}';
  const dls: DeadLetter[] = Array.from({ length: 4096 }, (_, i) => ({
    original_event: line,
    reason: 'late',
    error: 'event time 2025-12-31T23:49:57.966Z is past the allowed lateness (60000 ms) of every window it belongs to; watermark 2026-01-01T00:05:00.000Z',
    aggregation: 'latency_metrics',
    retry_count: 0,
    timestamp: '2026-01-01T00:05:01.000Z',
    processor_instance: 'weir-0',
    partition: 0,
    offset: String(1000 + i),
  }));
  const dj: number[] = [], de: number[] = [];
  for (let r = 0; r < rounds; r++) {
    dj.push(nsPer(dls.length, () => { let t = ''; for (const d of dls) t += JSON.stringify(d) + '\n'; sink += Buffer.from(t).length; }));
    de.push(nsPer(dls.length, () => (sink += encodeDeadLetters(dls).json.length)));
  }
  if (sink === 0) throw new Error('unreachable');
  return { results: total, keys: regs[0]!.size + regs[1]!.size, objectPath: median(obj), encoder: median(ours), numbers, deadLetters: { stringify: median(dj), encoder: median(de) } };
}

export function printEncode(e: EncodeFigures): void {
  console.log(`${e.results.toLocaleString('en-US')} results in steps of ${BATCH}, ${e.keys.toLocaleString('en-US')} keys; the same bytes both ways (checked)\n`);
  console.log('| path | ns per result |');
  console.log('| --- | --- |');
  console.log(`| WindowResult + JSON.stringify + '\\n' + UTF-8 | ${e.objectPath.toFixed(0)} |`);
  console.log(`| ResultEncoder (WASM) | ${e.encoder.toFixed(0)} |`);
  console.log(`\nobject path / encoder: ${(e.objectPath / e.encoder).toFixed(1)}x\n`);
  console.log('| number | WASM formatter, ns | String(x), ns |');
  console.log('| --- | --- | --- |');
  for (const n of e.numbers) console.log(`| ${n.kind} | ${n.wasm.toFixed(1)} | ${n.string.toFixed(1)} |`);
  console.log(`\ndead letters, ns each: JSON.stringify + '\\n' ${e.deadLetters.stringify.toFixed(0)}, encodeDeadLetters ${e.deadLetters.encoder.toFixed(0)}\n`);
}
