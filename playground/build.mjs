// `npm run build:playground`: builds the playground with Vite (playground/vite.config.mjs) into
// dist/playground/, unless the last build there was made from the same inputs (the files of
// playground/ and package-lock.json). `--force` builds anyway.
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = fileURLToPath(new URL('.', import.meta.url));
const root = join(here, '..');
const outDir = join(root, 'dist', 'playground');
const stampFile = join(outDir, '.build-stamp');

function inputsHash() {
  const hash = createHash('sha256');
  const walk = (dir) => {
    for (const entry of readdirSync(dir, { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name))) {
      const path = join(dir, entry.name);
      if (entry.isDirectory()) walk(path);
      else if (entry.isFile()) hash.update(path.slice(root.length)).update('\0').update(readFileSync(path)).update('\0');
    }
  };
  walk(here);
  for (const file of ['package-lock.json', 'package.json']) {
    const path = join(root, file);
    if (existsSync(path)) hash.update(file).update('\0').update(readFileSync(path));
  }
  return hash.digest('hex');
}

const force = process.argv.includes('--force');
const stamp = inputsHash();
if (!force && existsSync(join(outDir, 'index.html')) && existsSync(stampFile) && readFileSync(stampFile, 'utf8').trim() === stamp) {
  console.log('playground: dist/playground is up to date (npm run build:playground -- --force rebuilds it)');
  process.exit(0);
}

let vite;
try {
  vite = await import('vite');
} catch {
  console.error('playground: Vite is not installed (a development dependency): run "npm install" first. The server runs without the playground.');
  process.exit(1);
}
const started = performance.now();
await vite.build({ configFile: join(here, 'vite.config.mjs') });
writeFileSync(stampFile, `${stamp}\n`);
console.log(`playground: built into dist/playground in ${((performance.now() - started) / 1000).toFixed(1)} s`);
