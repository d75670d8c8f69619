/** A binary min-heap of (time, id): event-time timers. peekAt() is +Infinity when empty. */
export class TimerHeap {
  private at: number[] = [];
  private ids: number[] = [];

  get size(): number {
    return this.at.length;
  }

  peekAt(): number {
    return this.at.length > 0 ? this.at[0]! : Infinity;
  }

  push(time: number, id: number): void {
    const at = this.at, ids = this.ids;
    let i = at.length;
    at.push(time);
    ids.push(id);
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (at[p]! <= time) break;
      at[i] = at[p]!;
      ids[i] = ids[p]!;
      i = p;
    }
    at[i] = time;
    ids[i] = id;
  }

  /** Removes the earliest timer and returns its id. */
  pop(): number {
    const at = this.at, ids = this.ids;
    const top = ids[0]!;
    const lastAt = at.pop()!, lastId = ids.pop()!;
    const n = at.length;
    if (n > 0) {
      let i = 0;
      for (;;) {
        let c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && at[c + 1]! < at[c]!) c++;
        if (at[c]! >= lastAt) break;
        at[i] = at[c]!;
        ids[i] = ids[c]!;
        i = c;
      }
      at[i] = lastAt;
      ids[i] = lastId;
    }
    return top;
  }
}
