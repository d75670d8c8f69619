// The path spec the WASM scanner reads (assembly/scan.ts, "Path spec"): a trie of the
// configured dotted paths, one node per object level, with a collision-free hash
// table per node. This is its one encoder.
// ─── ABI constants (mirror assembly/scan.ts) ─────────────────────────────────
export const STATUS_OK = 0;
export const STATUS_MALFORMED = 1;
export const STATUS_BLANK = 2;

export const KIND_MISSING = 0;
export const KIND_NUMBER = 1;
export const KIND_STRING = 2;
export const KIND_TRUE = 3;
export const KIND_FALSE = 4;
export const KIND_NULL = 5;
export const KIND_OBJECT = 6;
export const KIND_ARRAY = 7;

export const FLAG_NUM_EXACT = 1;
export const FLAG_STR_ESCAPED = 2;

export const FIELD_BYTES = 24;
export const SPEC_MAGIC = 0x52494557; // "WEIR"
export const SPEC_VERSION = 1;
export const NO_PATH = 0xffffffff;
export const NODE_NORMALIZE = 1;
export const CHILD_BYTES = 24;
export const NODE_BYTES = 24;
const HASH_K1 = 0x9e3779b97f4a7c15n;
const HASH_K2 = 0xff51afd7ed558ccdn;
const M64 = (1n << 64n) - 1n;
const MAX_HASH_BITS = 10;

function u64le(b: Uint8Array, at: number): bigint {
  let v = 0n;
  for (let i = 7; i >= 0; i--) v = (v << 8n) | BigInt(b[at + i] ?? 0);
  return v;
}

/** The scanner's 64-bit key hash (assembly/scan.ts, findChild); slot = hash >> shift. */
export function keySlotHash(key: Uint8Array): bigint {
  const head = u64le(key.subarray(0, 8), 0);
  const tail = key.length > 8 ? u64le(key, key.length - 8) : 0n;
  const rot = ((tail << 29n) | (tail >> 35n)) & M64;
  return (((head ^ rot ^ ((BigInt(key.length) * HASH_K1) & M64)) * HASH_K2) & M64);
}

/** Smallest table (bits) in which the keys' slots are distinct, or 0 if none up to MAX_HASH_BITS. */
function hashBits(keys: Uint8Array[]): number {
  const hashes = keys.map(keySlotHash);
  for (let bits = 1; bits <= MAX_HASH_BITS; bits++) {
    if (1 << bits < keys.length) continue;
    const slots = new Set(hashes.map((h) => h >> BigInt(64 - bits)));
    if (slots.size === keys.length) return bits;
  }
  return 0;
}


export function wtf8(s: string): Uint8Array {
  const out: number[] = [];
  for (let i = 0; i < s.length; i++) {
    let cp = s.charCodeAt(i);
    if (cp >= 0xd800 && cp <= 0xdbff && i + 1 < s.length) {
      const lo = s.charCodeAt(i + 1);
      if (lo >= 0xdc00 && lo <= 0xdfff) {
        cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
        i++;
      }
    }
    if (cp < 0x80) out.push(cp);
    else if (cp < 0x800) out.push(0xc0 | (cp >> 6), 0x80 | (cp & 0x3f));
    else if (cp < 0x10000) out.push(0xe0 | (cp >> 12), 0x80 | ((cp >> 6) & 0x3f), 0x80 | (cp & 0x3f));
    else out.push(0xf0 | (cp >> 18), 0x80 | ((cp >> 12) & 0x3f), 0x80 | ((cp >> 6) & 0x3f), 0x80 | (cp & 0x3f));
  }
  return Uint8Array.from(out);
}

/** True when s holds U+FFFD or a lone surrogate: keys must then be decoded like Node decodes lines. */
function needsNormalize(s: string): boolean {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c === 0xfffd) return true;
    if (c >= 0xd800 && c <= 0xdbff) {
      const lo = i + 1 < s.length ? s.charCodeAt(i + 1) : 0;
      if (lo >= 0xdc00 && lo <= 0xdfff) i++;
      else return true;
    } else if (c >= 0xdc00 && c <= 0xdfff) {
      return true;
    }
  }
  return false;
}

interface TrieNode {
  children: Map<string, TrieChild>;
  offset: number;
  descOffset: number;
  desc: number[];
  hashBits: number;
  hashOffset: number;
}
interface TrieChild {
  key: Uint8Array;
  path: number;
  node: TrieNode | undefined;
}

/**
 * Compiles dotted paths into the scanner's path spec (layout in assembly/scan.ts).
 * Path i's field records are at index i. A path is split at every '.'; each
 * segment is compared with object keys after JSON unescaping. A path listed
 * twice is scanned once and copied (alias table).
 *
 *   header   u32 magic "WEIR", version 1, P, rootOff, aliasCount, aliasOff
 *   node     u32 childCount, flags (bit0 NODE_NORMALIZE), descCount, descOff,
 *            hashShift, hashOff,
 *            then childCount × { u32 keyOff, keyLen, pathIdx (NO_PATH), nodeOff (0),
 *                                u64 keyHead: first 8 key bytes, zero-padded }
 *   hash     u16[1 << (64 - hashShift)]: child index + 1 at keyHash(key) >> hashShift
 *            (see keySlotHash); hashShift 0: no table, the scanner searches linearly
 *   desc     descCount × u32 path indices ending strictly below the node
 *   aliases  aliasCount × { u32 dst, u32 src }
 *   keys     segment bytes (WTF-8)
 * Little-endian; offsets in bytes from the spec's start; all u32s 4-aligned.
 */
