// The benchmark harness of issue 5 (see BENCHMARKS.md). Usually started by `npm run bench`
// (bench/bootstrap.mjs builds the server and installs bench/ first).
//
//   node bench/run.mjs [--quick] [--only=1,2,3,4,5,6,7,8] [--profiles=short,mix,long] [--fan=1000,5000] [--profile] [--heap-snapshots] [--embedded]
//
//   --quick     short rounds, small seeds, 200 subscribers, scenarios 1 and 2 on the `mix`
//               profile only: a smoke check (< 2 minutes)
//   --only=…    run only these scenarios (seeding is the same)
//   --profiles=…  content profiles of scenarios 1 and 2 (bench/lib/profiles.mjs: short, mix, long,
//               and ascii, the content of rounds 1–2); default short,mix,long (quick: mix)
//   --profile   the server runs with --cpu-prof; profiles in bench/profiles/<time>/
//               (summarise with: node bench/profile-summary.mjs <file>)
//   --embedded  an embedded PostgreSQL even when DATABASE_URL is set or 127.0.0.1:5432 answers
//   --fan=…     subscriber counts of scenario 5 (default 1000,5000; quick: 200)
//   --heap-snapshots  scenario 5 writes server heap snapshots (idle, then with the subscribers)
//               to bench/profiles/<time>/ (compare with: node bench/heap-diff.mjs <before> <after>)
//
// Only a full run (no --quick, --only, --profiles, --fan, --profile, --heap-snapshots) writes
// bench/results/<date>.json; the others write <date>.quick.json / <date>.partial.json (git-ignored).
//
// This process: the fake model, the autocannon load, the serial latency loops, the streaming
// client. Child processes: the server under test (node dist/src/index.js, NODE_ENV=production),
// PostGraphile (scenarios 1, 2), the raw-pg floor (scenario 3), the subscriber swarm and the bare-ws floor (scenario 5),
// a server with its own memory settings (scenario 7, bench/lib/context-bench.mjs), servers with
// embeddings on, with and without recall (scenario 8, bench/lib/search-bench.mjs).
import { execFileSync, fork } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, renameSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir, totalmem } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createClient } from 'graphql-ws';
import { Agent, request } from 'node:http';
import pg from 'pg';
import WebSocket from 'ws';
import { scenarioContextAssembly } from './lib/context-bench.mjs';
import { scenarioSearch } from './lib/search-bench.mjs';
import { createBenchDatabase, createPostGraphileHelpers, seedTokens, seedVision } from './lib/db.mjs';
import { DEFAULT_PROFILES, PROFILES as CONTENT_PROFILES, QUICK_PROFILES, describeProfile, seedProfileMessages } from './lib/profiles.mjs';
import { FIRST_CHUNK_RE, startFakeModel } from './lib/fake-model.mjs';
import { signJwt } from './lib/jwt.mjs';
import { autocannonRun, httpPost, median, percentile, serialLoop, summarize } from './lib/load.mjs';
import { cpuMs, freePort, postgresCpuDelta, postgresCpuSnapshot, rssBytes, serverNodeFlags, startProcess } from './lib/procs.mjs';
import { describeReference, machineReference } from './lib/machine.mjs';

const BENCH = dirname(fileURLToPath(import.meta.url));
const ROOT = resolve(BENCH, '..');
/** `npm start`'s Node flags, for every server measured (see serverNodeFlags). */
const SERVER_FLAGS = serverNodeFlags(ROOT);

// ------------------------------------------------------------------ options and parameters

const argv = process.argv.slice(2);
const QUICK = argv.includes('--quick');
const PROFILE = argv.includes('--profile');
const EMBEDDED = argv.includes('--embedded');
const HEAP = argv.includes('--heap-snapshots');
const fanArg = argv.find((a) => a.startsWith('--fan='));
const onlyArg = argv.find((a) => a.startsWith('--only='));
const profilesArg = argv.find((a) => a.startsWith('--profiles='));
const ONLY = new Set(onlyArg ? onlyArg.slice(7).split(',').map((s) => s.trim()) : ['1', '2', '3', '4', '5', '6', '7', '8']);
const USAGE = 'usage: node bench/run.mjs [--quick] [--only=1,2,3,4,5,6,7,8] [--profiles=short,mix,long] [--fan=1000,5000] [--profile] [--heap-snapshots] [--embedded]';
for (const a of argv) {
  if (!['--quick', '--profile', '--embedded', '--heap-snapshots'].includes(a) && !['--only=', '--fan=', '--profiles='].some((o) => a.startsWith(o))) {
    console.error(`unknown option ${a}\n${USAGE}`);
    process.exit(2);
  }
}
/** Content profiles of scenarios 1 and 2, in the order they run (bench/lib/profiles.mjs). */
const CONTENT = profilesArg
  ? [...new Set(profilesArg.slice(11).split(',').map((s) => s.trim()).filter(Boolean))]
  : QUICK
    ? QUICK_PROFILES
    : DEFAULT_PROFILES;
for (const name of CONTENT) {
  if (!CONTENT_PROFILES[name]) {
    console.error(`unknown profile ${name} (known: ${Object.keys(CONTENT_PROFILES).join(', ')})\n${USAGE}`);
    process.exit(2);
  }
}
if (CONTENT.length === 0) {
  console.error(`--profiles= needs at least one profile\n${USAGE}`);
  process.exit(2);
}

const P = QUICK
  ? {
      warmupS: 1,
      roundS: 2,
      rounds: 3,
      historyMessages: 200,
      listVisions: 50,
      listMessages: 5,
      listTokens: 5,
      writers: 20,
      writerMessages: 20,
      longHistory: 2_000,
      shortHistory: 100,
      lenRoundS: 1,
      fanSizes: [200],
      fanSends: 5,
      streamIters: 10,
      watchdogS: 600, // a safety net against hangs, not a time limit
    }
  : {
      warmupS: 10,
      roundS: 10,
      rounds: 5,
      historyMessages: 1_000,
      listVisions: 50,
      listMessages: 20,
      listTokens: 10,
      writers: 20,
      writerMessages: 20,
      longHistory: 100_000,
      shortHistory: 100,
      lenRoundS: 5,
      fanSizes: [1_000, 5_000],
      fanSends: 20,
      streamIters: 40,
      watchdogS: 45 * 60,
    };
if (fanArg) P.fanSizes = fanArg.slice(6).split(',').map(Number).filter((n) => n > 0);
const PARTIAL = !QUICK && (Boolean(onlyArg) || Boolean(profilesArg) || Boolean(fanArg) || PROFILE || HEAP);

const TARGETS = {
  // scenarios 1 and 2: issue 16 (≥ 1.3× PostGraphile on each content profile; issue 5 asked ≥ 1.0×)
  historyRead: 1.3,
  list: 1.3,
  // issue 16 (issue 5 asked ≥ 0.5× the raw-pg floor, ≤ 20 KB per idle connection)
  write: 0.75,
  length: 1.2,
  fanP99Ms: 50,
  fanKb: 15,
  streamAddedMs: 5,
  contextLength: 1.2,
  // scenario 8 (issue 12)
  searchTextP50Ms: 20,
  searchHybridP50Ms: 50,
  recallAddedP50Ms: 5,
};

const log = (...a) => console.log(`[bench ${new Date().toISOString().slice(11, 19)}]`, ...a);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const wallNow = () => performance.timeOrigin + performance.now();

// ------------------------------------------------------------------ state shared by scenarios

const secret = randomBytes(32).toString('hex'); // 64 characters, HS256
const tokens = new Map();
const tokenFor = (userId) => {
  if (!tokens.has(userId)) tokens.set(userId, signJwt(secret, { sub: userId }));
  return tokens.get(userId);
};
const headersFor = (userId) => ({ 'content-type': 'application/json', authorization: `Bearer ${tokenFor(userId)}` });

const cleanups = [];
let fake;
let db;
let pool;
let server;
let serverPort;
let serverSeq = 0;
let profileDir;
const results = { scenarios: {}, errors: [] };
/** Table rows as { n: scenario, cells }; printed in scenario order. */
const rows = [];
let currentScenario = 0;
const addRow = (cells) => rows.push({ n: currentScenario, cells });

async function gql(base, userId, query, variables) {
  const res = await httpPost(`${base}/graphql`, headersFor(userId), JSON.stringify({ query, variables }));
  let json;
  try {
    json = JSON.parse(res.text);
  } catch {
    throw new Error(`${base}: answer is not JSON (HTTP ${res.status}): ${res.text.slice(0, 300)}`);
  }
  if (json.errors?.length) throw new Error(`${base}: GraphQL errors: ${JSON.stringify(json.errors).slice(0, 600)}`);
  if (res.status !== 200) throw new Error(`${base}: HTTP ${res.status}`);
  return { data: json.data, headers: res.headers, bytes: Buffer.byteLength(res.text) };
}

