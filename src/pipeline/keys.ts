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
    for (let j = 0; j < values.length; j++) key += (j ? ':' : '') + this.fields[j] + '=' + values[j];
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
