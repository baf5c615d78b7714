// Bundles src/app.js (and the CSS it imports) into OUT/app.js and
// OUT/app.css, and the container page's src/container.js into
// OUT/container.js and OUT/container.css, each also compressed once here, at the highest levels
// (app.js.br, app.js.gz, ...), so that the server sends them compressed
// without compressing them per request; build.rs runs it with OUT under
// cargo's OUT_DIR.
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { brotliCompressSync, constants, gzipSync } from 'node:zlib';
import * as esbuild from 'esbuild';

const outdir = process.argv[2];
if (!outdir) {
  console.error('usage: node build.mjs OUTDIR');
  process.exit(2);
}
await esbuild.build({
  // The container page's graphs and terminal are a bundle of their own,
  // loaded by that page only.
  entryPoints: { app: 'src/app.js', container: 'src/container.js' },
  bundle: true,
  minify: true,
  format: 'iife',
  target: ['es2020'],
  outdir,
  logLevel: 'warning',
  // Licence comments of Bootstrap and CodeMirror go with the bundle.
  legalComments: 'eof',
});

for (const name of ['app.js', 'app.css', 'container.js', 'container.css']) {
  const path = join(outdir, name);
  const bytes = readFileSync(path);
  writeFileSync(`${path}.gz`, gzipSync(bytes, { level: 9 }));
  writeFileSync(`${path}.br`, brotliCompressSync(bytes, {
    params: {
      [constants.BROTLI_PARAM_MODE]: constants.BROTLI_MODE_TEXT,
      [constants.BROTLI_PARAM_QUALITY]: constants.BROTLI_MAX_QUALITY,
      [constants.BROTLI_PARAM_SIZE_HINT]: bytes.length,
    },
  }));
}