const serverUrl = () => `http://127.0.0.1:${serverPort}`;

/**
 * Spawns a server process. `sqlStats` turns on EXPOSE_SQL_STATS (the `x-sql-statements` header):
 * it costs every promise an async-context hook on Node 20, so the measured server runs without it
 * and a separate short-lived server counts the statements (see `countStatements`).
 */
async function spawnOurServer({ sqlStats = false, profile = PROFILE, heap = HEAP, name, env = {} } = {}) {
  const port = await freePort();
  const nodeArgs = [...SERVER_FLAGS];
  serverSeq++;
  if (profile) nodeArgs.push('--cpu-prof', `--cpu-prof-dir=${profileDir}`, `--cpu-prof-name=server-${serverSeq}-${Date.now()}.cpuprofile`);
  if (heap) nodeArgs.push('--heapsnapshot-signal=SIGUSR2', `--diagnostic-dir=${profileDir}`);
  const proc = await startProcess({
    name: name ?? (sqlStats ? 'server (statement counter)' : 'server'),
    cwd: ROOT,
    nodeArgs,
    args: [join(ROOT, 'dist/src/index.js')],
    readyUrl: `http://127.0.0.1:${port}/readyz`,
    env: {
      NODE_ENV: 'production',
      PORT: String(port),
      HOST: '127.0.0.1',
      LOG_LEVEL: 'warn',
      // production needs a link secret with local files; the bench's files stay out of .data/files
      FILE_URL_SECRET: 'bench-file-url-secret-0123456789abcdef',
      FILE_DIR: join(tmpdir(), `vp-bench-files-${process.pid}`),
      DATABASE_URL: db.url,
      DB_POOL_MAX: '10',
      AUTH_JWT_SECRET: secret,
      OPENAI_API_KEY: 'bench',
      OPENAI_BASE_URL: fake.baseURL,
      EXPOSE_SQL_STATS: sqlStats ? 'true' : 'false',
      SHUTDOWN_GRACE_MS: '2000',
      // per-user limits (when the server has them): kept on but far above what one bench user
      // sends, so the limiter's cost is measured and it never answers RATE_LIMITED
      RATE_LIMIT_OPS_PER_SECOND: '1000000',
      RATE_LIMIT_SENDS_PER_MINUTE: '1000000',
      MAX_WS_PER_USER: '100000',
      // no rolling-summary steps in the background: they would compete with the measurements
      // (scenario 4's long vision alone is 500 steps) and cover messages that scenario 4's rounds
      // delete again (a summary references the newest message it covers: the delete then fails)
      SUMMARIES: 'false',
      // no embedding jobs either (scenarios 1-7 measure the core; scenario 8 turns them on)
      EMBEDDINGS: 'false',
      ...env,
    },
  });
  proc.port = port;
  return proc;
}

async function startOurServer() {
  server = await spawnOurServer();
  serverPort = server.port;
  await exerciseEveryOperation(serverUrl());
  return server;
}

/**
 * Runs each kind of operation once on a fresh server before anything is measured, so that
 * whatever a code path switches on for the rest of the process (a library's AsyncLocalStorage,
 * a lazily built cache) is on while the scenarios run, as it would be in production.
 */
async function exerciseEveryOperation(base) {
  const user = 'bench-warm';
  const created = await gql(base, user, 'mutation { createVision(input: { title: "warm" }) { id } }', {});
  const id = created.data.createVision.id;
  await gql(base, user, 'mutation ($id: ID!) { renameVision(id: $id, title: "warm 2") { id } }', { id });
  await gql(base, user, 'mutation ($id: ID!) { setVisionStatus(id: $id, status: FROZEN) { id } }', { id });
  await gql(base, user, 'mutation ($id: ID!) { setVisionStatus(id: $id, status: ACTIVE) { id } }', { id });
  await gql(base, user, Q_SEND, { input: { visionId: id, content: 'warm-up', clientMessageId: 'warm-1' } });
  await gql(base, user, 'mutation ($id: ID!) { stopReply(visionId: $id) }', { id });
  await gql(base, user, '{ visions(first: 5) { totalCount edges { node { id lastMessage { id } tokenUsage { calls } messages(first: 2) { totalCount edges { node { id file { id } } } } } } } tokenUsage { calls } }', {});
}

/** SQL statements of each probe, from a server started with EXPOSE_SQL_STATS for this alone. */
const sqlCounts = {};
async function countStatements(probes) {
  const counter = await spawnOurServer({ sqlStats: true, profile: false, heap: false });
  try {
    for (const [name, user, query, variables] of probes) {
      const r = await gql(`http://127.0.0.1:${counter.port}`, user, query, variables);
      const n = Number(r.headers['x-sql-statements']);
      if (!Number.isFinite(n)) throw new Error(`statement counter: no x-sql-statements header for ${name}`);
      sqlCounts[name] = n;
    }
  } finally {
    await counter.stop();
  }
  log(`SQL statements per request (counted on a separate server with EXPOSE_SQL_STATS): ${Object.entries(sqlCounts).map(([k, v]) => `${k} ${v}`).join(', ')}`);
}

async function stopOurServer() {
  if (!server) return;
  const s = server;
  server = undefined;
  const code = await s.stop();
  if (code !== 0) log(`server exited with ${code}; last output:\n${s.output.slice(-20).join('\n')}`);
}

// ------------------------------------------------------------------ queries

const Q_HISTORY = 'query History($id: ID!) { vision(id: $id) { messages(last: 50) { edges { node { id content sender createdAt } } } } }';
const PG_HISTORY =
  'query History($visionId: UUID!) { allVisionMessages(condition: { visionid: $visionId }, orderBy: [CREATEDAT_DESC, ID_DESC], first: 50) { edges { node { id content sender createdat } } } }';
const Q_LIST = 'query List { visions(first: 50) { edges { node { title lastMessage { content } tokenUsage { totalTokens } } } } }';
const PG_LIST =
  'query List($userId: String!) { allVisions(condition: { userid: $userId }, orderBy: [UPDATEDAT_DESC, ID_DESC], first: 50) { edges { node { title lastMessage: visionMessagesByVisionid(orderBy: [CREATEDAT_DESC, ID_DESC], first: 1) { nodes { content } } tokenTotal } } } }';
const Q_SEND =
  'mutation Send($input: SendMessageInput!) { sendMessage(input: $input) { userMessage { id createdAt } assistantMessage { id content state } } }';
const sendBody = (visionId, content = 'What is my next step?') => JSON.stringify({ query: Q_SEND, variables: { input: { visionId, content } } });

const okBody = (b) => !b.includes('"errors"');

// ------------------------------------------------------------------ measurement helpers

/** Warm-up, then `rounds` rounds; A and B alternate which goes first. */
async function abRounds(runA, runB, { warmupS, roundS, rounds }) {
  await runA(warmupS);
  await runB(warmupS);
  const a = [];
  const b = [];
  for (let r = 0; r < rounds; r++) {
    if (r % 2 === 0) {
      a.push(await runA(roundS));
      b.push(await runB(roundS));
    } else {
      b.push(await runB(roundS));
      a.push(await runA(roundS));
    }
  }
  return { a, b };
}

function checkRun(label, r) {
  const bad = r.errors + r.non2xx + r.mismatches;
  if (r.ok === 0) throw new Error(`${label}: no correct response at all (${JSON.stringify(r)})`);
  if (bad > 0) log(`  ! ${label}: ${r.errors} errors (${r.timeouts} timeouts), ${r.non2xx} non-2xx, ${r.mismatches} wrong bodies`);
}

/** autocannon against `base`, with the server's CPU time per request when `pid` is given. */
async function loadRun(label, { base, pid, ...opts }) {
  const c0 = pid ? cpuMs(pid) : 0;
  const d0 = postgresCpuSnapshot();
  const r = await autocannonRun({ url: `${base}/graphql`, ...opts });
  if (pid) r.cpuMsPerRequest = (cpuMs(pid) - c0) / Math.max(1, r.requests);
  r.dbCpuMsPerRequest = postgresCpuDelta(d0, postgresCpuSnapshot()) / Math.max(1, r.requests);
  checkRun(label, r);
  log(
    `  ${label}: ${r.rps.toFixed(0)} req/s, p50 ${r.p50} ms, p99 ${r.p99} ms${r.cpuMsPerRequest ? `, ${r.cpuMsPerRequest.toFixed(2)} ms CPU/req` : ''}, PostgreSQL ${r.dbCpuMsPerRequest.toFixed(2)} ms CPU/req`,
  );
  await sleep(300);
  return r;
}

