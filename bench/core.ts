// Benchmark 1: the per-event kernel, per window type: WASM core vs the same algorithm
// in plain TypeScript vs @datadog/sketches-js with JS accumulators.
import { Bench } from 'tinybench';
import { prepareWasm, runWasm, runTs, runSketchesJs, type Events, type Win } from './kernels';
import { median } from './stats';

/** Events like the generator's: ~1 ms apart with up to 5 s of disorder, log-normal latencies. */
export function makeEvents(n: number, keys: number, seed = 7): Events {
  let a = seed;
  const r = (): number => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = Math.imul(a ^ (a >>> 15), a | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const ev: Events = { n, ts: new Float64Array(n), val: new Float64Array(n), key: new Uint32Array(n) };
  const t0 = 1_704_110_400_000;
  for (let i = 0; i < n; i++) {
    ev.ts[i] = t0 + i - Math.floor(r() * r() * 5000);
    const g = Math.sqrt(-2 * Math.log(1 - r())) * Math.cos(2 * Math.PI * r());
    ev.val[i] = Math.round(Math.exp(6 + 0.8 * g) * 1000) / 1000;
    ev.key[i] = Math.floor(r() * keys);
  }
  return ev;
}

export interface KernelFigure {
  window: string;
  impl: string;
  nsPerEvent: number;
  rme: number;
  /** ns/event of each round (nsPerEvent is their median). */
  rounds: number[];
}

/**
 * Per window type, `rounds` tinybench runs of the three implementations, each task
 * `timeMs` long, the order rotated every round; each figure is the median of its
 * rounds' means (the JavaScript baselines swing most between runs: GC).
 */
export async function benchCore(n = 262_144, timeMs = 500, rounds = 3): Promise<KernelFigure[]> {
  const windows: Array<[string, Win, number]> = [
    ['tumbling 5m', { type: 'tumbling', sizeMs: 300_000 }, 18],
    ['sliding 2m/30s', { type: 'sliding', sizeMs: 120_000, slideMs: 30_000 }, 6],
    ['session 5m', { type: 'session', gapMs: 300_000 }, 500],
  ];
  const impls: Array<[string, (e: Events, w: Win) => number]> = [
    ['wasm core', runWasm],
    ['plain TypeScript', runTs],
    ['sketches-js + JS', runSketchesJs],
  ];
  const out: KernelFigure[] = [];
  for (const [wname, win, keys] of windows) {
    const ev = makeEvents(n, keys);
    // Same work from each: the number of windows fired must agree.
    const fired = impls.map(([, f]) => f(ev, win));
    if (new Set(fired).size !== 1) throw new Error(`${wname}: implementations disagree on windows fired: ${fired.join(', ')}`);
    // One core for every iteration, as a running processor keeps one: a run ends by
    // firing and purging every window (W = +inf), so the next starts from empty state
    // in memory that is already mapped and warm. (A fresh core per iteration would
    // time the kernel's first touch of its pages, which a processor pays once.)
    const wasm = prepareWasm(ev, win);
    const again = [wasm.run(), wasm.run()];
    if (again.some((f) => f !== fired[0])) throw new Error(`${wname}: a reused core fired ${again.join(', ')} windows, a fresh one ${fired[0]}`);
    const tasks: Array<[string, () => void]> = [['wasm core', () => void wasm.run()], ...impls.slice(1).map(([iname, f]): [string, () => void] => [iname, () => void f(ev, win)])];
    const means = new Map<string, number[]>(tasks.map(([name]) => [name, []]));
    const rmes = new Map<string, number[]>(tasks.map(([name]) => [name, []]));
    for (let r = 0; r < rounds; r++) {
      const bench = new Bench({ time: timeMs, warmupTime: 200 });
      for (let k = 0; k < tasks.length; k++) {
        const [name, fn] = tasks[(k + r) % tasks.length]!;
        bench.add(name, fn);
      }
      await bench.run();
      for (const t of bench.tasks) {
        const lat = (t.result as unknown as { latency: { mean: number; rme: number } }).latency;
        means.get(t.name)!.push((lat.mean * 1e6) / n);
        rmes.get(t.name)!.push(lat.rme);
      }
    }
    for (const [name] of tasks) out.push({ window: wname, impl: name, nsPerEvent: median(means.get(name)!), rme: median(rmes.get(name)!), rounds: means.get(name)! });
  }
  return out;
}

