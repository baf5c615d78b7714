// Bundles src/app.js (and the CSS it imports) into OUT/app.js and
// OUT/app.css; build.rs runs it with OUT under cargo's OUT_DIR.
import * as esbuild from 'esbuild';

const outdir = process.argv[2];
if (!outdir) {
  console.error('usage: node build.mjs OUTDIR');
  process.exit(2);
}
await esbuild.build({
  entryPoints: { app: 'src/app.js' },
  bundle: true,
  minify: true,
  format: 'iife',
  target: ['es2020'],
  outdir,
  logLevel: 'warning',
  // Licence comments of Bootstrap and CodeMirror go with the bundle.
  legalComments: 'eof',
});