const med = (runs, key) => median(runs.map((r) => r[key]));
const fmt = (n, d = 0) => (Number.isFinite(n) ? n.toFixed(d) : 'n/a');

// ------------------------------------------------------------------ seeds

const ids = {};

/** The users of a content profile: one reader (scenario 1), one lister (scenario 2). */
const readerOf = (profile) => `bench-reader-${profile}`;
const listerOf = (profile) => `bench-lister-${profile}`;

/**
 * Scenarios 1 and 2's data, once per content profile (bench/lib/profiles.mjs): a reader with one
 * vision of `P.historyMessages` messages and a lister with `P.listVisions` visions of
 * `P.listMessages` messages and `P.listTokens` tokenscount rows each. Texts are deterministic
 * (profile, vision seed, position); every vision has its own seed, so no two visions' last
 * messages are the same text.
 */
async function seedProfiles() {
  ids.reader = {};
  ids.list = {};
  results.profiles = {};
  for (const profile of CONTENT) {
    const t0 = performance.now();
    // by the profile's place in PROFILES, not in this run's list: `--profiles=mix` seeds the same texts as the default run
    const seedBase = (Object.keys(CONTENT_PROFILES).indexOf(profile) + 1) * 1_000;
    ids.reader[profile] = await seedVision(pool, { userId: readerOf(profile), title: 'Прочитать историю' });
    await seedProfileMessages(pool, ids.reader[profile], profile, P.historyMessages, seedBase);
    ids.list[profile] = [];
    for (let i = 0; i < P.listVisions; i++) {
      const id = await seedVision(pool, { userId: listerOf(profile), title: `Цель ${String(i + 1).padStart(2, '0')}`, rank: i });
      await seedProfileMessages(pool, id, profile, P.listMessages, seedBase + 1 + i);
      ids.list[profile].push(id);
    }
    await seedTokens(pool, listerOf(profile), P.listTokens);
    const d = await describeProfile(pool, profile, [readerOf(profile), listerOf(profile)]);
    results.profiles[profile] = d;
    const side = (who) => (d.bySender[who] ? `${who} ${d.bySender[who].avg_chars} chars / ${d.bySender[who].avg_bytes} bytes (${d.bySender[who].min_bytes}–${d.bySender[who].max_bytes}, stored ${d.bySender[who].avg_stored_bytes})` : '');
    log(`profile ${profile}: seeded in ${((performance.now() - t0) / 1000).toFixed(1)} s; per message ${side('user')}, ${side('assistant')}`);
  }
}

async function seedAll() {
  const t0 = performance.now();
  await seedProfiles();
  ids.writers = [];
  ids.floorWriters = [];
  for (let i = 0; i < P.writers; i++) {
    ids.writers.push(await seedVision(pool, { userId: `bench-writer-${i}`, messages: P.writerMessages }));
    ids.floorWriters.push(await seedVision(pool, { userId: `bench-floor-${i}`, messages: P.writerMessages }));
  }
  ids.long = await seedVision(pool, { userId: 'bench-length', title: 'Long path', messages: P.longHistory });
  ids.short = await seedVision(pool, { userId: 'bench-length', title: 'Short path', messages: P.shortHistory });
  ids.fan = await seedVision(pool, { userId: 'bench-fan', title: 'Fan-out', messages: 10 });
  ids.stream = await seedVision(pool, { userId: 'bench-stream', title: 'Streaming', messages: 10 });
  ids.probe = await seedVision(pool, { userId: 'bench-probe', title: 'Probe', messages: 10 });
  await createPostGraphileHelpers(pool);
  await pool.query('vacuum (analyze) visions, vision_messages, tokenscount');
  log(`seeded in ${((performance.now() - t0) / 1000).toFixed(1)} s (long history: ${P.longHistory.toLocaleString('en')} messages)`);
}

// ------------------------------------------------------------------ scenario 1: history read

/** Medians of the load rounds of one side, with its statements per request. */
function sideSummary(runs, sql) {
  return { rps: med(runs, 'rps'), p99: med(runs, 'p99'), cpuMsPerRequest: med(runs, 'cpuMsPerRequest'), dbCpuMsPerRequest: med(runs, 'dbCpuMsPerRequest'), sql, rounds: runs };
}

/**
 * Runs `fn(profile)` for every content profile of the run. A profile that fails (a check, a
 * process) is recorded as an error of the scenario (the run then exits 1) with its own row, and
 * the next profile still runs.
 */
async function eachProfile(n, fn) {
  for (const profile of CONTENT) {
    try {
      await fn(profile);
    } catch (err) {
      log(`scenario ${n} [${profile}] FAILED: ${err?.stack ?? err}`);
      results.errors.push({ scenario: n, profile, error: String(err?.message ?? err) });
      addRow([`${n} FAILED [${profile}]: ${String(err?.message ?? err).split('\n')[0].slice(0, 60)}`, '', '', '', '', 'error']);
      if (!server && !stopping) await startOurServer().catch(() => undefined);
    }
  }
}

/**
 * Throws unless every list of `lists` ({ side: [[id, content, …], …] }) has `count` entries and
 * they are equal, entry by entry and in order, to the first list's. The message names the first
 * difference (ids, content lengths and beginnings).
 */
function assertSameMessages(label, count, lists) {
  const [[refName, ref], ...others] = Object.entries(lists);
  const show = (e) => (e === undefined ? 'nothing' : JSON.stringify(e.map((x) => (typeof x === 'string' && x.length > 60 ? `${x.slice(0, 60)}… (${x.length} chars)` : x))));
  for (const [name, list] of [[refName, ref], ...others]) {
    if (list.length !== count) throw new Error(`${label}: ${name} returned ${list.length} entries, expected ${count}`);
  }
  for (const [name, list] of others) {
    for (let i = 0; i < count; i++) {
      if (JSON.stringify(list[i]) !== JSON.stringify(ref[i])) {
        throw new Error(`${label}: ${refName} and ${name} differ at entry ${i + 1} of ${count}:\n  ${refName}: ${show(ref[i])}\n  ${name}: ${show(list[i])}`);
      }
    }
  }
}

async function scenarioHistoryRead(pgBase) {
  log(`scenario 1: history read messages(last: 50), 50 connections, ours vs PostGraphile, profiles ${CONTENT.join(', ')}`);
  await eachProfile(1, (profile) => historyReadProfile(pgBase, profile));
}

/** Scenario 1 on one content profile: check that both sides return the same page, then measure. */
async function historyReadProfile(pgBase, profile) {
  const user = readerOf(profile);
  const id = ids.reader[profile];
  log(`scenario 1 [${profile}]: ${CONTENT_PROFILES[profile].description}`);
  // the same page from both servers and from the database: ids and contents, oldest first
  const ours = await gql(serverUrl(), user, Q_HISTORY, { id });
  const theirs = await gql(pgBase, user, PG_HISTORY, { visionId: id });
  const fromDb = await pool.query('select id, content from vision_messages where visionid = $1 order by createdat desc, id desc limit 50', [id]);
  assertSameMessages(`history read [${profile}]`, 50, {
    ours: ours.data.vision.messages.edges.map((e) => [e.node.id, e.node.content]),
    PostGraphile: theirs.data.allVisionMessages.edges.map((e) => [e.node.id, e.node.content]).reverse(),
    database: fromDb.rows.map((m) => [m.id, m.content]).reverse(),
  });
  const bytes = { ours: ours.bytes, postgraphile: theirs.bytes };
  const sqlOurs = sqlCounts[`history [${profile}]`];
  const sqlPg = await pgStatementsPerRequest(pgBase, user, PG_HISTORY, { visionId: id });
  log(`  same 50 messages (ids and contents) from both servers; response ${kb(bytes.ours)} (ours) / ${kb(bytes.postgraphile)} (PostGraphile); SQL statements per request: ours ${sqlOurs}, PostGraphile ${sqlPg}`);

  await versusPostGraphile({
    pgBase,
    key: 'historyRead',
    profile,
    user,
    ours: { query: Q_HISTORY, variables: { id } },
    theirs: { query: PG_HISTORY, variables: { visionId: id } },
    sql: [sqlOurs, sqlPg],
    bytes,
    label: `1 history last:50 [${profile}]: req/s @50 conn`,
    what: 'history',
  });
}

const kb = (bytes) => `${(bytes / 1024).toFixed(1)} KB`;

