// Group keys: `field=value` pairs joined with ':' (docs/semantics.md, Results), interned to dense ids.
import { jsonText } from './paths';

/** The key's field name: the last segment of its path (`data.model` gives `model`). */
export function fieldName(path: string): string {
  const dot = path.lastIndexOf('.');
  return dot < 0 ? path : path.slice(dot + 1);
}

/** A group-by value as a string: strings as they are, missing as "null", JSON for objects. */
export function groupValueString(v: unknown): string {
  if (v === undefined || v === null) return 'null';
  if (typeof v === 'string') return v;
  if (typeof v === 'object') return jsonText(v);
  if (typeof v === 'number' || typeof v === 'boolean') return String(v);
  return 'null'; // not a JSON value
}

/** A key's group values as {field: value}, in group-by order (a repeated field name: the last value). */
export function groupObject(fields: readonly string[], values: readonly string[]): Record<string, string> {
  const group: Record<string, string> = {};
  for (let j = 0; j < fields.length; j++) group[fields[j]!] = values[j]!;
  return group;
}

const KEY_SPECIAL = /[%:=]/;
const KEY_SPECIAL_ALL = /[%:=]/g;
const KEY_ESCAPES: Record<string, string> = { '%': '%25', ':': '%3A', '=': '%3D' };

/**
 * A group value as it appears in `key`: `%`, `:` and `=` percent-encoded, so that
 * values holding the separators cannot make two groups share a key.
 */
export function keyValue(value: string): string {
  return KEY_SPECIAL.test(value) ? value.replace(KEY_SPECIAL_ALL, (c) => KEY_ESCAPES[c]!) : value;
}

/**
 * Key strings of one aggregation and their dense ids. An id is released once its
 * key has no open window (the operator finds those), and handed out again to a
 * later new key: the ids, and every array indexed by them, follow the keys with
 * open windows, not every key ever seen.
 */
export class KeyRegistry {
  /**
   * Key string to id, made when first needed (indexed()): while every key came from
   * idOf() as `unique`, no two can share a key string, and a run over many new keys
   * (sessions per user) skips a lookup and an insert per key.
   */
  private ids: Map<string, number> | undefined;
  private count = 0;
  /** By id; undefined: released (on the free list). */
  readonly keys: Array<string | undefined> = [];
  /**
   * The group values of each key, by id, in group-by order: a window's state carries
   * them (two group-by paths may share a field name, so a group object cannot give
   * them back).
   */
  readonly values: Array<string[] | undefined> = [];
  /** The {field: value} objects groupOf() made, by id. */
  private readonly groups: Array<Record<string, string> | undefined> = [];
  readonly fields: string[];
  /** Ids below capacity not in use, to be handed out again. */
  private readonly free = new Set<number>();
  /** Called with each id released, before it can name another key. */
  private readonly releaseHooks: Array<(id: number) => void> = [];
  /** Called with each id registered, once its key and values are set. */
  private readonly registerHooks: Array<(id: number) => void> = [];

  constructor(groupBy: readonly string[]) {
    this.fields = groupBy.map(fieldName);
  }

  /**
   * Id of the key made of these value strings (one per group-by field, in order).
   * A new key gets `preferred` when that id is not in use (the scan decoder's raw
   * id: then it needs no remapping), else a released id or the next one. `unique`:
   * the caller knows that no key registered as unique has these values unless it is
   * this very one (the scan decoder: a raw key spelled only one way, interned once).
   * `owned`: the caller gives `values` up, and a new key keeps that array, not a copy.
   */
  idOf(values: readonly string[], preferred?: number, unique = false, owned = false): number {
    const fields = this.fields;
    let key = values.length === 0 ? '' : fields[0] + '=' + keyValue(values[0]!);
    for (let j = 1; j < values.length; j++) key += ':' + fields[j] + '=' + keyValue(values[j]!);
    if (unique && this.ids === undefined) return this.register(key, owned ? (values as string[]) : values.slice(), preferred);
    return this.indexed().get(key) ?? this.register(key, owned ? (values as string[]) : values.slice(), preferred);
  }

  /** The id of key string `key`, if it is registered. */
  known(key: string): number | undefined {
    return this.indexed().get(key);
  }

  /**
   * Registers `key`, made of `values` (this.spells(key, values)), which must not be
   * registered yet; its id. The registry keeps `values` as they are.
   */
  add(key: string, values: string[], preferred?: number): number {
    this.indexed();
    return this.register(key, values, preferred);
  }

  private register(key: string, values: string[], preferred: number | undefined): number {
    const id = this.newId(preferred);
    this.ids?.set(key, id);
    this.keys[id] = key;
    this.values[id] = values;
    this.count++;
    for (const hook of this.registerHooks) hook(id);
    return id;
  }

  /** The key-string index, made from the registered keys the first time it is asked for. */
  private indexed(): Map<string, number> {
    if (this.ids === undefined) {
      const ids = new Map<string, number>();
      this.keys.forEach((k, id) => k !== undefined && ids.set(k, id));
      this.ids = ids;
    }
    return this.ids;
  }

  /** Whether `key` is the key string of these group values (what idOf() would build), without building it. */
  spells(key: string, values: readonly string[]): boolean {
    const fields = this.fields;
    if (values.length !== fields.length) return false;
    let pos = 0;
    for (let j = 0; j < fields.length; j++) {
      if (j > 0 && key.charCodeAt(pos++) !== 0x3a) return false;
      const f = fields[j]!;
      if (!key.startsWith(f, pos) || key.charCodeAt(pos + f.length) !== 0x3d) return false;
      pos += f.length + 1;
      const v = keyValue(values[j]!);
      if (!key.startsWith(v, pos)) return false;
      pos += v.length;
    }
    return pos === key.length;
  }

  /** The key of `id` as {field: value}, made once per key when first asked for. */
  groupOf(id: number): Record<string, string> {
    return (this.groups[id] ??= groupObject(this.fields, this.values[id]!));
  }

  /** Forgets the key of `id` (no window of it is open); the id may be handed out again. */
  release(id: number): void {
    const key = this.keys[id];
    if (key === undefined) return;
    this.ids?.delete(key);
    this.count--;
    this.keys[id] = undefined;
    this.values[id] = undefined;
    this.groups[id] = undefined;
    this.free.add(id);
    for (const hook of this.releaseHooks) hook(id);
  }

  /** Has `hook` called with each id released from now on (what others keep per id goes with it). */
  onRelease(hook: (id: number) => void): void {
    this.releaseHooks.push(hook);
  }

  /**
   * Has `hook` called with each id registered from now on, while the key's strings,
   * just made, are still in the cache (what others derive from them costs least then).
   */
  onRegister(hook: (id: number) => void): void {
    this.registerHooks.push(hook);
  }

  /** Whether `id` names a key now. */
  has(id: number): boolean {
    return this.keys[id] !== undefined;
  }

  /** Keys registered now. */
  get size(): number {
    return this.count;
  }

  /** Every id in use is below this. */
  get capacity(): number {
    return this.keys.length;
  }

  private newId(preferred: number | undefined): number {
    if (preferred !== undefined && this.keys[preferred] === undefined) {
      // Beyond the end, the ids in between become free ones.
      for (let id = this.keys.length; id < preferred; id++) {
        this.keys[id] = undefined;
        this.values[id] = undefined;
        this.groups[id] = undefined;
        this.free.add(id);
      }
      if (this.free.size > 0) this.free.delete(preferred);
      return preferred;
    }
    if (this.free.size > 0)
      for (const id of this.free) {
        this.free.delete(id);
        return id;
      }
    return this.keys.length;
  }
}
