// kafkajs's own modules, compiled from their files: the module cache holds Weir's in
// place of those it replaces (src/kafkajs-modules.ts), and the tests compare both.
import Module from 'node:module';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { compileFunction } from 'node:vm';

const load = Module.createRequire(__filename);

/** The path of kafkajs module `file` (relative to its package directory). */
export function kafkajsFile(file: string): string {
  return join(dirname(load.resolve('kafkajs/package.json')), file);
}

/** kafkajs module `file` as kafkajs ships it, whatever the module cache holds. */
export function originalKafkajs<T>(file: string): T {
  const path = kafkajsFile(file);
  const m = { exports: {} as unknown };
  const compiled = compileFunction(readFileSync(path, 'utf8'), ['module', 'exports', 'require']) as (m: { exports: unknown }, e: unknown, r: NodeJS.Require) => void;
  compiled(m, m.exports, Module.createRequire(path));
  return m.exports as T;
}
