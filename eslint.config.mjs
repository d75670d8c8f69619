// `npm run lint`: typescript-eslint's recommended rules with type information, and
// no warning allowed (`--max-warnings 0`). The AssemblyScript in assembly/ is not
// TypeScript to a linter (decorators, load<T>, usize): asc checks it.
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['dist/**', 'build/**', 'node_modules/**', 'assembly/**', 'scripts/**', 'bin/**'] },
  ...tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: { parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname } },
    rules: {
      // node:test's test() and describe() return promises the runner itself awaits.
      '@typescript-eslint/no-floating-promises': ['error', { allowForKnownSafeCalls: [{ from: 'package', package: 'node:test', name: ['test', 'describe', 'it', 'suite'] }] }],
      // An async method without await is how a Promise-returning interface is implemented
      // (StateBackend, Sink): a throw in it becomes a rejection, as callers expect.
      '@typescript-eslint/require-await': 'off',
      // `_`-prefixed names are deliberately unused (destructuring to drop a field).
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_', destructuredArrayIgnorePattern: '^_' }],
    },
  },
);
