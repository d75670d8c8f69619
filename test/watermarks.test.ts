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

// ─── Idleness and idleAdvance (src/time/watermarks.ts), with an injected wall clock ───

import { Watermarks } from '../src/time/watermarks';

test('Watermarks: an idle partition stops holding W back; when all are idle W stalls unless idleAdvance', () => {
  for (const idleAdvance of [false, true]) {
    const w = new Watermarks(1000, 5000, { idleAdvance });
    let now = 1_000_000;
    w.register(0, now);
    w.register(1, now);
    assert.equal(w.refresh(now), -Infinity, 'no event yet');
    assert.equal(w.update(0, 50_000, now), -Infinity, 'partition 1 (assigned, silent) holds W back');
    now += 5000;
    // Partition 1 idles first (assigned earlier, never sent); partition 0 sent just now.
    w.update(0, 60_000, now);
    assert.equal(w.current, 59_000, 'idle partition 1 no longer holds W back');
    assert.deepEqual(w.status(now).map((p) => [p.partition, p.idle, p.idleSinceMs]), [[0, false, undefined], [1, true, 1_005_000]]);
    assert.equal(w.allIdle(now), false);
    now += 4999;
    assert.equal(w.refresh(now), 59_000);
    now += 1;
    assert.equal(w.allIdle(now), true);
    // Every partition idle: W stalls (Flink's withIdleness) or follows the wall clock.
    assert.equal(w.refresh(now), idleAdvance ? now - 1000 : 59_000, `idleAdvance=${idleAdvance}`);
    now += 30_000;
    assert.equal(w.refresh(now), idleAdvance ? now - 1000 : 59_000, 'keeps following the wall clock while all stay idle');
    const advanced = w.current;
    // A partition sends again, with old event time: W never goes back.
    w.update(1, 70_000, now);
    assert.equal(w.current, idleAdvance ? advanced : 69_000, 'W is monotonic; the active partition moves it');
    assert.equal(w.allIdle(now), false);
    now += 60_000;
    // Active again: W follows events, not the clock (partition 0 is idle, 1 active).
    w.update(1, 80_000, now);
    assert.equal(w.current, idleAdvance ? advanced : 79_000);
  }
});

test('Watermarks: no partition at all is not "every partition idle", and a partition without events has no watermark', () => {
  const w = new Watermarks(0, 10, { idleAdvance: true });
  assert.equal(w.refresh(1e12), -Infinity);
  assert.equal(w.allIdle(1e12), false);
  w.register(3, 0);
  const [p] = w.status(5);
  assert.equal(p!.watermarkMs, -Infinity);
  assert.equal(p!.idle, false);
  assert.equal(w.refresh(1e12), 1e12, 'registered and idle: W follows the clock');
});
