// Group keys: `field=value` pairs joined with ':' (SEMANTICS.md, Results), interned to dense ids.
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

export class KeyRegistry {
  private readonly ids = new Map<string, number>();
  readonly keys: string[] = [];
  readonly groups: Record<string, string>[] = [];
  readonly fields: string[];

  constructor(groupBy: readonly string[]) {
    this.fields = groupBy.map(fieldName);
  }

  /** Id of the key made of these value strings (one per group-by field, in order). */
  idOf(values: readonly string[]): number {
    let key = '';
    for (let j = 0; j < values.length; j++) key += (j ? ':' : '') + this.fields[j] + '=' + keyValue(values[j]!);
    let id = this.ids.get(key);
    if (id === undefined) {
      id = this.keys.length;
      this.ids.set(key, id);
      this.keys.push(key);
      const group: Record<string, string> = {};
      this.fields.forEach((f, j) => (group[f] = values[j]!));
      this.groups.push(group);
    }
    return id;
  }

  get size(): number {
    return this.keys.length;
  }
}
