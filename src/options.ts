// Command-line options of the `weir` commands: `--flag value`, `--flag=value`, or a switch.
import { ConfigError } from './errors/errors';

/**
 * Calls `handle` for each option of `argv` in order, with the option as typed (`arg`),
 * its flag (before any `=`) and `value()`, which takes the option's value (after `=`,
 * or the next argument) and throws a ConfigError naming the flag when there is none.
 */
export function eachOption(argv: readonly string[], handle: (flag: string, value: () => string, arg: string) => void): void {
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    const eq = arg.startsWith('--') ? arg.indexOf('=') : -1;
    const flag = eq < 0 ? arg : arg.slice(0, eq);
    const inline = eq < 0 ? undefined : arg.slice(eq + 1);
    handle(
      flag,
      () => {
        const v = inline ?? argv[++i];
        if (v === undefined) throw new ConfigError(`option ${flag} needs a value`);
        return v;
      },
      arg,
    );
  }
}