/**
 * Load rounds of one screen against PostGraphile (50 connections, alternating rounds), the
 * result in `results.scenarios[key][profile]` and its three table rows: req/s, p99, and CPU per
 * request of the Node process (ours / PostGraphile) and of PostgreSQL (its ratio: ours / theirs,
 * of the two sums).
 */
async function versusPostGraphile({ pgBase, key, profile, user, ours, theirs, sql, bytes, label, what }) {
  const common = { connections: 50, headers: headersFor(user), verify: (body) => okBody(body) && body.includes('"edges":[{') };
  const { a: oursRuns, b: pgRuns } = await abRounds(
    (s) => loadRun(`ours [${profile}]`, { base: serverUrl(), pid: server.pid, seconds: s, body: JSON.stringify(ours), ...common }),
    (s) => loadRun(`PostGraphile [${profile}]`, { base: pgBase, pid: pgProc.pid, seconds: s, body: JSON.stringify(theirs), ...common }),
    P,
  );
  const r = {
    profile,
    responseBytes: bytes,
    ours: sideSummary(oursRuns, sql[0]),
    postgraphile: sideSummary(pgRuns, sql[1]),
  };
  r.ratio = r.ours.rps / r.postgraphile.rps;
  r.met = r.ratio >= TARGETS[key];
  results.scenarios[key] ??= {};
  results.scenarios[key][profile] = r;
  const cpu = (side) => `${fmt(side.cpuMsPerRequest, 2)} / ${fmt(side.dbCpuMsPerRequest, 2)}`;
  const cpuSum = (side) => side.cpuMsPerRequest + side.dbCpuMsPerRequest;
  addRow([label, fmt(r.ours.rps), fmt(r.postgraphile.rps), `${fmt(r.ratio, 2)}×`, `≥ ${TARGETS[key].toFixed(1)}×`, r.met ? 'yes' : 'NO']);
  addRow([`  [${profile}] ${what}: p99 ms`, fmt(r.ours.p99), fmt(r.postgraphile.p99), `${fmt(r.ours.p99 / r.postgraphile.p99, 2)}×`, '(info)', '']);
  addRow([`  [${profile}] ${what}: CPU ms/req node / postgres`, cpu(r.ours), cpu(r.postgraphile), `${fmt(cpuSum(r.ours) / cpuSum(r.postgraphile), 2)}×`, '(info)', '']);
}

let pgProc;

async function pgStatementsPerRequest(pgBase, userId, query, variables, n = 20) {
  const stats = async () => (await (await fetch(`${pgBase}/__stats`)).json());
  const s0 = await stats();
  for (let i = 0; i < n; i++) await gql(pgBase, userId, query, variables);
  const s1 = await stats();
  return (s1.statements - s0.statements) / (s1.requests - s0.requests);
}

// ------------------------------------------------------------------ scenario 2: list

/** The list with the ids of the visions and of their last messages: only for the check before measuring. */
const Q_LIST_CHECK = 'query List { visions(first: 50) { edges { node { id title lastMessage { id content } tokenUsage { totalTokens } } } } }';
const PG_LIST_CHECK =
  'query List($userId: String!) { allVisions(condition: { userid: $userId }, orderBy: [UPDATEDAT_DESC, ID_DESC], first: 50) { edges { node { id title lastMessage: visionMessagesByVisionid(orderBy: [CREATEDAT_DESC, ID_DESC], first: 1) { nodes { id content } } tokenTotal } } } }';

async function scenarioList(pgBase) {
  log(`scenario 2: list of 50 visions, 50 connections, ours vs PostGraphile, profiles ${CONTENT.join(', ')}`);
  await eachProfile(2, (profile) => listProfile(pgBase, profile));
}

/** Scenario 2 on one content profile: check that both sides return the same visions and last messages, then measure. */
async function listProfile(pgBase, profile) {
  const user = listerOf(profile);
  log(`scenario 2 [${profile}]: ${CONTENT_PROFILES[profile].description}`);
  // the same visions, last messages (ids and contents) and token totals from both servers, in
  // order; the last messages also as the database has them
  const ours = await gql(serverUrl(), user, Q_LIST_CHECK, {});
  const theirs = await gql(pgBase, user, PG_LIST_CHECK, { userId: 'set-by-the-token' });
  const fromDb = await pool.query(
    `select v.id, v.title, m.id as message_id, m.content
     from visions v left join lateral (select id, content from vision_messages where visionid = v.id order by createdat desc, id desc limit 1) m on true
     where v.userid = $1 order by v.updatedat desc, v.id desc limit 50`,
    [user],
  );
  const oursRows = ours.data.visions.edges.map(({ node: v }) => [v.id, v.title, v.lastMessage?.id ?? null, v.lastMessage?.content ?? null, v.tokenUsage.totalTokens]);
  const theirRows = theirs.data.allVisions.edges.map(({ node: v }) => [v.id, v.title, v.lastMessage.nodes[0]?.id ?? null, v.lastMessage.nodes[0]?.content ?? null, v.tokenTotal]);
  assertSameMessages(`list [${profile}]`, P.listVisions, { ours: oursRows, PostGraphile: theirRows });
  assertSameMessages(`list [${profile}], last messages`, P.listVisions, {
    ours: oursRows.map((v) => v.slice(0, 4)),
    database: fromDb.rows.map((v) => [v.id, v.title, v.message_id, v.content]),
  });
  // the measured queries' answers (without the ids), for their size
  const bytes = {
    ours: (await gql(serverUrl(), user, Q_LIST, {})).bytes,
    postgraphile: (await gql(pgBase, user, PG_LIST, { userId: 'x' })).bytes,
  };
  const sqlOurs = sqlCounts[`list [${profile}]`];
  const sqlPg = await pgStatementsPerRequest(pgBase, user, PG_LIST, { userId: 'x' });
  log(`  same ${P.listVisions} visions and last messages (ids and contents) and token totals from both servers; response ${kb(bytes.ours)} (ours) / ${kb(bytes.postgraphile)} (PostGraphile); SQL statements per request: ours ${sqlOurs}, PostGraphile ${sqlPg}`);

  await versusPostGraphile({
    pgBase,
    key: 'list',
    profile,
    user,
    ours: { query: Q_LIST },
    theirs: { query: PG_LIST, variables: { userId: 'x' } },
    sql: [sqlOurs, sqlPg],
    bytes,
    label: `2 list 50 visions [${profile}]: req/s; SQL/req ${sqlOurs} vs ${fmt(sqlPg, 1)}`,
    what: 'list',
  });
}

// ------------------------------------------------------------------ scenario 3: dialog write

/** Statements of one sendMessage in bench/floor-server.mjs (5 + 1 + 1 + 4, begin/commit included). */
const FLOOR_STATEMENTS = 11;

async function scenarioWrite(floorBase, floorPid) {
  log(`scenario 3: sendMessage, ${P.writers} users on their own vision, ours vs raw-pg floor`);
  const probe = await gql(serverUrl(), 'bench-probe', Q_SEND, { input: { visionId: ids.probe, content: 'probe' } });
  if (probe.data.sendMessage.assistantMessage.state !== 'COMPLETE') throw new Error('sendMessage probe: reply is not COMPLETE');
  const sqlOurs = sqlCounts.send;
  const floorProbe = JSON.parse((await httpPost(`${floorBase}/graphql`, headersFor('bench-floor-0'), sendBody(ids.floorWriters[0]))).text);
  if (floorProbe.data?.sendMessage?.assistantMessage?.state !== 'COMPLETE') throw new Error(`floor probe failed: ${JSON.stringify(floorProbe)}`);
  log(`  SQL statements per sendMessage: ours ${sqlOurs}, floor ${FLOOR_STATEMENTS} (incl. begin/commit)`);

  const verify = (body) => okBody(body) && body.includes('"state":"COMPLETE"');
  const { a: oursRuns, b: floorRuns } = await abRounds(
    (s) =>
      loadRun('ours', {
        base: serverUrl(),
        pid: server.pid,
        seconds: s,
        connections: P.writers,
        perClient: (i) => ({ headers: headersFor(`bench-writer-${i}`), body: sendBody(ids.writers[i]) }),
        headers: headersFor('bench-writer-0'),
        body: sendBody(ids.writers[0]),
        verify,
      }),
    (s) =>
      loadRun('floor', {
        base: floorBase,
        pid: floorPid,
        seconds: s,
        connections: P.writers,
        perClient: (i) => ({ headers: headersFor(`bench-floor-${i}`), body: sendBody(ids.floorWriters[i]) }),
        headers: headersFor('bench-floor-0'),
        body: sendBody(ids.floorWriters[0]),
        verify,
      }),
    P,
  );
  const r = {
    ours: sideSummary(oursRuns, sqlOurs),
    floor: sideSummary(floorRuns, FLOOR_STATEMENTS),
  };
  r.ratio = r.ours.rps / r.floor.rps;
  r.met = r.ratio >= TARGETS.write;
  results.scenarios.write = r;
  addRow([`3 sendMessage: req/s, ${P.writers} users (vs raw pg)`, fmt(r.ours.rps), fmt(r.floor.rps), `${fmt(r.ratio, 2)}×`, `≥ ${TARGETS.write}×`, r.met ? 'yes' : 'NO']);
  addRow(['  sendMessage: p99 ms', fmt(r.ours.p99), fmt(r.floor.p99), `${fmt(r.ours.p99 / r.floor.p99, 2)}×`, '(info)', '']);
}

