// The timer queue of session windows (assembly/timers.ts) against a sorted list:
// whatever the order timers are set in, they come out earliest first, and its
// earliest time is right after every step.
import { test } from 'node:test';
import { strict as assert } from 'node:assert';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { rng } from './helpers/random';

interface TimerExports {
  timersNew(): number;
  timersPush(q: number, at: number, slot: number, serial: number): void;
  timersPop(q: number): void;
  timersEarliest(q: number): number;
  timersPoppedSlot(): number;
  timersPoppedSerial(): number;
}

function loadCore(): TimerExports {
  const module = new WebAssembly.Module(readFileSync(join(__dirname, '..', '..', 'build', 'core.wasm')));
  const instance = new WebAssembly.Instance(module, {
    env: {
      abort(_msg: number, _file: number, line: number, col: number): never {
        throw new Error(`wasm abort at ${line}:${col}`);
      },
    },
  });
  return instance.exports as unknown as TimerExports;
}

/**
 * Drives one queue as the sessions do: W only moves forward, every timer due at W
 * is taken out, new timers are set after W. `behind` of them are set before the
 * last one taken out instead, which the queue must take too.
 */
function run(seed: number, steps: number, times: (r: () => number, w: number) => number, behind: number): void {
  const core = loadCore();
  const r = rng(seed);
  const q = core.timersNew();
  const pending = new Map<number, number>(); // slot -> at
  const earliest = (): number => Math.min(Infinity, ...pending.values());
  let w = -1e6, slot = 0, taken = 0;
  for (let step = 0; step < steps; step++) {
    if (r() < 0.55) {
      const at = r() < behind ? w - r() * 1000 : times(r, w);
      core.timersPush(q, at, slot, slot ^ 0x5555);
      pending.set(slot++, at);
    } else {
      w += r() < 0.1 ? r() * 5000 : r() * 10;
      while (core.timersEarliest(q) <= w) {
        const want = earliest();
        core.timersPop(q);
        const got = core.timersPoppedSlot();
        assert.equal(core.timersPoppedSerial(), got ^ 0x5555);
        assert.ok(pending.has(got), `step ${step}: slot ${got} taken out twice`);
        assert.equal(pending.get(got), want, `step ${step}: took out a timer at ${pending.get(got)} before one at ${want}`);
        pending.delete(got);
        taken++;
      }
    }
    assert.equal(core.timersEarliest(q), earliest(), `step ${step}: earliest`);
  }
  assert.ok(taken > steps / 10, `only ${taken} timers taken out`);
}

test('timers come out earliest first: integer times within a gap after W, many equal', () => {
  for (let seed = 1; seed <= 4; seed++) run(seed, 20_000, (r, w) => Math.floor(w) + 1 + Math.floor(r() * 300), 0);
});

test('timers come out earliest first: times of any size and sign, fractions, zeros', () => {
  const at = (r: () => number, w: number): number => {
    const k = r();
    if (k < 0.1) return w + 1e-9; // just after W
    if (k < 0.2) return w + r() * 1e12; // far ahead
    if (k < 0.3) return Math.max(w, 0) === 0 && r() < 0.5 ? -0 : w + 1;
    return w + r() * 100;
  };
  for (let seed = 10; seed <= 13; seed++) run(seed, 20_000, at, 0);
});

test('timers set before the last one taken out still come out in order', () => {
  for (let seed = 20; seed <= 23; seed++) run(seed, 20_000, (r, w) => w + r() * 500, 0.05);
});
