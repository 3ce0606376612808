// Build script. `node esbuild.mjs` bundles the extension into dist/extension.js;
// `--production` minifies it; `--tests` bundles test/*.test.ts into out/test/ for `node --test`.
import { readdirSync } from 'node:fs';
import * as esbuild from 'esbuild';

const args = new Set(process.argv.slice(2));
const production = args.has('--production');

const common = {
  bundle: true,
  platform: 'node',
  target: 'node20',
  format: 'cjs',
  logLevel: 'warning',
};

if (args.has('--tests')) {
  const entryPoints = readdirSync('test')
    .filter((f) => f.endsWith('.test.ts'))
    .map((f) => `test/${f}`);
  await esbuild.build({
    ...common,
    entryPoints,
    outdir: 'out/test',
    sourcemap: 'inline',
    // Tests cover the pure modules only; importing `vscode` from one is a mistake.
    external: [],
  });
} else {
  await esbuild.build({
    ...common,
    entryPoints: ['src/extension.ts'],
    outfile: 'dist/extension.js',
    external: ['vscode'],
    minify: production,
    sourcemap: !production,
    sourcesContent: false,
  });
}