// ------------------------------------------------------------------ scenario 4: history length

async function scenarioLength() {
  const longN = P.longHistory.toLocaleString('en');
  log(`scenario 4: history length, ${longN} vs ${P.shortHistory} messages (serial, one request at a time)`);
  const user = 'bench-length';
  const headers = headersFor(user);
  const url = `${serverUrl()}/graphql`;
  const mark = (await pool.query('select now() as t')).rows[0].t;
  const send = (visionId) => async () => {
    const res = await httpPost(url, headers, sendBody(visionId));
    if (!res.text.includes('"state":"COMPLETE"')) throw new Error(`sendMessage failed: ${res.text.slice(0, 300)}`);
  };
  const read = (visionId) => {
    const body = JSON.stringify({ query: Q_HISTORY, variables: { id: visionId } });
    return async () => {
      const res = await httpPost(url, headers, body);
      if (!res.text.includes('"edges":[{') || res.text.includes('"errors"')) throw new Error(`history read failed: ${res.text.slice(0, 300)}`);
    };
  };
  // every round starts from the seeded state: the messages a round added are deleted
  const reset = async () => {
    await pool.query('delete from vision_messages where visionid = any($1::uuid[]) and createdat >= $2', [[ids.long, ids.short], mark]);
    await pool.query('vacuum vision_messages');
  };
  const one = async (visionId, seconds) => {
    const w = summarize(await serialLoop(send(visionId), { seconds, maxCount: 5_000 }));
    const rd = summarize(await serialLoop(read(visionId), { seconds, maxCount: 20_000 }));
    await reset();
    return { write: w, read: rd };
  };
  const { a: longRuns, b: shortRuns } = await abRounds(
    (s) => one(ids.long, s),
    (s) => one(ids.short, s),
    { warmupS: Math.min(P.lenRoundS, 2), roundS: P.lenRoundS, rounds: P.rounds },
  );
  const pick = (runs, kind, key) => median(runs.map((r) => r[kind][key]));
  const r = {
    sendMessage: {
      long: { p50: pick(longRuns, 'write', 'p50'), p99: pick(longRuns, 'write', 'p99') },
      short: { p50: pick(shortRuns, 'write', 'p50'), p99: pick(shortRuns, 'write', 'p99') },
    },
    read: {
      long: { p50: pick(longRuns, 'read', 'p50'), p99: pick(longRuns, 'read', 'p99') },
      short: { p50: pick(shortRuns, 'read', 'p50'), p99: pick(shortRuns, 'read', 'p99') },
    },
    messages: { long: P.longHistory, short: P.shortHistory },
    rounds: { long: longRuns, short: shortRuns },
  };
  for (const k of ['sendMessage', 'read']) {
    r[k].ratio = r[k].long.p50 / r[k].short.p50;
    r[k].p99Ratio = r[k].long.p99 / r[k].short.p99;
    r[k].met = r[k].ratio <= TARGETS.length;
  }
  results.scenarios.historyLength = r;
  log(`  sendMessage p50 ${fmt(r.sendMessage.long.p50, 2)} vs ${fmt(r.sendMessage.short.p50, 2)} ms; read p50 ${fmt(r.read.long.p50, 2)} vs ${fmt(r.read.short.p50, 2)} ms`);
  addRow([`4 sendMessage p50 ms: ${longN} vs ${P.shortHistory} msgs`, fmt(r.sendMessage.long.p50, 2), fmt(r.sendMessage.short.p50, 2), `${fmt(r.sendMessage.ratio, 2)}×`, `≤ ${TARGETS.length}×`, r.sendMessage.met ? 'yes' : 'NO']);
  addRow([`  messages(last: 50) p50 ms: ${longN} vs ${P.shortHistory}`, fmt(r.read.long.p50, 2), fmt(r.read.short.p50, 2), `${fmt(r.read.ratio, 2)}×`, `≤ ${TARGETS.length}×`, r.read.met ? 'yes' : 'NO']);
}

// ------------------------------------------------------------------ scenario 5: fan-out

function forkSubscribers() {
  const child = fork(join(BENCH, 'subscribers.mjs'), [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const waiting = [];
  child.on('message', (m) => waiting.shift()?.(m));
  const exited = new Promise((r) => child.on('exit', r));
  return {
    child,
    exited,
    ask(msg, timeoutMs = 120_000) {
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`subscribers: no answer to ${msg.cmd} within ${timeoutMs} ms`)), timeoutMs);
        waiting.push((m) => {
          clearTimeout(timer);
          if (m.error) reject(new Error(`subscribers: ${m.error}`));
          else resolve(m);
        });
        child.send(msg);
      });
    },
    async close() {
      if (child.exitCode !== null) return;
      child.send({ cmd: 'close' });
      const t = setTimeout(() => child.kill('SIGKILL'), 10_000);
      await exited;
      clearTimeout(t);
    },
  };
}

/** One graphql-ws client in this process: connects, subscribes, receives one event, leaves (warms the server's WS path). */
async function warmWebSocket(userId, visionId) {
  const client = createClient({
    url: `ws://127.0.0.1:${serverPort}/graphql`,
    webSocketImpl: WebSocket,
    lazy: false,
    retryAttempts: 0,
    connectionParams: { authorization: `Bearer ${tokenFor(userId)}` },
  });
  let got;
  const received = new Promise((r) => (got = r));
  const unsubscribe = client.subscribe(
    { query: 'subscription W($v: ID!) { messageAdded(visionId: $v) { id } }', variables: { v: visionId } },
    { next: () => got(), error: () => got(), complete: () => undefined },
  );
  await sleep(300);
  await gql(serverUrl(), userId, Q_SEND, { input: { visionId, content: 'warm-up' } });
  await Promise.race([received, sleep(5000)]);
  unsubscribe();
  await client.dispose();
}

/** SIGUSR2 → the server (started with --heapsnapshot-signal) writes a .heapsnapshot; waits until it is complete. */
async function heapSnapshot(label) {
  const before = new Set(readdirSync(profileDir));
  process.kill(server.pid, 'SIGUSR2');
  for (let i = 0; i < 600; i++) {
    await sleep(500);
    const fresh = readdirSync(profileDir).filter((f) => f.endsWith('.heapsnapshot') && !before.has(f));
    if (fresh.length) {
      // the file is written synchronously by the server's main thread: it answers again once done
      await fetch(`${serverUrl()}/healthz`);
      const target = join(profileDir, `server-${serverSeq}-${label}.heapsnapshot`);
      renameSync(join(profileDir, fresh[0]), target);
      log(`  heap snapshot: ${target}`);
      return target;
    }
  }
  throw new Error('heap snapshot was not written');
}

/** Least-squares slope of y over x for [x, y] points. */
function slope(points) {
  const n = points.length;
  const mx = points.reduce((a, [x]) => a + x, 0) / n;
  const my = points.reduce((a, [, y]) => a + y, 0) / n;
  let num = 0;
  let den = 0;
  for (const [x, y] of points) {
    num += (x - mx) * (y - my);
    den += (x - mx) ** 2;
  }
  return den ? num / den : 0;
}

/**
 * Resident memory once it has settled: sampled every 500 ms until it moved less than 0.5 % over
 * the last 2 s (at least 3 s, at most 15 s; 1 and 4 s with --quick). Right after a burst of work V8 may still be growing
 * or giving back heap pages; both states of the per-connection figure are measured alike.
 */
async function settledRss(pid) {
  const samples = [];
  const t0 = Date.now();
  for (;;) {
    samples.push(rssBytes(pid));
    const elapsed = Date.now() - t0;
    if (elapsed >= (QUICK ? 1000 : 3000) && samples.length > 4) {
      const recent = samples.slice(-5);
      const spread = (Math.max(...recent) - Math.min(...recent)) / recent[recent.length - 1];
      if (spread < 0.005 || elapsed >= (QUICK ? 4000 : 15_000)) return recent[recent.length - 1];
    }
    await sleep(500);
  }
}

