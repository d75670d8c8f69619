// The file source's line splitting: every line once, in order, whatever the read size,
// the batch size and where the reads cut the lines (a line longer than a read, no
// '\n' at the end, empty lines), against a plain split of the file's text.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileBatches } from '../src/sources/lines';

function rng(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) / 2 ** 32;
  };
}

async function linesOf(path: string, batchSize: number, readBytes: number): Promise<Array<{ line: string; offset: number }>> {
  const out: Array<{ line: string; offset: number }> = [];
  for await (const b of fileBatches(path, batchSize, 0, readBytes)) {
    for (let i = 0; i < b.n; i++) out.push({ line: b.buf.toString('utf8', b.starts[i], b.ends[i]), offset: b.firstOffset + i });
  }
  return out;
}

test('fileBatches gives every line of a file once, in order, with its line number, for any read and batch size', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'weir-lines-'));
  const rand = rng(7);
  for (let round = 0; round < 40; round++) {
    const lines: string[] = [];
    const count = 1 + Math.floor(rand() * 300);
    for (let i = 0; i < count; i++) {
      const r = rand();
      // Mostly short lines, some empty, some longer than several reads.
      const len = r < 0.1 ? 0 : r < 0.95 ? Math.floor(rand() * 60) : 200 + Math.floor(rand() * 400);
      lines.push(`${i}:` + 'x'.repeat(len) + 'é'.repeat(Math.floor(rand() * 3)));
    }
    const trailing = rand() < 0.5;
    const text = lines.join('\n') + (trailing ? '\n' : '');
    const file = join(dir, `in-${round}.jsonl`);
    writeFileSync(file, text);
    const readBytes = 16 + Math.floor(rand() * 256);
    const batchSize = 1 + Math.floor(rand() * 20);
    const got = await linesOf(file, batchSize, readBytes);
    assert.deepEqual(
      got.map((x) => x.line),
      lines,
      `round ${round}: ${count} lines, reads of ${readBytes} bytes, batches of ${batchSize}, ${trailing ? 'with' : 'without'} a final newline`,
    );
    assert.deepEqual(
      got.map((x) => x.offset),
      lines.map((_, i) => i),
    );
  }
});

test('fileBatches of an empty file gives nothing; of a missing file, an error naming it', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'weir-lines-'));
  const empty = join(dir, 'empty.jsonl');
  writeFileSync(empty, '');
  assert.deepEqual(await linesOf(empty, 4, 64), []);
  await assert.rejects(linesOf(join(dir, 'missing.jsonl'), 4, 64), /input file not found: .*missing\.jsonl \(source\.path\)/);
});
