// JSON-lines file sinks opened for append after a crash or a full disk left a torn last line.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { JsonLinesSink, cutTornLine, type LineFormat } from '../src/sinks/jsonl';

const asLines: LineFormat<{ a: number }> = (rs) => rs.map((r) => JSON.stringify(r) + '\n').join('');

function tmpFile(text?: string): string {
  const p = join(mkdtempSync(join(tmpdir(), 'weir-jsonl-')), 'out.jsonl');
  if (text !== undefined) writeFileSync(p, text);
  return p;
}

interface Warned { fields: Record<string, unknown>; msg: string }
function logger(): { warn: (fields: Record<string, unknown>, msg: string) => void; warned: Warned[] } {
  const warned: Warned[] = [];
  return { warned, warn: (fields, msg) => void warned.push({ fields, msg }) };
}

test('append to a file whose last line is torn: the torn line is cut, a warning names the file and the bytes, the new record follows', async () => {
  const torn = '{"name":"latency","key":"m';
  const path = tmpFile('{"a":1}\n{"a":2}\n' + torn);
  const log = logger();
  const sink = await JsonLinesSink.toFile(path, 'sinks[0] results', asLines, true, log);
  await sink.write([{ a: 3 }]);
  await sink.close();
  const lines = readFileSync(path, 'utf8').split('\n');
  assert.equal(lines.pop(), '', 'ends in a newline');
  assert.deepEqual(lines.map((l) => JSON.parse(l) as unknown), [{ a: 1 }, { a: 2 }, { a: 3 }]);
  assert.equal(log.warned.length, 1);
  assert.equal(log.warned[0]!.fields['bytesCut'], Buffer.byteLength(torn));
  assert.equal(log.warned[0]!.fields['file'], path);
  assert.match(log.warned[0]!.msg, new RegExp(`sinks\\[0\\] results file ${path} .*cut its last ${torn.length} byte`));
});

test('a whole file, an empty one, a missing one are left as they are; a torn only line is cut to empty', async () => {
  for (const [before, after, cut] of [
    ['{"a":1}\n', '{"a":1}\n', 0],
    ['', '', 0],
    ['{"a":', '', 5],
    ['{"a":1}\n{"b":"é', '{"a":1}\n', Buffer.byteLength('{"b":"é')],
  ] as const) {
    const path = tmpFile(before);
    assert.equal(cutTornLine(path), cut);
    assert.equal(readFileSync(path, 'utf8'), after);
  }
  assert.equal(cutTornLine(join(mkdtempSync(join(tmpdir(), 'weir-jsonl-')), 'none.jsonl')), 0);
  // A torn line longer than the chunk read backwards at a time.
  const long = 'x'.repeat(200_000);
  const path = tmpFile(`{"a":1}\n${long}`);
  assert.equal(cutTornLine(path), long.length);
  assert.equal(readFileSync(path, 'utf8'), '{"a":1}\n');
  const noNewline = tmpFile(long);
  assert.equal(cutTornLine(noNewline), long.length);
  assert.equal(readFileSync(noNewline, 'utf8'), '');
});

test('a file opened without append starts empty, torn or not, with no warning', async () => {
  const path = tmpFile('{"a":1}\n{"a":');
  const log = logger();
  const sink = await JsonLinesSink.toFile(path, 'deadLetter', asLines, false, log);
  await sink.write([{ a: 9 }]);
  await sink.close();
  assert.equal(readFileSync(path, 'utf8'), '{"a":9}\n');
  assert.equal(log.warned.length, 0);
});
