// The progress line of `weir run` on stderr. It is redrawn in place with a carriage
// return, so it must fit on one terminal row (a longer one wraps, and every redraw then
// leaves a stale row behind), and it must never reach a file or a pipe, where the
// carriage returns pile up as one endless line.
import { isoOf } from './time/timestamp';

/** What the progress line shows. */
export interface ProgressFigures {
  /** Records read so far (events, dead-lettered ones included). */
  records: number;
  /** Records per second since the previous line. */
  eventsPerSecond: number;
  /** The watermark W, epoch ms (±Infinity before the first event and at the end of input). */
  watermarkMs: number;
  /** Windows holding state, over every aggregation. */
  openWindows: number;
}

/** The part of a stream the line depends on (`process.stderr` is one). */
export interface Terminal {
  isTTY?: boolean;
  /** Width in characters; unknown on some terminals. */
  columns?: number;
}

/** Assumed when a terminal does not report its width. */
const DEFAULT_COLUMNS = 80;

/**
 * The text to write to `term` to show `f`: a carriage return and one line that fits in
 * `term.columns` (padded with spaces over the previous, longer one), or `''` when
 * `term` is not a terminal. The wordier forms give way to shorter ones as the terminal
 * narrows, the figures staying whole as long as they fit.
 */
export function progressLine(f: ProgressFigures, term: Terminal = process.stderr): string {
  if (term.isTTY !== true) return '';
  // One column short of the width: writing the last column makes some terminals wrap.
  const width = Math.max(1, (term.columns !== undefined && term.columns > 0 ? term.columns : DEFAULT_COLUMNS) - 1);
  const records = f.records.toLocaleString('en-US');
  const rate = Math.round(f.eventsPerSecond).toLocaleString('en-US');
  const w = isoOf(f.watermarkMs);
  const forms = [
    `${records} events, ${rate} events/s, watermark ${w}, ${f.openWindows.toLocaleString('en-US')} open windows`,
    `${records} events, ${rate}/s, W ${w}, ${f.openWindows} windows`,
    `${records} events, ${rate}/s, W ${w}`,
    `${records} events, ${rate}/s`,
    `${records} events`,
  ];
  const text = forms.find((s) => s.length <= width) ?? forms[forms.length - 1]!.slice(0, width);
  return `\r${text.padEnd(width)}`;
}

/** What ends the progress line when the run is over: a newline on a terminal, nothing elsewhere. */
export function progressEnd(term: Terminal = process.stderr): string {
  return term.isTTY === true ? '\n' : '';
}
