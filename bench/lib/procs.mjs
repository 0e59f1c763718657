// Child processes of the bench: the server under test (`node <npm start's flags> dist/src/index.js`, as in
// production), PostGraphile, the raw-pg floor, the subscriber swarm. Each is its own process.
import { spawn } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';

/**
 * The Node flags of `npm start` (package.json: `exec node <flags> dist/src/index.js`). Every server
 * the bench measures runs with them: ours, so that it is measured as it is run, and the baselines
 * (PostGraphile, the raw-pg floor, the fan-out floor), so that both sides of a ratio have the same
 * runtime settings and the ratio compares code.
 */
export function serverNodeFlags(root) {
  const start = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')).scripts.start;
  const m = /\bnode\s+((?:--\S+\s+)*)dist\/src\/index\.js/.exec(start);
  if (!m) throw new Error(`package.json's start script is not "node [--flags] dist/src/index.js": ${start}`);
  return m[1].split(/\s+/).filter(Boolean);
}

export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Resident set size of a process in bytes (VmRSS of /proc/<pid>/status). */
export function rssBytes(pid) {
  const m = /^VmRSS:\s+(\d+)\s+kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  if (!m) throw new Error(`no VmRSS for pid ${pid}`);
  return Number(m[1]) * 1024;
}

/** Cumulative user+system CPU time of a process in milliseconds (/proc/<pid>/stat). */
export function cpuMs(pid) {
  return statCpuMs(readFileSync(`/proc/${pid}/stat`, 'utf8'));
}

/** User + system CPU ms from the text of /proc/<pid>/stat. */
function statCpuMs(stat) {
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // fields[11] = utime, fields[12] = stime (in clock ticks, 100 per second on Linux)
  return (Number(fields[11]) + Number(fields[12])) * 10;
}

/**
 * CPU time (ms) of each live PostgreSQL process on the machine (comm "postgres"), by pid. The
 * difference of two snapshots ({@link postgresCpuDelta}) is the database side of a round, the
 * backends of every pool included.
 */
export function postgresCpuSnapshot() {
  const out = new Map();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    let stat;
    try {
      stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
    } catch {
      continue; // gone meanwhile
    }
    if (stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')')) !== 'postgres') continue;
    out.set(entry, statCpuMs(stat));
  }
  return out;
}

/** CPU ms spent between two snapshots: processes that exited in between are not counted. */
export function postgresCpuDelta(before, after) {
  let total = 0;
  for (const [pid, ms] of after) total += ms - (before.get(pid) ?? 0);
  return total;
}

/**
 * Starts `node <args>` with exactly `env` (plus PATH/HOME) and waits until `readyUrl` answers 200.
 * Output is kept (last 200 lines) for error messages; nothing is printed unless it fails.
 */
export async function startProcess({ name, args, env, readyUrl, timeoutMs = 60_000, nodeArgs = [], cwd }) {
  const proc = spawn(process.execPath, [...nodeArgs, ...args], {
    cwd,
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/tmp', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const output = [];
  const keep = (chunk) => {
    for (const line of chunk.toString('utf8').split('\n')) {
      if (!line) continue;
      output.push(line);
      if (output.length > 200) output.shift();
    }
  };
  proc.stdout.on('data', keep);
  proc.stderr.on('data', keep);
  const exited = new Promise((resolve) => proc.on('close', (code, signal) => resolve(code ?? signal)));
  let gone = false;
  void exited.then(() => (gone = true));
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (gone) throw new Error(`${name} exited before it was ready:\n${output.join('\n')}`);
    try {
      const res = await fetch(readyUrl, { signal: AbortSignal.timeout(2000) });
      await res.arrayBuffer();
      if (res.ok) break;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) {
      proc.kill('SIGKILL');
      throw new Error(`${name} was not ready within ${timeoutMs} ms:\n${output.join('\n')}`);
    }
    await sleep(100);
  }
  return {
    name,
    proc,
    pid: proc.pid,
    output,
    exited,
    /** SIGTERM, then SIGKILL after `graceMs`; resolves with the exit code or signal. */
    async stop(graceMs = 15_000) {
      if (gone) return exited;
      proc.kill('SIGTERM');
      const timer = setTimeout(() => proc.kill('SIGKILL'), graceMs);
      const code = await exited;
      clearTimeout(timer);
      return code;
    },
  };
}