/** A sendMessage on `base` whose two events the swarm collects: receipt times of the user message's. */
function fanSender(subs, base, user, visionId, expect) {
  return async () => {
    const t0 = wallNow();
    const { data } = await gql(base, user, Q_SEND, { input: { visionId, content: 'Fan-out message' } });
    const userId = data.sendMessage.userMessage.id;
    const replyId = data.sendMessage.assistantMessage.id;
    const got = await subs.ask({ cmd: 'collect', ids: [userId, replyId], expect, timeoutMs: 30_000 }, 60_000);
    const u = got.perId[userId];
    return { t0, createdAt: u.createdAt, recv: u.recv, received: u.received, replyReceived: got.perId[replyId].received };
  };
}

/** `sends` sends, one after another (100 ms apart): commit→receipt and send→receipt percentiles, CPU per delivered event. */
async function fanRound({ sendAndCollect, connected, pid, subs, sends }) {
  const fromCommit = [];
  const fromSend = [];
  let expected = 0;
  let received = 0;
  const cpuServer0 = cpuMs(pid);
  const cpuClients0 = cpuMs(subs.child.pid);
  for (let i = 0; i < sends; i++) {
    const s = await sendAndCollect();
    expected += connected;
    received += s.received;
    for (const t of s.recv) {
      fromCommit.push(t - s.createdAt);
      fromSend.push(t - s.t0);
    }
    await sleep(100);
  }
  return {
    fromCommit: { p50: percentile(fromCommit, 50), p99: percentile(fromCommit, 99), max: fromCommit.reduce((a, b) => Math.max(a, b), -Infinity) },
    fromSend: { p50: percentile(fromSend, 50), p99: percentile(fromSend, 99), min: fromSend.reduce((a, b) => Math.min(a, b), Infinity) },
    delivered: received / expected,
    // CPU per delivered event (2 events per send: the user message and the reply);
    // the server's share includes the sendMessage requests themselves
    serverCpuUsPerEvent: ((cpuMs(pid) - cpuServer0) * 1000) / Math.max(1, 2 * received),
    clientsCpuUsPerEvent: ((cpuMs(subs.child.pid) - cpuClients0) * 1000) / Math.max(1, 2 * received),
  };
}

/** A warm-up round, then P.rounds measured rounds, each logged. */
async function fanRounds(opts, label) {
  await fanRound({ ...opts, sends: Math.max(2, Math.round(P.fanSends / 4)) });
  const rounds = [];
  for (let r = 0; r < P.rounds; r++) {
    const rr = await fanRound({ ...opts, sends: P.fanSends });
    log(
      `  ${label}round ${r + 1}: commit→receipt p50 ${fmt(rr.fromCommit.p50, 1)} ms, p99 ${fmt(rr.fromCommit.p99, 1)} ms; send→receipt p99 ${fmt(rr.fromSend.p99, 1)} ms; ` +
        `delivered ${(rr.delivered * 100).toFixed(1)}%; CPU per event: server ${fmt(rr.serverCpuUsPerEvent)} µs, subscribers ${fmt(rr.clientsCpuUsPerEvent)} µs`,
    );
    rounds.push(rr);
  }
  return rounds;
}

/** The medians of the measured rounds, as results/<date>.json keeps them. */
function fanSummary(rounds) {
  const med = (f) => median(rounds.map(f));
  return {
    p99FromCommitMs: med((r) => r.fromCommit.p99),
    p50FromCommitMs: med((r) => r.fromCommit.p50),
    p99FromSendMs: med((r) => r.fromSend.p99),
    delivered: med((r) => r.delivered),
    serverCpuUsPerEvent: med((r) => r.serverCpuUsPerEvent),
    clientsCpuUsPerEvent: med((r) => r.clientsCpuUsPerEvent),
    rounds,
  };
}

async function fanOutOnce(n) {
  log(`  fan-out ${n.toLocaleString('en')}: fresh server process`);
  await stopOurServer();
  await startOurServer();
  const user = 'bench-fan';
  for (let i = 0; i < 5; i++) await gql(serverUrl(), user, Q_SEND, { input: { visionId: ids.fan, content: 'warm-up' } });
  await warmWebSocket(user, ids.fan);
  if (HEAP) await heapSnapshot(`idle-${n}`);
  const rss0 = await settledRss(server.pid);

  const subs = forkSubscribers();
  try {
    // connected in four steps, RSS settled after each: the per-connection figure is the slope of
    // RSS over the five points (least squares), which one late heap resize cannot swing much
    const points = [[0, rss0]];
    const conn = { connected: 0, failed: 0, ms: 0 };
    for (let step = 1; step <= 4; step++) {
      const k = Math.round((n * step) / 4) - Math.round((n * (step - 1)) / 4);
      const part = await subs.ask({ cmd: 'connect', url: `ws://127.0.0.1:${serverPort}/graphql`, token: tokenFor(user), visionId: ids.fan, n: k, batch: 100 }, 300_000);
      conn.connected += part.connected;
      conn.failed += part.failed;
      conn.ms += part.ms;
      points.push([conn.connected, await settledRss(server.pid)]);
    }
    log(`  ${conn.connected} connected (${conn.failed} failed) in ${(conn.ms / 1000).toFixed(1)} s`);
    if (conn.connected === 0) throw new Error('fan-out: no subscriber could connect');

    const sendAndCollect = fanSender(subs, serverUrl(), user, ids.fan, conn.connected);

    // every subscription is live once every client has the probe; then the connections idle
    const probe = await sendAndCollect();
    if (probe.received < conn.connected) log(`  ! probe reached ${probe.received} of ${conn.connected} subscribers`);
    const rss1 = await settledRss(server.pid);
    points.push([conn.connected, rss1]);
    if (HEAP) await heapSnapshot(`with-${n}-subscribers`);
    const perConnKb = slope(points) / 1024;
    const simpleKb = (rss1 - rss0) / conn.connected / 1024;
    log(
      `  server RSS ${(rss0 / 2 ** 20).toFixed(1)} MB idle → ${points.slice(1, -1).map(([, r]) => (r / 2 ** 20).toFixed(1)).join(' → ')} MB at each quarter → ${(rss1 / 2 ** 20).toFixed(1)} MB after the probe: ${perConnKb.toFixed(1)} KB per connection (slope; end − start: ${simpleKb.toFixed(1)} KB)`,
    );

    const rounds = await fanRounds({ sendAndCollect, connected: conn.connected, pid: server.pid, subs }, '');
    return {
      subscribers: conn.connected,
      failedConnections: conn.failed,
      connectSeconds: conn.ms / 1000,
      rssIdleBytes: rss0,
      rssWithSubscribersBytes: rss1,
      perConnectionKb: perConnKb,
      perConnectionKbEndMinusStart: simpleKb,
      rssPoints: points,
      ...fanSummary(rounds),
    };
  } finally {
    await subs.close();
  }
}

/**
 * The same swarm, rounds and method against bench/fanout-floor-server.mjs (a bare `ws` server that
 * writes the two events' frames in one loop each): what the machine, `ws` and the swarm cost
 * without us, measured right after ours.
 */
async function fanOutFloor(n) {
  const port = await freePort();
  const floor = await startProcess({
    name: 'fan-out floor',
    cwd: BENCH,
    nodeArgs: SERVER_FLAGS,
    args: [join(BENCH, 'fanout-floor-server.mjs')],
    readyUrl: `http://127.0.0.1:${port}/healthz`,
    env: { NODE_ENV: 'production', PORT: String(port) },
  });
  const subs = forkSubscribers();
  try {
    const conn = await subs.ask({ cmd: 'connect', url: `ws://127.0.0.1:${port}/graphql`, token: 'floor', visionId: 'floor', n, batch: 100 }, 300_000);
    if (conn.connected === 0) throw new Error('fan-out floor: no subscriber could connect');
    const sendAndCollect = fanSender(subs, `http://127.0.0.1:${port}`, 'bench-fan', 'floor', conn.connected);
    await sendAndCollect();
    await sleep(1000);
    const rounds = await fanRounds({ sendAndCollect, connected: conn.connected, pid: floor.pid, subs }, 'floor ');
    return {
      subscribers: conn.connected,
      ...fanSummary(rounds),
    };
  } finally {
    await subs.close();
    await floor.stop();
  }
}

