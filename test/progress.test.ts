// The progress line: on a terminal it fits one row whatever the width; elsewhere nothing is written.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { progressLine, progressEnd, type ProgressFigures } from '../src/progress';

const figures: ProgressFigures = { records: 12_345_678, eventsPerSecond: 2_110_968.4, watermarkMs: Date.UTC(2026, 0, 1, 12, 34, 56), openWindows: 123_456 };

test('not a terminal (a file, a pipe, unknown): nothing to write, not even the final newline', () => {
  for (const term of [{ isTTY: false, columns: 200 }, {}, { columns: 80 }]) {
    assert.equal(progressLine(figures, term), '');
    assert.equal(progressEnd(term), '');
  }
  assert.equal(progressEnd({ isTTY: true, columns: 80 }), '\n');
});

test('on a terminal the line fits one row at every width, and says as much as fits', () => {
  for (let columns = 1; columns <= 240; columns++) {
    const s = progressLine(figures, { isTTY: true, columns });
    assert.ok(s.startsWith('\r'), `${columns}: starts with a carriage return`);
    assert.ok(!s.slice(1).includes('\r') && !s.includes('\n'), `${columns}: one line`);
    assert.equal(s.length - 1, Math.max(1, columns - 1), `${columns}: fills the row but its last column (padded over the previous line)`);
    if (columns >= 20) assert.match(s, /12,345,678 events/, `${columns}: the count stays whole`);
  }
  const wide = progressLine(figures, { isTTY: true, columns: 200 }).trim();
  assert.equal(wide, '12,345,678 events, 2,110,968 events/s, watermark 2026-01-01T12:34:56.000Z, 123,456 open windows');
  const narrow = progressLine(figures, { isTTY: true, columns: 60 }).trim();
  assert.equal(narrow, '12,345,678 events, 2,110,968/s, W 2026-01-01T12:34:56.000Z');
});

test('a terminal that does not report its width gets an 80-column line; the watermark before any event reads -inf', () => {
  const s = progressLine({ ...figures, watermarkMs: -Infinity }, { isTTY: true });
  assert.equal(s.length - 1, 79);
  assert.match(s, /watermark -inf/);
});
