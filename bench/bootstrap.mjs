// `npm run bench [-- --quick]` at the repository root lands here. On a fresh clone after
// `npm ci` it needs nothing else: it builds the server when dist/ is missing or older than the
// sources, installs bench/'s own dependencies when bench/node_modules is missing, raises the
// open-file limit to the hard limit (the fan-out scenario holds thousands of sockets), and
// runs the harness (bench/run.mjs) with the same arguments. Node built-ins only.
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const BENCH = dirname(fileURLToPath(import.meta.url));
const ROOT = resolve(BENCH, '..');
const args = process.argv.slice(2);

function newestMtime(path) {
  if (!existsSync(path)) return 0;
  const st = statSync(path);
  if (!st.isDirectory()) return st.mtimeMs;
  let newest = 0;
  for (const entry of readdirSync(path)) newest = Math.max(newest, newestMtime(join(path, entry)));
  return newest;
}

function run(cmd, cmdArgs, opts = {}) {
  const r = spawnSync(cmd, cmdArgs, { stdio: 'inherit', ...opts });
  if (r.error) throw r.error;
  return r.status ?? 1;
}

/** npm itself: the one running this script when started by `npm run`, else the one on PATH. */
function npm(npmArgs, opts) {
  const cli = process.env.npm_execpath;
  return cli && cli.endsWith('.js') ? run(process.execPath, [cli, ...npmArgs], opts) : run('npm', npmArgs, opts);
}

const entry = join(ROOT, 'dist/src/index.js');
const built = existsSync(entry) ? statSync(entry).mtimeMs : 0;
const sources = Math.max(
  newestMtime(join(ROOT, 'src')),
  newestMtime(join(ROOT, 'migrations')),
  newestMtime(join(ROOT, 'tsconfig.json')),
  newestMtime(join(ROOT, 'package-lock.json')),
);
if (!built || sources > built) {
  console.log('== bench: building the server (npm run build)');
  if (npm(['run', 'build'], { cwd: ROOT }) !== 0) process.exit(1);
}

if (!existsSync(join(BENCH, 'node_modules'))) {
  console.log('== bench: installing the bench dependencies (npm --prefix bench ci)');
  if (npm(['--prefix', BENCH, 'ci', '--no-audit', '--no-fund'], { cwd: ROOT }) !== 0) process.exit(1);
}

const harness = [join(BENCH, 'run.mjs'), ...args];
const useShell = process.platform !== 'win32' && existsSync('/bin/sh');
const code = useShell
  ? // raise the soft open-file limit to the hard one, then become the harness
    run('/bin/sh', ['-c', 'ulimit -n "$(ulimit -Hn)" 2>/dev/null; exec "$0" "$@"', process.execPath, ...harness], { cwd: ROOT })
  : run(process.execPath, harness, { cwd: ROOT });
process.exit(code);
