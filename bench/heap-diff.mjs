// Compares two V8 heap snapshots (e.g. from `npm run bench -- --only=5 --fan=1000 --heap-snapshots`):
// objects and self size by constructor / type that the second has more of. With `--per=N` the
// differences are also shown divided by N (bytes per subscriber).
//
//   node bench/heap-diff.mjs <before.heapsnapshot> <after.heapsnapshot> [--per=1000] [--top=40]
import { readFileSync } from 'node:fs';

const [a, b, ...rest] = process.argv.slice(2);
if (!a || !b) {
  console.error('usage: node bench/heap-diff.mjs <before.heapsnapshot> <after.heapsnapshot> [--per=N] [--top=40]');
  process.exit(2);
}
const per = Number(rest.find((x) => x.startsWith('--per='))?.slice(6) ?? 0);
const top = Number(rest.find((x) => x.startsWith('--top='))?.slice(6) ?? 40);

function load(file) {
  const snap = JSON.parse(readFileSync(file, 'utf8'));
  const f = snap.snapshot.meta.node_fields;
  const types = snap.snapshot.meta.node_types[0];
  const iType = f.indexOf('type');
  const iName = f.indexOf('name');
  const iSize = f.indexOf('self_size');
  const step = f.length;
  const groups = new Map();
  let total = 0;
  for (let i = 0; i < snap.nodes.length; i += step) {
    const type = types[snap.nodes[i + iType]];
    const size = snap.nodes[i + iSize];
    total += size;
    // objects by constructor name; strings, code, arrays... by type
    let key = type === 'object' || type === 'closure' || type === 'native' ? `${type}:${snap.strings[snap.nodes[i + iName]]}` : `(${type})`;
    if (key.length > 80) key = `${key.slice(0, 77)}...`;
    const g = groups.get(key) ?? { count: 0, size: 0 };
    g.count++;
    g.size += size;
    groups.set(key, g);
  }
  return { groups, total };
}

const A = load(a);
const B = load(b);
const keys = new Set([...A.groups.keys(), ...B.groups.keys()]);
const diff = [...keys]
  .map((k) => {
    const x = A.groups.get(k) ?? { count: 0, size: 0 };
    const y = B.groups.get(k) ?? { count: 0, size: 0 };
    return { k, dCount: y.count - x.count, dSize: y.size - x.size };
  })
  .sort((p, q) => q.dSize - p.dSize);

const kb = (n) => `${(n / 1024).toFixed(1)} KB`;
console.log(`heap (self sizes): ${kb(A.total)} → ${kb(B.total)}: +${kb(B.total - A.total)}${per ? ` = ${((B.total - A.total) / per / 1024).toFixed(2)} KB per unit (${per})` : ''}`);
console.log(`\n${'Δ size'.padStart(12)} ${'Δ count'.padStart(9)}${per ? `${'B/unit'.padStart(9)}${'n/unit'.padStart(8)}` : ''}  constructor / type`);
for (const d of diff.slice(0, top)) {
  const perCols = per ? `${(d.dSize / per).toFixed(0).padStart(9)}${(d.dCount / per).toFixed(1).padStart(8)}` : '';
  console.log(`${kb(d.dSize).padStart(12)} ${String(d.dCount).padStart(9)}${perCols}  ${d.k}`);
}
