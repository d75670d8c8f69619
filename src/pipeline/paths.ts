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
