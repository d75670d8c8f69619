// Putting Weir's code in place of one of kafkajs's modules, in this thread's module
// cache, before kafkajs loads it: nothing in node_modules changes. Used for the
// consumer's record decoder (sources/kafka-decode.ts), its filter of aborted
// transactions (kafkajs-aborted.ts) and its sleep (kafkajs-sleep.ts), the
// producer's grouping per partition (kafkajs-grouping.ts) and its Produce request
// encoder (kafkajs-produce.ts), each written against kafkajs 2.2.
import Module from 'node:module';
import { dirname, join } from 'node:path';

const load = Module.createRequire(__filename);

/** The kafkajs versions whose modules Weir replaces. */
const KAFKAJS_VERSION = /^2\.2\.\d+$/;

/** kafkajs's package directory, when it is a version Weir replaces modules of; else undefined. */
export function kafkajsRoot(): string | undefined {
  try {
    const root = dirname(load.resolve('kafkajs/package.json'));
    const { version } = load(join(root, 'package.json')) as { version: string };
    return KAFKAJS_VERSION.test(version) ? root : undefined;
  } catch {
    return undefined;
  }
}

/** The resolved path of kafkajs module `file` (relative to its package directory). */
export function kafkajsPath(root: string, file: string): string {
  return load.resolve(join(root, file));
}

/** kafkajs module `file`, loaded. */
export function loadKafkajs<T>(root: string, file: string): T {
  return load(join(root, file)) as T;
}

/** Whether kafkajs module `file` is in the module cache; its exports, if so. */
export function cachedKafkajs(root: string, file: string): { exports: unknown } | undefined {
  return load.cache[kafkajsPath(root, file)];
}

/** Puts `exports` in the module cache as kafkajs module `file`: whoever requires it from now on gets them. */
export function replaceKafkajs(root: string, file: string, exports: unknown): void {
  const path = kafkajsPath(root, file);
  const m = new Module(path, module);
  m.filename = path;
  m.loaded = true;
  m.exports = exports;
  load.cache[path] = m;
}

/**
 * Puts `exports` in place of kafkajs module `file` in this thread's module cache. True
 * when it is in place (now or before); false, changing nothing, when kafkajs is not a
 * version Weir replaces modules of or when `holder` (the module that keeps the
 * original once loaded) is loaded already.
 */
export function installInPlaceOf(file: string, holder: string, exports: unknown): boolean {
  const root = kafkajsRoot();
  if (root === undefined) return false;
  if (cachedKafkajs(root, file)?.exports === exports) return true;
  if (cachedKafkajs(root, holder) !== undefined) return false;
  replaceKafkajs(root, file, exports);
  return true;
}
