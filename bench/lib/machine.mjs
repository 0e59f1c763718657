// A reference of the machine's state, taken at the start and at the end of a run: this VM's speed
// moves by 2-3× within an hour, and unevenly between kinds of work (BENCHMARKS.md, issue 16), so
// runs at different hours are comparable only next to these numbers. About 3 s.
import { fork } from 'node:child_process';
import { createHash } from 'node:crypto';
import net from 'node:net';
import { fileURLToPath } from 'node:url';

const ms = (t0) => Number(process.hrtime.bigint() - t0) / 1e6;
const median = (a) => [...a].sort((x, y) => x - y)[a.length >> 1];

/** The core's own speed: SHA-256 of 64 MB (hardware-assisted; no memory or scheduling in it). */
function sha256MBps() {
  const buf = Buffer.alloc(1 << 20, 7);
  const rounds = [];
  for (let r = 0; r < 3; r++) {
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < 64; i++) createHash('sha256').update(buf).digest();
    rounds.push(64 / (ms(t0) / 1000));
  }
  return Math.round(median(rounds));
}

/** What a request's JavaScript does most: allocate, stringify, parse (and collect the garbage). */
function jsonMs() {
  const doc = { edges: Array.from({ length: 1000 }, (_, i) => ({ node: { id: `m${i}`, content: `шаг ${i} на пути к цели`, createdAt: new Date(i).toISOString() } })) };
  for (let i = 0; i < 20; i++) JSON.parse(JSON.stringify(doc)); // warm-up (JIT)
  const rounds = [];
  for (let r = 0; r < 3; r++) {
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < 100; i++) JSON.parse(JSON.stringify(doc));
    rounds.push(ms(t0) / 100);
  }
  return median(rounds);
}

/**
 * The kernel's part of every request and statement: round trips of 64 bytes over loopback TCP to
 * another process (a write, the other side woken up, its write, this side woken up).
 */
async function loopbackRoundTrip() {
  const child = fork(fileURLToPath(import.meta.url), ['--echo'], { stdio: ['ignore', 'ignore', 'inherit', 'ipc'] });
  try {
    const port = await new Promise((resolve, reject) => {
      child.once('message', resolve);
      child.once('error', reject);
    });
    const sock = net.connect(port, '127.0.0.1');
    sock.setNoDelay(true);
    await new Promise((resolve, reject) => sock.once('connect', resolve).once('error', reject));
    const buf = Buffer.alloc(64, 1);
    const once = () =>
      new Promise((resolve) => {
        sock.once('data', resolve);
        sock.write(buf);
      });
    for (let i = 0; i < 500; i++) await once();
    const times = [];
    const cpu0 = process.cpuUsage();
    for (let i = 0; i < 3000; i++) {
      const t0 = process.hrtime.bigint();
      await once();
      times.push(ms(t0) * 1000);
    }
    const cpu = process.cpuUsage(cpu0);
    sock.destroy();
    times.sort((a, b) => a - b);
    return { p50Us: times[1500], p99Us: times[2970], cpuUs: (cpu.user + cpu.system) / 3000 };
  } finally {
    child.kill();
  }
}

/** What each write statement waits for: the commit of a one-row insert (WAL flush). */
async function commitMs(pool) {
  const table = `bench_commit_probe_${process.pid}`;
  await pool.query(`create table ${table} (id bigserial primary key, v int)`);
  try {
    const times = [];
    for (let i = 0; i < 300; i++) {
      const t0 = process.hrtime.bigint();
      await pool.query(`insert into ${table} (v) values ($1)`, [i]);
      times.push(ms(t0));
    }
    return median(times.slice(50));
  } finally {
    await pool.query(`drop table ${table}`);
  }
}

/** All four; `pool` is a pg pool on the bench's database. */
export async function machineReference(pool) {
  const loopback = await loopbackRoundTrip();
  return { sha256MBps: sha256MBps(), jsonRoundTripMs: jsonMs(), loopback, commitMs: await commitMs(pool) };
}

export function describeReference(r) {
  return (
    `SHA-256 ${r.sha256MBps} MB/s; JSON round trip of 1,000 edges ${r.jsonRoundTripMs.toFixed(2)} ms; ` +
    `loopback TCP round trip p50 ${r.loopback.p50Us.toFixed(0)} µs (p99 ${r.loopback.p99Us.toFixed(0)}, CPU ${r.loopback.cpuUs.toFixed(0)} µs); ` +
    `PostgreSQL commit p50 ${r.commitMs.toFixed(2)} ms`
  );
}

if (process.argv[2] === '--echo') {
  const srv = net.createServer((s) => {
    s.setNoDelay(true);
    s.on('data', (d) => s.write(d));
  });
  srv.listen(0, '127.0.0.1', () => process.send(srv.address().port));
  process.on('disconnect', () => process.exit(0));
}