async function scenarioFanOut() {
  log(`scenario 5: fan-out to ${P.fanSizes.map((n) => n.toLocaleString('en')).join(' and ')} graphql-ws subscribers of one vision`);
  const out = {};
  for (const n of P.fanSizes) {
    const r = await fanOutOnce(n);
    log(`  fan-out ${n.toLocaleString('en')}: the floor (bare ws server), same swarm`);
    r.floor = await fanOutFloor(n);
    // p99 ≤ 50 ms at every size: issue 5 judged it at 1,000, issue 16 at 5,000 too
    r.p99Met = r.p99FromCommitMs <= TARGETS.fanP99Ms;
    // memory is judged at the largest size: at 1,000 connections (~15 MB) one resize of V8's heap
    // (tens of MB, whenever the GC decides) can swing the figure either way; at 5,000 it cannot
    r.memMet = n === Math.max(...P.fanSizes) ? r.perConnectionKb <= TARGETS.fanKb : null;
    out[n] = r;
    const label = n.toLocaleString('en');
    addRow([
      `5 fan-out ${label}: p99 commit→receipt ms (vs bare ws)`,
      fmt(r.p99FromCommitMs, 1),
      fmt(r.floor.p99FromCommitMs, 1),
      `${fmt(r.p99FromCommitMs / r.floor.p99FromCommitMs, 2)}×`,
      r.p99Met === null ? '(info)' : `≤ ${TARGETS.fanP99Ms} ms`,
      r.p99Met === null ? '' : r.p99Met ? 'yes' : 'NO',
    ]);
    addRow([
      `  fan-out ${label}: RSS per idle connection KB`,
      fmt(r.perConnectionKb, 1),
      '–',
      '–',
      r.memMet === null ? '(info)' : `≤ ${TARGETS.fanKb} KB`,
      r.memMet === null ? '' : r.memMet ? 'yes' : 'NO',
    ]);
  }
  results.scenarios.fanOut = out;
}

// ------------------------------------------------------------------ scenario 6: streaming overhead

const directAgent = new Agent({ keepAlive: true, maxSockets: 4 });

