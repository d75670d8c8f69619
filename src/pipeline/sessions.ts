// Session windows of one aggregation: merging in TypeScript, state in the core.
//
// Per key, the live sessions are disjoint, non-touching and kept in a list sorted by
// start. An event proposes [ts, ts + gap) and merges with every live session it
// intersects or touches (a contiguous run of the list); the merged window is judged
// against W. The decisions become ops (layout.ts, OP_*) that the core executes in
// order, so firings see exactly the state of their moment.
//
// Sessions live in typed arrays indexed by session id (no object per session or
// event). Timers are armed once per session and re-armed when they pop early (the
// session grew); a stale timer (its session merged away, its id reused) is harmless
// because firing and purging check the session's state, not the timer.
import { Layout } from '../core/wasm';
import { OpWriter } from './ops';
import { TimerHeap } from './timers';

const { EV } = Layout;
const LIVE = 1, FIRED = 2, ARMED = 4;
const NONE = -1;

export class SessionWindows {
  private cap = 1024;
  private start = new Float64Array(this.cap);
  private end = new Float64Array(this.cap);
  private keyOf = new Uint32Array(this.cap);
  private flags = new Uint8Array(this.cap);
  /** Next session of the same key, by start; NONE at the end. */
  private next = new Int32Array(this.cap);
  /** First session of each key id; NONE when the key has none. */
  private head = new Int32Array(1024).fill(NONE);
  private readonly freeSids: number[] = [];
  private used = 0;
  private live = 0;
  private readonly fireAt = new TimerHeap();
  private readonly purgeAt = new TimerHeap();

  constructor(
    private readonly gapMs: number,
    private readonly latenessMs: number,
  ) {}

  get open(): number {
    return this.live;
  }

  /** Fires every session with end <= w once, then purges those with end + lateness <= w. */
  advance(w: number, ops: OpWriter): void {
    const flags = this.flags;
    while (this.fireAt.size > 0 && this.fireAt.peekAt() <= w) {
      const sid = this.fireAt.pop();
      flags[sid]! &= ~ARMED;
      if ((flags[sid]! & (LIVE | FIRED)) !== LIVE) continue;
      if (this.end[sid]! > w) {
        flags[sid]! |= ARMED;
        this.fireAt.push(this.end[sid]!, sid);
      } else {
        flags[sid]! |= FIRED;
        ops.fire(sid, false, this.start[sid]!, this.end[sid]!);
      }
    }
    while (this.purgeAt.size > 0 && this.purgeAt.peekAt() <= w) {
      const sid = this.purgeAt.pop();
      if ((flags[sid]! & LIVE) === 0) continue;
      const due = this.end[sid]! + this.latenessMs;
      if (due > w) this.purgeAt.push(due, sid);
      else {
        ops.free(sid, this.start[sid]!, this.end[sid]!);
        this.unlink(sid);
        this.release(sid);
      }
    }
  }

  /** Runs events 0..n-1; writes ops and each event's EV_* status. Returns the count not OK. */
  process(n: number, ts: Float64Array, wm: Float64Array, val: Float64Array, key: Uint32Array, status: Uint8Array, ops: OpWriter): number {
    let notOk = 0;
    const gap = this.gapMs, lateness = this.latenessMs;
    for (let i = 0; i < n; i++) {
      const w = wm[i]!;
      if (w >= this.fireAt.peekAt() || w >= this.purgeAt.peekAt()) this.advance(w, ops);
      const t = ts[i]!;
      if (t !== t || val[i]! !== val[i]!) {
        status[i] = EV.INVALID;
        notOk++;
        continue;
      }
      const k = key[i]!;
      if (k >= this.head.length) this.growKeys(k);
      const start = this.start, end = this.end, next = this.next;
      // Skip the sessions that end before the proposal starts.
      let prev = NONE, cur = this.head[k]!;
      while (cur !== NONE && end[cur]! < t) {
        prev = cur;
        cur = next[cur]!;
      }
      let mStart = t, mEnd = t + gap, last = NONE;
      // The run that intersects or touches [t, t + gap).
      for (let s = cur; s !== NONE && start[s]! <= t + gap; s = next[s]!) {
        if (start[s]! < mStart) mStart = start[s]!;
        if (end[s]! > mEnd) mEnd = end[s]!;
        last = s;
      }
      if (w >= mEnd + lateness) {
        status[i] = EV.LATE;
        notOk++;
        continue;
      }
      let sid: number;
      if (last === NONE) {
        sid = this.alloc();
        this.start[sid] = mStart;
        this.end[sid] = mEnd;
        this.keyOf[sid] = k;
        this.flags[sid] = LIVE;
        this.next[sid] = cur;
        if (prev === NONE) this.head[k] = sid;
        else this.next[prev] = sid;
        ops.create(sid, k);
        this.purgeAt.push(mEnd + lateness, sid);
      } else {
        sid = cur;
        if (last !== cur) {
          const after = next[last]!;
          for (let o = next[cur]!; o !== after; ) {
            const on = next[o]!;
            ops.merge(sid, o);
            this.release(o);
            o = on;
          }
          next[sid] = after;
        }
        if (start[sid] !== mStart || end[sid] !== mEnd || last !== cur) {
          start[sid] = mStart;
          end[sid] = mEnd;
          // A merged or extended session is a new window: it fires when W reaches its end.
          this.flags[sid]! &= ~FIRED;
        }
      }
      ops.add(sid, i);
      status[i] = EV.OK;
      const f = this.flags[sid]!;
      if (w >= mEnd) {
        this.flags[sid] = f | FIRED;
        ops.fire(sid, true, mStart, mEnd); // late but allowed: fire again at once
      } else if ((f & (FIRED | ARMED)) === 0) {
        this.flags[sid] = f | ARMED;
        this.fireAt.push(mEnd, sid);
      }
    }
    return notOk;
  }

  private alloc(): number {
    if (this.freeSids.length > 0) {
      this.live++;
      return this.freeSids.pop()!;
    }
    if (this.used === this.cap) this.growSids();
    this.live++;
    return this.used++;
  }

  private release(sid: number): void {
    this.flags[sid] = 0;
    this.freeSids.push(sid);
    this.live--;
  }

  /** Removes sid from its key's list. */
  private unlink(sid: number): void {
    const k = this.keyOf[sid]!;
    let prev = NONE, cur = this.head[k]!;
    while (cur !== sid) {
      prev = cur;
      cur = this.next[cur]!;
    }
    if (prev === NONE) this.head[k] = this.next[sid]!;
    else this.next[prev] = this.next[sid]!;
  }

  private growSids(): void {
    const cap = this.cap * 2;
    const f64 = (a: Float64Array) => { const b = new Float64Array(cap); b.set(a); return b; };
    this.start = f64(this.start);
    this.end = f64(this.end);
    const k = new Uint32Array(cap); k.set(this.keyOf); this.keyOf = k;
    const fl = new Uint8Array(cap); fl.set(this.flags); this.flags = fl;
    const nx = new Int32Array(cap); nx.set(this.next); this.next = nx;
    this.cap = cap;
  }

  private growKeys(k: number): void {
    let len = this.head.length;
    while (len <= k) len *= 2;
    const h = new Int32Array(len).fill(NONE);
    h.set(this.head);
    this.head = h;
  }
}
