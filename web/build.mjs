// Builds the playground into ../api/playground/ (index.html, app.js,
// app.css), which the Go server embeds; the output is committed, so that
// a clone builds without npm. `node build.mjs --check` builds into a
// temporary folder and fails if the committed files differ: sources
// changed without a rebuild.
import { build } from 'esbuild';
import { copyFile, mkdtemp, readFile, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const dest = path.join(here, '..', 'api', 'playground');
const check = process.argv.includes('--check');
const out = check ? await mkdtemp(path.join(tmpdir(), 'playground-')) : dest;

const common = { bundle: true, minify: true, legalComments: 'eof', logLevel: 'warning', absWorkingDir: here };
await build({ ...common, entryPoints: ['src/main.js'], outfile: path.join(out, 'app.js'), format: 'esm', target: 'es2020' });
await build({ ...common, entryPoints: ['src/style.css'], outfile: path.join(out, 'app.css') });
await copyFile(path.join(here, 'src', 'index.html'), path.join(out, 'index.html'));

if (check) {
  let stale = [];
  for (const name of await readdir(out)) {
    const [a, b] = await Promise.all([readFile(path.join(out, name)), readFile(path.join(dest, name)).catch(() => null)]);
    if (!b || !a.equals(b)) stale.push(name);
  }
  await rm(out, { recursive: true });
  if (stale.length) {
    console.error(`api/playground is stale (${stale.join(', ')}): run \`npm run build\` in web/ and commit the result`);
    process.exit(1);
  }
  console.log('api/playground matches web/src');
}