/** Reads the fake model directly (node:http, SSE); ms from its first chunk being written to this client having it. */
function directFirstChunk(body) {
  return new Promise((resolve, reject) => {
    const url = new URL(`${fake.baseURL}/chat/completions`);
    const req = request(url, { method: 'POST', agent: directAgent, headers: { 'content-type': 'application/json', authorization: 'Bearer bench', 'content-length': Buffer.byteLength(body) } }, (res) => {
      let buf = '';
      let latency;
      res.setEncoding('utf8');
      res.on('data', (chunk) => {
        if (latency !== undefined) return;
        const t = performance.now();
        buf += chunk;
        const i = buf.indexOf('\n\n');
        if (i < 0) return;
        const m = FIRST_CHUNK_RE.exec(JSON.parse(buf.slice(6, i)).choices?.[0]?.delta?.content ?? '');
        if (!m) return reject(new Error(`direct read: unexpected first event ${buf.slice(0, i)}`));
        latency = t - Number(m[1]);
      });
      res.on('end', () => (latency === undefined ? reject(new Error('direct read: no first chunk')) : resolve(latency)));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(body);
  });
}

async function scenarioStreaming() {
  log('scenario 6: streaming overhead, model first chunk → first replyDelta vs → a client reading the model directly');
  const user = 'bench-stream';
  const client = createClient({
    url: `ws://127.0.0.1:${serverPort}/graphql`,
    webSocketImpl: WebSocket,
    lazy: false,
    retryAttempts: 0,
    connectionParams: { authorization: `Bearer ${tokenFor(user)}` },
  });
  let waiter = null;
  const unsubscribe = client.subscribe(
    { query: 'subscription S($v: ID!) { replyDelta(visionId: $v) { replyId seq delta done } }', variables: { v: ids.stream } },
    {
      next: (msg) => {
        const t = performance.now();
        const d = msg.data?.replyDelta;
        if (d && d.seq === 1 && waiter) {
          const m = FIRST_CHUNK_RE.exec(d.delta);
          if (m) {
            const w = waiter;
            waiter = null;
            w(t - Number(m[1]));
          }
        }
      },
      error: (err) => log('  ! replyDelta subscription error', err),
      complete: () => undefined,
    },
  );
  await sleep(500);
  const url = `${serverUrl()}/graphql`;
  const headers = headersFor(user);
  // what the server sends the model: a system prompt and the history window (10 messages here)
  const directBody = JSON.stringify({
    model: 'gpt-4.1',
    stream: true,
    stream_options: { include_usage: true },
    messages: [
      { role: 'system', content: 'You are a warm, practical coach. '.repeat(10) },
      ...Array.from({ length: 10 }, (_, i) => ({ role: i % 2 ? 'assistant' : 'user', content: 'step by step toward the vision '.repeat(6) })),
    ],
  });
  const viaServer = async () => {
    const first = new Promise((resolve, reject) => {
      waiter = resolve;
      setTimeout(() => reject(new Error('no replyDelta within 10 s')), 10_000).unref();
    });
    const res = httpPost(url, headers, sendBody(ids.stream, 'How do I keep going?'));
    const latency = await first;
    const r = await res;
    if (!r.text.includes('"state":"COMPLETE"')) throw new Error(`sendMessage failed: ${r.text.slice(0, 300)}`);
    return latency;
  };
  const round = async (iters) => {
    const server = [];
    const direct = [];
    for (let i = 0; i < iters; i++) {
      server.push(await viaServer());
      direct.push(await directFirstChunk(directBody));
      await sleep(20);
    }
    return { server: summarize(server), direct: summarize(direct) };
  };
  try {
    await round(Math.max(5, P.streamIters / 4));
    const rounds = [];
    for (let r = 0; r < P.rounds; r++) {
      const rr = await round(P.streamIters);
      log(`  round ${r + 1}: via server p50 ${fmt(rr.server.p50, 2)} ms, direct p50 ${fmt(rr.direct.p50, 2)} ms`);
      rounds.push(rr);
    }
    const r = {
      serverP50: median(rounds.map((x) => x.server.p50)),
      directP50: median(rounds.map((x) => x.direct.p50)),
      serverP99: median(rounds.map((x) => x.server.p99)),
      directP99: median(rounds.map((x) => x.direct.p99)),
      rounds,
    };
    r.addedP50 = r.serverP50 - r.directP50;
    r.met = r.addedP50 <= TARGETS.streamAddedMs;
    results.scenarios.streaming = r;
    addRow(['6 first chunk → client p50 ms (vs direct)', fmt(r.serverP50, 2), fmt(r.directP50, 2), `+${fmt(r.addedP50, 2)} ms`, `≤ +${TARGETS.streamAddedMs} ms`, r.met ? 'yes' : 'NO']);
  } finally {
    unsubscribe();
    await client.dispose();
  }
}

// ------------------------------------------------------------------ scenario 7: context assembly

function scenarioContext() {
  return scenarioContextAssembly({
    quick: QUICK,
    root: ROOT,
    db,
    pool,
    fake,
    log,
    fmt,
    addRow,
    results,
    target: TARGETS.contextLength,
    headersFor,
    sendQuery: Q_SEND,
    // the main server stays up (idle) meanwhile
    spawnServer: (env) => spawnOurServer({ name: 'server (scenario 7)', env }),
    warm: exerciseEveryOperation,
  });
}

// ------------------------------------------------------------------ scenario 8: search and recall

function scenarioSearchRecall() {
  return scenarioSearch({
    quick: QUICK,
    root: ROOT,
    db, // the scenario creates a database of its own next to it (<name>_s8)
    fake,
    log,
    fmt,
    addRow,
    results,
    targets: { textP50Ms: TARGETS.searchTextP50Ms, hybridP50Ms: TARGETS.searchHybridP50Ms, recallAddedMs: TARGETS.recallAddedP50Ms },
    headersFor,
    sendQuery: Q_SEND,
    // the main server stays up (idle) meanwhile
    spawnServer: (env, name) => spawnOurServer({ name, env }),
    warm: exerciseEveryOperation,
    defer: (fn) => cleanups.push(fn),
  });
}

// ------------------------------------------------------------------ output

function printTable() {
  const head = ['scenario', 'ours', 'baseline', 'ratio', 'target', 'met?'];
  const body = rows.map((r) => r.cells);
  const all = [head, ...body];
  const w = head.map((_, i) => Math.max(...all.map((r) => String(r[i]).length)));
  const line = (r) => `| ${r.map((c, i) => (i === 0 ? String(c).padEnd(w[i]) : String(c).padStart(w[i]))).join(' | ')} |`;
  const sep = `|${w.map((x, i) => (i === 0 ? `:${'-'.repeat(x + 1)}` : `${'-'.repeat(x + 1)}:`)).join('|')}|`;
  return [line(head), sep, ...body.map(line)].join('\n');
}

function gitCommit() {
  try {
    const head = execFileSync('git', ['rev-parse', 'HEAD'], { cwd: ROOT, encoding: 'utf8' }).trim();
    const dirty = execFileSync('git', ['status', '--porcelain', '--', 'src', 'migrations'], { cwd: ROOT, encoding: 'utf8' }).trim() !== '';
    return dirty ? `${head} (src or migrations modified)` : head;
  } catch {
    return 'unknown';
  }
}

// ------------------------------------------------------------------ main

async function cleanup() {
  while (cleanups.length) {
    const fn = cleanups.pop();
    try {
      await fn();
    } catch (err) {
      log('cleanup step failed:', err?.message ?? err);
    }
  }
}

async function main() {
  const started = new Date();
  const loadAtStart = loadavg().map((x) => Math.round(x * 100) / 100);
  log(`Vision Path benchmarks${QUICK ? ' (--quick)' : ''}: node ${process.version}, ${cpus().length} × ${cpus()[0]?.model ?? 'cpu'}, ${(totalmem() / 2 ** 30).toFixed(0)} GB`);
  if (loadAtStart[0] > 0.5) log(`! load average ${loadAtStart.join(' ')} at the start: if anything else is running, the numbers will be noisy`);
  if (QUICK) log('QUICK MODE: short rounds and small seeds, a smoke check of the harness: the numbers are NOT meaningful');
  if (!existsSync(join(ROOT, 'dist/src/index.js'))) throw new Error('dist/src/index.js is missing: run `npm run build` (npm run bench does)');
  if (PROFILE || HEAP) {
    profileDir = join(BENCH, 'profiles', started.toISOString().replace(/[:.]/g, '-'));
    mkdirSync(profileDir, { recursive: true });
    log(`CPU profiles / heap snapshots of the server go to ${profileDir}`);
  }

  fake = await startFakeModel();
  cleanups.push(() => fake.close());
  db = await createBenchDatabase({ root: ROOT, log, forceEmbedded: EMBEDDED });
  cleanups.push(() => db.close());
  log(`database ${db.name} on ${db.source} (PostgreSQL ${db.version})`);

  await startOurServer(); // applies the migrations
  cleanups.push(() => stopOurServer());
  log(`server pid ${server.pid} on ${serverUrl()}`);
  pool = new pg.Pool({ connectionString: db.url, max: 4 });
  cleanups.push(() => pool.end());
  const referenceAtStart = await machineReference(pool);
  log(`machine at the start: ${describeReference(referenceAtStart)}`);
  log(`servers (ours, PostGraphile, the floors) run with npm start's Node flags: ${SERVER_FLAGS.join(' ') || '(none)'}`);
  await seedAll();
  await countStatements([
    ...CONTENT.flatMap((p) => [
      [`history [${p}]`, readerOf(p), Q_HISTORY, { id: ids.reader[p] }],
      [`list [${p}]`, listerOf(p), Q_LIST, {}],
    ]),
    // the probe vision's messages are seeded without token counts: its first send also stores
    // them (one statement more); the second is what every later send runs (test/statements.test.ts)
    ['send (first, stores the seeded rows\' token counts)', 'bench-probe', Q_SEND, { input: { visionId: ids.probe, content: 'probe' } }],
    ['send', 'bench-probe', Q_SEND, { input: { visionId: ids.probe, content: 'probe again' } }],
  ]);

  const want = (n) => ONLY.has(String(n));
  let pgBase;
  if (want(1) || want(2)) {
    const port = await freePort();
    pgBase = `http://127.0.0.1:${port}`;
    pgProc = await startProcess({
      name: 'postgraphile',
      cwd: BENCH,
      nodeArgs: SERVER_FLAGS,
      args: [join(BENCH, 'postgraphile-server.mjs')],
      readyUrl: `${pgBase}/healthz`,
      env: { NODE_ENV: 'production', PORT: String(port), DATABASE_URL: db.url, JWT_SECRET: secret, POOL_MAX: '10' },
    });
    cleanups.push(() => pgProc.stop());
    log(`PostGraphile pid ${pgProc.pid} on ${pgBase}`);
  }
  let floor;
  if (want(3)) {
    const port = await freePort();
    floor = await startProcess({
      name: 'floor',
      cwd: BENCH,
      nodeArgs: SERVER_FLAGS,
      args: [join(BENCH, 'floor-server.mjs')],
      readyUrl: `http://127.0.0.1:${port}/healthz`,
      env: { NODE_ENV: 'production', PORT: String(port), DATABASE_URL: db.url, JWT_SECRET: secret, POOL_MAX: '10', MODEL_URL: fake.baseURL },
    });
    floor.base = `http://127.0.0.1:${port}`;
    cleanups.push(() => floor.stop());
    log(`raw-pg floor pid ${floor.pid} on ${floor.base}`);
  }

  const scenarios = [
    [1, () => scenarioHistoryRead(pgBase)],
    [2, () => scenarioList(pgBase)],
    [3, () => scenarioWrite(floor.base, floor.pid)],
    [4, () => scenarioLength()],
    [7, () => scenarioContext()],
    [8, () => scenarioSearchRecall()],
    [6, () => scenarioStreaming()], // before the fan-out, which restarts the server
    [5, () => scenarioFanOut()], // last: it restarts the server for each size
  ];
  for (const [n, fn] of scenarios) {
    if (!want(n)) continue;
    currentScenario = n;
    try {
      await fn();
    } catch (err) {
      log(`scenario ${n} FAILED: ${err?.stack ?? err}`);
      results.errors.push({ scenario: n, error: String(err?.message ?? err) });
      addRow([`${n} FAILED: ${String(err?.message ?? err).split('\n')[0].slice(0, 60)}`, '', '', '', '', 'error']);
      // (not when interrupted: cleanup has stopped it, and the new one would outlive the harness)
      if (!server && !stopping) await startOurServer().catch(() => undefined);
    }
  }
  rows.sort((a, b) => a.n - b.n); // stable: a scenario's rows keep their order
  const referenceAtEnd = await machineReference(pool);
  log(`machine at the end:   ${describeReference(referenceAtEnd)}`);

  const finished = new Date();
  const table = printTable();
  const out = {
    date: started.toISOString().slice(0, 10),
    startedAt: started.toISOString(),
    finishedAt: finished.toISOString(),
    mode: QUICK ? 'quick (numbers are not meaningful)' : PARTIAL ? `partial (${argv.join(' ')})` : 'full',
    scenariosRun: [...ONLY].sort(),
    machine: { node: process.version, cpus: cpus().length, cpuModel: cpus()[0]?.model, memoryGb: Math.round(totalmem() / 2 ** 30), loadAverageAtStart: loadAtStart, postgres: `${db.version} (${db.source})`, referenceAtStart, referenceAtEnd, serverNodeFlags: SERVER_FLAGS },
    commit: gitCommit(),
    parameters: P,
    targets: TARGETS,
    ...results,
    table: rows.map((r) => r.cells),
  };
  mkdirSync(join(BENCH, 'results'), { recursive: true });
  const file = join(BENCH, 'results', `${out.date}${QUICK ? '.quick' : PARTIAL ? '.partial' : ''}.json`);
  writeFileSync(`${file}.tmp`, `${JSON.stringify(out, null, 2)}\n`);
  renameSync(`${file}.tmp`, file);

  console.log('');
  if (QUICK) console.log('quick mode: numbers are not meaningful (short rounds, small seeds, 200 subscribers): a smoke check of the harness');
  console.log(table);
  console.log(`\nresults: ${file} (${((finished - started) / 1000).toFixed(0)} s)`);
  return results.errors.length ? 1 : 0;
}

const watchdog = setTimeout(async () => {
  stopping = true;
  log(`watchdog: the run exceeded ${P.watchdogS} s; stopping`);
  await cleanup();
  process.exit(1);
}, P.watchdogS * 1000);
watchdog.unref();

let stopping = false;
for (const sig of ['SIGINT', 'SIGTERM']) {
  process.once(sig, async () => {
    stopping = true;
    log(`${sig}: cleaning up`);
    await cleanup();
    process.exit(130);
  });
}

let code = 1;
try {
  code = await main();
} catch (err) {
  log(`harness failed: ${err?.stack ?? err}`);
  code = 1;
} finally {
  await cleanup();
}
process.exit(code);
