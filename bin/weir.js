#!/usr/bin/env node
'use strict';
// The `weir` command: compiled TypeScript lives in dist/ (npm run build).
const path = require('node:path');
const fs = require('node:fs');
const entry = path.join(__dirname, '..', 'dist', 'src', 'cli.js');
if (!fs.existsSync(entry)) {
  process.stderr.write('weir: not built yet: run `npm run build` (npm install does it)\n');
  process.exit(1);
}
const cli = require(entry);
cli.main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (e) => {
    process.stderr.write(`weir: internal error: ${e && e.stack ? e.stack : e}\n`);
    process.exitCode = 1;
  },
);
