// The core's watermark pass (computeWatermarks) against a plain reference: W before
// each event is the running max of valid timestamps minus the out-of-orderness bound,
// capped by the other partitions' watermark and never below the floor.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { WasmCore, Layout } from '../src/core/wasm';
import { rng } from './helpers/random';

function reference(ts: Float64Array, n: number, maxBefore: number, ooo: number, otherMin: number, floorW: number): { wm: number[]; max: number } {
  const wm: number[] = [];
  let m = maxBefore;
  for (let i = 0; i < n; i++) {
    wm.push(Math.max(Math.min(m - ooo, otherMin), floorW));
    if (ts[i]! > m) m = ts[i]!;
  }
  return { wm, max: m };
}

test('watermarks == reference: any batch length, invalid timestamps, the cap of other partitions and the floor', () => {
  const r = rng(4242);
  const cap = 1000;
  const core = new WasmCore(cap, [{ kind: Layout.WIN.tumbling, sizeMs: 1000, slideMs: 1000, latenessMs: 0 }]);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(r() * xs.length)]!;
  for (let round = 0; round < 400; round++) {
    const n = pick([0, 1, 3, 4, 5, 7, 8, 63, 64, 65, 999, 1000]);
    const base = pick([0, 1e12, -5e5]);
    const ts = core.ts();
    for (let i = 0; i < n; i++) ts[i] = r() < 0.05 ? NaN : base + i * 10 - Math.floor(r() * r() * 2000);
    const ooo = pick([0, 100, 1500]);
    const maxBefore = pick([-Infinity, base - 500, base + 3000]);
    // The cap: none, one the batch passes part way through, one below the start.
    const otherMin = pick([Infinity, base + n * 5, base + n * 10 - 2000, base - 10_000]);
    const floorW = pick([-Infinity, base - 2000, base + n * 3, base + 1e6]);
    const want = reference(ts, n, maxBefore, ooo, otherMin, floorW);
    const gotMax = core.computeWatermarks(n, maxBefore, ooo, otherMin, floorW);
    const wm = core.wm();
    const label = `n=${n} maxBefore=${maxBefore} ooo=${ooo} otherMin=${otherMin} floorW=${floorW}`;
    assert.equal(gotMax, want.max, `${label}: running max`);
    for (let i = 0; i < n; i++) assert.equal(wm[i], want.wm[i], `${label}: W before event ${i}`);
  }
});
