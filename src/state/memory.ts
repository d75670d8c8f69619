// The memory state backend: the same records and semantics as the durable backends
// (versioned.ts), kept in plain Maps. Nothing survives the process; within it, a
// partition's records survive close() and a later open() of the same backend object
// (which is how tests simulate a crash), so it can be compared with the others.
//
// Records of a partition:
//   versions: key -> (id -> value | null tombstone)   (values are copied in and out)
//   journal:  id  -> (key -> { prev, tombstone })
import type { PartitionStore, StateBackend } from './backend';
import { OpenStores, needsJournal, type Engine, type JournalEntry, type RecordCounts, type VersionRecord, type VersionRef, type VersionWrite } from './versioned';

export interface MemoryRecords {
  versions: Map<string, Map<number, Buffer | null>>;
  journal: Map<number, Map<string, JournalEntry>>;
}

export class MemoryEngine implements Engine {
  constructor(
    readonly where: string,
    private readonly r: MemoryRecords = { versions: new Map(), journal: new Map() },
  ) {}

  async write(id: number, writes: readonly VersionWrite[]): Promise<void> {
    let j = this.r.journal.get(id);
    if (j === undefined) this.r.journal.set(id, (j = new Map<string, JournalEntry>()));
    for (const w of writes) {
      let vs = this.r.versions.get(w.key);
      if (vs === undefined) this.r.versions.set(w.key, (vs = new Map<number, Buffer | null>()));
      vs.set(id, w.value === null ? null : Buffer.from(w.value));
      if (needsJournal(w)) j.set(w.key, { id, key: w.key, prev: w.prev, tombstone: w.value === null, raw: w.key });
    }
  }

  async read(key: string, id: number): Promise<Buffer | null | undefined> {
    const v = this.r.versions.get(key)?.get(id);
    return v === undefined || v === null ? v : Buffer.from(v);
  }

  async scan(each: (r: VersionRecord) => void): Promise<void> {
    for (const [key, vs] of [...this.r.versions]) for (const [id, v] of [...vs]) each({ key, id, value: v === null ? null : Buffer.from(v) });
  }

  async dropNewer(id: number, versions: readonly VersionRef[]): Promise<void> {
    this.dropVersions(versions);
    for (const jid of [...this.r.journal.keys()]) if (jid > id) this.r.journal.delete(jid);
  }

  async journal(upTo: number, limit: number): Promise<JournalEntry[]> {
    const out: JournalEntry[] = [];
    const ids = [...this.r.journal.keys()].filter((id) => id <= upTo).sort((a, b) => a - b);
    for (const id of ids) for (const e of this.r.journal.get(id)!.values()) if (out.length < limit) out.push(e);
    return out;
  }

  async dropJournal(entries: readonly JournalEntry[], versions: readonly VersionRef[]): Promise<void> {
    this.dropVersions(versions);
    for (const e of entries) {
      const j = this.r.journal.get(e.id);
      j?.delete(e.key);
      if (j?.size === 0) this.r.journal.delete(e.id);
    }
  }

  async clear(): Promise<void> {
    this.r.versions.clear();
    this.r.journal.clear();
  }

  async count(): Promise<RecordCounts> {
    let versions = 0;
    let journal = 0;
    for (const vs of this.r.versions.values()) versions += vs.size;
    for (const j of this.r.journal.values()) journal += j.size;
    return { versions, journal };
  }

  async close(): Promise<void> {}

  private dropVersions(versions: readonly VersionRef[]): void {
    for (const v of versions) {
      const vs = this.r.versions.get(v.key);
      vs?.delete(v.id);
      if (vs?.size === 0) this.r.versions.delete(v.key);
    }
  }
}

export class MemoryStateBackend implements StateBackend {
  readonly kind = 'memory' as const;
  private readonly data = new Map<number, MemoryRecords>();
  private readonly stores = new OpenStores();

  constructor(private readonly instance: string) {}

  async open(partition: number): Promise<PartitionStore> {
    this.stores.check(partition, () => `memory state of ${this.instance} partition ${partition}`);
    let r = this.data.get(partition);
    if (r === undefined) this.data.set(partition, (r = { versions: new Map(), journal: new Map() }));
    return this.stores.add(partition, new MemoryEngine(`memory state of ${this.instance} partition ${partition}`, r));
  }

  close(): Promise<void> {
    return this.stores.close();
  }
}
