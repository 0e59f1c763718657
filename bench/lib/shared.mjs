// Helpers of several scenarios: deterministic seeds and EXPLAIN output.

/** Deterministic pseudo-random numbers (mulberry32). */
export function rng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** One line per plan node: type, index, rows, rows filtered out, time, shared buffers. */
export function planLines(node, depth = 0, out = []) {
  const bits = [node['Node Type']];
  if (node['Node Type'].includes('Index') && node['Scan Direction'] && node['Scan Direction'] !== 'Forward') bits[0] += ` ${node['Scan Direction']}`;
  if (node['Index Name']) bits.push(`using ${node['Index Name']}`);
  if (node['Relation Name'] && !node['Index Name']) bits.push(`on ${node['Relation Name']}`);
  const short = (x, n) => x.replace(/'[01]{16,}'/g, "'<bits>'").slice(0, n);
  if (node['Index Cond']) bits.push(`cond ${short(node['Index Cond'], 160)}`);
  if (node['Recheck Cond']) bits.push(`recheck ${short(node['Recheck Cond'], 160)}`);
  if (node['Sort Key']) bits.push(`key ${short(node['Sort Key'].join(', '), 120)}`);
  if (node['Sort Method']) bits.push(`${node['Sort Method']}`);
  bits.push(`rows ${node['Actual Rows']}${node['Actual Loops'] > 1 ? ` × ${node['Actual Loops']} loops` : ''}`);
  if (node['Rows Removed by Filter']) bits.push(`filtered ${node['Rows Removed by Filter']}`);
  if (node['Rows Removed by Index Recheck']) bits.push(`rechecked away ${node['Rows Removed by Index Recheck']}`);
  if (node['Heap Blocks'] !== undefined) bits.push(`heap blocks ${node['Heap Blocks']}`);
  bits.push(`${node['Actual Total Time']} ms`);
  if (node['Shared Hit Blocks'] !== undefined) bits.push(`buffers ${node['Shared Hit Blocks'] + (node['Shared Read Blocks'] ?? 0)}`);
  out.push(`${'  '.repeat(depth)}${bits.join(', ')}`);
  for (const child of node.Plans ?? []) planLines(child, depth + 1, out);
  return out;
}
