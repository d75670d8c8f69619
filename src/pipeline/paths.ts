// Dotted field paths over parsed JSON: objects only, own properties only.

export type Path = readonly string[];

export function compilePath(path: string): Path {
  return path.split('.');
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** The value at `path`, or undefined when any step is missing or not an object. */
export function getPath(obj: unknown, path: Path): unknown {
  let cur: unknown = obj;
  for (const seg of path) {
    if (!isPlainObject(cur) || !Object.prototype.hasOwnProperty.call(cur, seg)) return undefined;
    cur = cur[seg];
  }
  return cur;
}

export { isPlainObject };

/**
 * `JSON.stringify(v)` for a value `JSON.parse` gave, with the same text, at any depth:
 * `JSON.stringify` recurses once per nesting level and throws "Maximum call stack
 * size exceeded" a few thousand levels down, and one such record (a 10 KB line) must
 * not end the run. Values that deep take the slower walk with an explicit stack.
 */
export function jsonText(v: unknown): string {
  try {
    return JSON.stringify(v) ?? 'null';
  } catch (e) {
    if (!(e instanceof RangeError)) throw e;
    return jsonTextDeep(v);
  }
}

/** Strings JSON.stringify writes as they are, between quotes. */
const PLAIN = /^[^"\\\u0000-\u001f\ud800-\udfff]*$/;

function stringText(s: string): string {
  return PLAIN.test(s) ? `"${s}"` : JSON.stringify(s);
}

/** A leaf's JSON text, as JSON.stringify writes it. */
function leafText(x: unknown): string {
  if (typeof x === 'number') return Number.isFinite(x) ? String(x) : 'null';
  if (typeof x === 'string') return stringText(x);
  if (typeof x === 'boolean') return x ? 'true' : 'false';
  return 'null';
}

/** jsonText without recursion: one frame per open container, in parallel arrays. */
function jsonTextDeep(v: unknown): string {
  if (typeof v !== 'object' || v === null) return leafText(v);
  let out = '';
  // Per open container: the array, or the object and its keys; and the next index.
  const arrs: Array<readonly unknown[] | undefined> = [];
  const objs: Array<Record<string, unknown> | undefined> = [];
  const keys: Array<string[] | undefined> = [];
  const next: number[] = [];
  const open = (x: object): void => {
    if (Array.isArray(x)) {
      out += '[';
      arrs.push(x);
      objs.push(undefined);
      keys.push(undefined);
    } else {
      out += '{';
      arrs.push(undefined);
      objs.push(x as Record<string, unknown>);
      keys.push(Object.keys(x));
    }
    next.push(0);
  };
  open(v);
  while (next.length > 0) {
    const top = next.length - 1;
    const arr = arrs[top], ks = keys[top];
    const i = next[top]!;
    if (i === (arr !== undefined ? arr.length : ks!.length)) {
      out += arr !== undefined ? ']' : '}';
      arrs.pop();
      objs.pop();
      keys.pop();
      next.pop();
      continue;
    }
    next[top] = i + 1;
    if (i > 0) out += ',';
    let x: unknown;
    if (arr !== undefined) x = arr[i];
    else {
      const k = ks![i]!;
      out += stringText(k) + ':';
      x = objs[top]![k];
    }
    if (typeof x === 'object' && x !== null) open(x);
    else out += leafText(x);
  }
  return out;
}
/** `jsonText(v)` cut to at most `max` characters, for messages that quote a value. */
export function jsonPreview(v: unknown, max = 200): string {
  const s = jsonText(v);
  return s.length <= max ? s : `${s.slice(0, max)}… (${s.length} characters)`;
}
