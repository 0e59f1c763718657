// Summarises a V8 .cpuprofile (from `node --cpu-prof`, e.g. `npm run bench -- --profile`):
// self time by function and by package/area, and inclusive ("total") time of the functions
// that matter, so BENCHMARKS.md can say where the time goes.
//
//   node bench/profile-summary.mjs <file.cpuprofile> [--top=30] [--match=<substring>]
import { readFileSync } from 'node:fs';

const [file, ...rest] = process.argv.slice(2);
if (!file) {
  console.error('usage: node bench/profile-summary.mjs <file.cpuprofile> [--top=30] [--match=<substring>]');
  process.exit(2);
}
const top = Number(rest.find((a) => a.startsWith('--top='))?.slice(6) ?? 30);
const match = rest.find((a) => a.startsWith('--match='))?.slice(8);

const prof = JSON.parse(readFileSync(file, 'utf8'));
const nodes = new Map(prof.nodes.map((n) => [n.id, n]));
const parent = new Map();
for (const n of prof.nodes) for (const c of n.children ?? []) parent.set(c, n.id);

// self time per node from the samples and their time deltas (µs)
const self = new Map();
for (let i = 0; i < prof.samples.length; i++) {
  const id = prof.samples[i];
  self.set(id, (self.get(id) ?? 0) + (prof.timeDeltas[i] ?? 0));
}
const totalUs = [...self.values()].reduce((a, b) => a + b, 0);

function area(url, fn) {
  if (!url) return fn === '(garbage collector)' ? '(gc)' : fn === '(idle)' ? '(idle)' : fn === '(program)' ? '(program)' : '(native/v8)';
  const nm = url.lastIndexOf('node_modules/');
  if (nm >= 0) {
    const rest = url.slice(nm + 13).split('/');
    return rest[0].startsWith('@') ? `${rest[0]}/${rest[1]}` : rest[0];
  }
  if (url.startsWith('node:')) return `node:${url.slice(5).split('/')[0]}`;
  const d = url.indexOf('/dist/');
  if (d >= 0) return url.slice(d + 1).split('/').slice(0, 3).join('/');
  return url;
}

const label = (n) => {
  const cf = n.callFrame;
  const url = cf.url.replace(/^file:\/\//, '');
  const short = url.includes('node_modules/') ? url.slice(url.lastIndexOf('node_modules/') + 13) : url.replace(/.*\/dist\//, 'dist/');
  return `${cf.functionName || '(anonymous)'} ${short}:${cf.lineNumber + 1}`;
};

const byFn = new Map();
const byArea = new Map();
for (const [id, us] of self) {
  const n = nodes.get(id);
  const key = label(n);
  byFn.set(key, (byFn.get(key) ?? 0) + us);
  const a = area(n.callFrame.url.replace(/^file:\/\//, ''), n.callFrame.functionName);
  byArea.set(a, (byArea.get(a) ?? 0) + us);
}

// inclusive time per function label (each sample counted once per label on its stack)
const incl = new Map();
for (const [id, us] of self) {
  const seen = new Set();
  for (let cur = id; cur !== undefined; cur = parent.get(cur)) {
    const key = label(nodes.get(cur));
    if (seen.has(key)) continue;
    seen.add(key);
    incl.set(key, (incl.get(key) ?? 0) + us);
  }
}

const idle = byArea.get('(idle)') ?? 0;
const busy = totalUs - idle;
const pct = (us) => `${((100 * us) / busy).toFixed(1).padStart(5)}%`;
const print = (title, map, n) => {
  console.log(`\n${title}`);
  for (const [k, us] of [...map].filter(([k]) => k !== '(idle)').sort((a, b) => b[1] - a[1]).slice(0, n)) {
    console.log(`${pct(us)}  ${(us / 1000).toFixed(0).padStart(7)} ms  ${k}`);
  }
};
console.log(`${file}\nprofiled ${(totalUs / 1e6).toFixed(1)} s, busy ${(busy / 1e6).toFixed(1)} s (percentages are of busy time)`);
print('self time by package / area', byArea, top);
print('self time by function', byFn, top);
const inclFiltered = new Map([...incl].filter(([k]) => (match ? k.includes(match) : !k.startsWith('(root)') && !k.startsWith('(program)'))));
print(`inclusive time by function${match ? ` (matching "${match}")` : ''}`, inclFiltered, top);