export function compilePathSpec(paths: string[]): Uint8Array {
  const newNode = (): TrieNode => ({ children: new Map(), offset: 0, descOffset: 0, desc: [], hashBits: 0, hashOffset: 0 });
  const root = newNode();
  const first = new Map<string, number>();
  const aliases: Array<[number, number]> = [];
  paths.forEach((p, i) => {
    const seen = first.get(p);
    if (seen !== undefined) {
      aliases.push([i, seen]);
      return;
    }
    first.set(p, i);
    const segs = p.split('.');
    let node = root;
    segs.forEach((seg, k) => {
      let child = node.children.get(seg);
      if (!child) {
        child = { key: wtf8(seg), path: NO_PATH, node: undefined };
        node.children.set(seg, child);
      }
      if (k === segs.length - 1) {
        child.path = i;
      } else {
        child.node ??= newNode();
        node = child.node;
      }
    });
  });

  // Lay out: header, nodes (pre-order), desc tables, aliases, key bytes.
  const nodes: TrieNode[] = [];
  const collect = (n: TrieNode): number[] => {
    nodes.push(n);
    for (const c of n.children.values()) {
      if (c.path !== NO_PATH) n.desc.push(c.path);
      if (c.node) n.desc.push(...collect(c.node));
    }
    return n.desc;
  };
  collect(root);
  let off = 24;
  for (const n of nodes) {
    n.offset = off;
    off += NODE_BYTES + CHILD_BYTES * n.children.size;
  }
  for (const n of nodes) {
    n.descOffset = off;
    off += 4 * n.desc.length;
  }
  for (const n of nodes) {
    n.hashBits = n.children.size ? hashBits([...n.children.values()].map((c) => c.key)) : 0;
    n.hashOffset = off;
    if (n.hashBits) off += ((2 << n.hashBits) + 3) & ~3;
  }
  const aliasOff = off;
  off += 8 * aliases.length;
  const keyOffsets = new Map<TrieChild, number>();
  for (const n of nodes) {
    for (const c of n.children.values()) {
      keyOffsets.set(c, off);
      off += c.key.length;
    }
  }
  const spec = new Uint8Array((off + 3) & ~3);
  const dv = new DataView(spec.buffer);
  const u32 = (at: number, v: number): void => dv.setUint32(at, v >>> 0, true);
  u32(0, SPEC_MAGIC);
  u32(4, SPEC_VERSION);
  u32(8, paths.length);
  u32(12, root.offset);
  u32(16, aliases.length);
  u32(20, aliasOff);
  for (const n of nodes) {
    let flags = 0;
    for (const seg of n.children.keys()) if (needsNormalize(seg)) flags |= NODE_NORMALIZE;
    u32(n.offset, n.children.size);
    u32(n.offset + 4, flags);
    u32(n.offset + 8, n.desc.length);
    u32(n.offset + 12, n.descOffset);
    u32(n.offset + 16, n.hashBits ? 64 - n.hashBits : 0);
    u32(n.offset + 20, n.hashOffset);
    let at = n.offset + NODE_BYTES;
    let index = 0;
    for (const c of n.children.values()) {
      if (n.hashBits) dv.setUint16(n.hashOffset + 2 * Number(keySlotHash(c.key) >> BigInt(64 - n.hashBits)), ++index, true);
      const keyOff = keyOffsets.get(c) ?? 0;
      u32(at, keyOff);
      u32(at + 4, c.key.length);
      u32(at + 8, c.path);
      u32(at + 12, c.node ? c.node.offset : 0);
      spec.set(c.key.subarray(0, 8), at + 16);
      spec.set(c.key, keyOff);
      at += CHILD_BYTES;
    }
    n.desc.forEach((p, k) => u32(n.descOffset + 4 * k, p));
  }
  aliases.forEach(([dst, src], k) => {
    u32(aliasOff + 8 * k, dst);
    u32(aliasOff + 8 * k + 4, src);
  });
  return spec;
}

// ─── Running the scanner ──────────────────────────────────────────────────────

/**
 * What the records of a run are scanned for: the paths (event time first, then per
 * aggregation its value and group-by fields, each path once) and the decode config
 * words decodeInit reads (P, the event time's path index, then per aggregation its
 * value's path index, its group-by count and their path indices).
 */
export function scanPlan(tsField: string, aggs: ReadonlyArray<{ value: string; groupBy: readonly string[] }>): { paths: string[]; words: number[] } {
  const paths: string[] = [];
  const indexOf = (p: string): number => {
    let i = paths.indexOf(p);
    if (i < 0) i = paths.push(p) - 1;
    return i;
  };
  const words: number[] = [0, indexOf(tsField)];
  for (const a of aggs) {
    words.push(indexOf(a.value), a.groupBy.length);
    for (const g of a.groupBy) words.push(indexOf(g));
  }
  words[0] = paths.length;
  return { paths, words };
}

/** A scan plan's compiled spec and its path count: what a scanner of the records needs. */
export interface ScanSpec {
  spec: Uint8Array;
  paths: number;
}

export function scanSpec(tsField: string, aggs: ReadonlyArray<{ value: string; groupBy: readonly string[] }>): ScanSpec {
  const { paths } = scanPlan(tsField, aggs);
  return { spec: compilePathSpec(paths), paths: paths.length };
}
