#!/usr/bin/env node
// `npm test`: runs every compiled test file (dist/test/**/*.test.js) with node's test runner.
// Test files that need the Kafka broker live under test/kafka/; the broker is started
// for them (scripts/kafka-up.sh) only when they exist and WEIR_SKIP_KAFKA is not set.
'use strict';
const { spawnSync } = require('node:child_process');
const { readdirSync, existsSync } = require('node:fs');
const { join } = require('node:path');

const root = join(__dirname, '..');
function find(dir) {
  if (!existsSync(dir)) return [];
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? find(join(dir, e.name)) : e.name.endsWith('.test.js') ? [join(dir, e.name)] : [],
  );
}
const only = process.argv.slice(2);
let files = find(join(root, 'dist', 'test')).sort();
if (only.length > 0) files = files.filter((f) => only.some((o) => f.includes(o)));
if (files.length === 0) {
  console.error('no test files found under dist/test (did the build run?)');
  process.exit(1);
}
if (files.some((f) => f.includes(`${join('dist', 'test', 'kafka')}`)) && !process.env.WEIR_SKIP_KAFKA) {
  const up = spawnSync('bash', [join(root, 'scripts', 'kafka-up.sh')], { stdio: 'inherit' });
  if (up.status !== 0) process.exit(up.status ?? 1);
}
// kafkajs warns about its partitioner change on every producer; Weir sets a partitioner explicitly.
const env = { ...process.env, KAFKAJS_NO_PARTITIONER_WARNING: '1' };
const r = spawnSync(process.execPath, ['--test', '--test-concurrency=2', ...files], { stdio: 'inherit', cwd: root, env });
process.exit(r.status ?? 1);
