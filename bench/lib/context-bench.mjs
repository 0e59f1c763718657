// Scenario 7 (issue 11, memory of the whole path): context assembly must not grow with history.
//
// One user, two visions seeded by SQL with the same newest messages: A has 100 eligible messages
// and no summary; B has 10,000 and a rolling summary (~1,000 tokens) covering all but the newest
// 40. A server of its own (MAX_MESSAGES=40, SUMMARIES=false: the summary is seeded and
// no background summary call competes) sends the model the same window for both, B's with the
// summary in front. Measured, one request at a time:
// - send → model: from the start of the `sendMessage` POST (this process) to the fake model's
//   `request` event for that send (its headers parsed: the first bytes of the request; the body's
//   end is recorded too), on one clock: the fake model runs in this process;
// - planContext: `MemoryService.plan` (what the reply runner calls before each model call) from
//   dist/, run here against the same database through the same ORM pool code, timed alone.
// Sends (and plan calls) alternate between the two visions. After each send its two messages are
// deleted (untimed), so every send sees the seeded sizes.
// The two statements of the plan are captured from the server's own code and shown with
// EXPLAIN ANALYZE for both visions.
import { randomUUID } from 'node:crypto';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { httpPost, median, summarize } from './load.mjs';
import { planLines, rng } from './shared.mjs';

const require = createRequire(import.meta.url);

export const CONTEXT_PARAMS = {
  quick: { long: 10_000, short: 100, window: 40, summaryTokens: 1000, warmupSends: 10, sends: 30, chunk: 15, rounds: 3, planIters: 100 },
  full: { long: 10_000, short: 100, window: 40, summaryTokens: 1000, warmupSends: 50, sends: 300, chunk: 25, rounds: 5, planIters: 1000 },
};

// ------------------------------------------------------------------ seeded dialog

const USER = [
  'I went for a run this morning, only twenty minutes, but I did it.',
  'Work ate the whole evening again and I skipped the training plan.',
  'How do I stay consistent when my schedule changes every week?',
  'My knee felt a little sore after the long run on Sunday.',
  'I signed up for the half marathon in April, which scares me a bit.',
  'Should I buy new shoes now or wait until the mileage goes up?',
  'I keep comparing myself with my friend who runs much faster than me.',
  'Yesterday I managed the interval session you suggested, all six repeats.',
  'I am not sure whether I should run in the rain or take a rest day instead.',
  'What should I eat before a long run early in the morning?',
  'I slept badly this week and every single run felt heavy.',
  'Honestly, I feel a bit proud of myself today.',
];
const ASSISTANT = [
  'That is a real step forward, and it counts more than the distance.',
  'Consistency grows from small sessions you can keep even on a bad week.',
  'Let us look at the week ahead and find two slots that are hard to lose.',
  'A sore knee after a long run is a signal to listen to, not to push through.',
  'If the pain is sharp or lasts more than two days, see a physiotherapist before the next long run.',
  'For now, swap one run for an easy walk or a short ride and see how the knee responds.',
  'Comparing yourself with a friend measures their path, not yours.',
  'Your own log is the better mirror: three months ago twenty minutes felt long.',
  'Rain is fine for an easy run if you dress in layers and keep the pace gentle.',
  'Before an early long run, something light and familiar works best: a banana, toast with honey, a little water.',
  'Sleep is part of training; on short nights, keep the runs easy and skip the intervals.',
  'What would make the next session feel a little easier to start?',
  'Write down the one thing that went well today, so you can find it on a harder day.',
  'April is fourteen weeks away, which is enough time to build up calmly.',
  'We can plan the long runs so that they grow by about ten percent a week, with an easier week every fourth.',
  'New shoes make sense once your current pair has around six hundred kilometres on it.',
];

/** The message `j` places before the newest (j = 0 is the newest, an assistant reply). */
function messageAt(j) {
  const r = rng(j + 1);
  const user = j % 2 === 1;
  const pool = user ? USER : ASSISTANT;
  const n = user ? 1 + Math.floor(r() * 4) : 3 + Math.floor(r() * 8);
  const parts = [];
  for (let i = 0; i < n; i++) parts.push(pool[Math.floor(r() * pool.length)]);
  return { sender: user ? 'user' : 'assistant', content: parts.join(' ') };
}

/** A ~`tokens`-token summary text (the column holds the tokens of heading + text, as the server counts it). */
function summaryText(tok, heading, tokens) {
  const r = rng(7);
  const paragraphs = [];
  let text = '';
  while (tok.count(heading + text) < tokens) {
    const sentences = [];
    for (let i = 0; i < 5; i++) sentences.push(ASSISTANT[Math.floor(r() * ASSISTANT.length)]);
    paragraphs.push(`Week ${paragraphs.length + 1}: ${USER[Math.floor(r() * USER.length)]} ${sentences.join(' ')}`);
    text = paragraphs.join('\n\n');
  }
  return text;
}

/**
 * A vision with `n` eligible messages (user/assistant alternating, COMPLETE, `tokens` counted with
 * the server's tokenizer), one minute apart, the newest a day ago. Returns its id and message ids
 * (index j = j places before the newest).
 */
async function seedDialog(pool, tok, { userId, title, n }) {
  const { rows } = await pool.query(
    `insert into visions (id, userid, title, status, createdat, updatedat)
     values (gen_random_uuid(), $1, $2, 'active', now() - interval '30 days', now() - interval '1 day') returning id`,
    [userId, title],
  );
  const visionId = rows[0].id;
  const ids = Array.from({ length: n }, () => randomUUID());
  let tokens = 0;
  const slice = 2000;
  for (let from = 0; from < n; from += slice) {
    const js = [];
    const senders = [];
    const contents = [];
    const replyTo = [];
    const counts = [];
    for (let j = from; j < Math.min(n, from + slice); j++) {
      const m = messageAt(j);
      js.push(j);
      senders.push(m.sender);
      contents.push(m.content);
      replyTo.push(m.sender === 'assistant' && j + 1 < n ? ids[j + 1] : null);
      const c = tok.count(m.content);
      counts.push(c);
      tokens += c;
    }
    await pool.query(
      `insert into vision_messages (id, visionid, sender, messagetype, content, state, replyto, tokens, createdat)
       select u.id, $1, u.sender, 'text', u.content, 'complete', u.replyto, u.tokens, now() - interval '1 day' - u.j * interval '1 minute'
       from unnest($2::uuid[], $3::text[], $4::text[], $5::uuid[], $6::int[], $7::int[]) as u(id, sender, content, replyto, tokens, j)`,
      [visionId, ids.slice(from, from + js.length), senders, contents, replyTo, counts, js],
    );
  }
  return { visionId, title, ids, tokens };
}

// ------------------------------------------------------------------ statements of a plan

/** The statements `plan` runs, captured through a runner that looks like an ORM transaction to `queryRows`. */
async function capturePlanStatements(memory, pool, vision) {
  const statements = [];
  const runner = {
    getTransactionContext: () => ({}),
    getConnection: () => ({
      execute: async (sql, params) => {
        statements.push({ sql, params });
        let i = 0;
        return (await pool.query(sql.replace(/\?/g, () => `$${++i}`), params)).rows;
      },
    }),
  };
  await memory.plan(vision, runner);
  return statements;
}

async function explainPlan(memory, pool, vision) {
  const statements = await capturePlanStatements(memory, pool, vision);
  const out = [];
  for (const { sql, params } of statements) {
    let i = 0;
    const text = `explain (analyze, buffers, format json) ${sql.replace(/\?/g, () => `$${++i}`)}`;
    await pool.query(text, params); // caches warm, plan as the server's prepared statement would get it
    const [{ 'QUERY PLAN': [p] }] = (await pool.query(text, params)).rows;
    out.push({ sql: sql.replace(/\s+/g, ' ').trim(), planningMs: p['Planning Time'], executionMs: p['Execution Time'], plan: planLines(p.Plan) });
  }
  return out;
}

// ------------------------------------------------------------------ the scenario

/**
 * @param h the harness: { quick, root, pool, db, fake, log, fmt, addRow, results, target,
 *   headersFor(userId), sendQuery, spawnServer(env) → { port, stop }, warm(base) }
 */
export async function scenarioContextAssembly(h) {
  const P = h.quick ? CONTEXT_PARAMS.quick : CONTEXT_PARAMS.full;
  const { pool, log, fmt } = h;
  const longN = P.long.toLocaleString('en');
  log(`scenario 7: context assembly, ${longN} messages + summary vs ${P.short} (window ${P.window}), sendMessage → model request, one at a time`);

  const dist = (p) => require(join(h.root, 'dist/src', p));
  const { loadConfig } = dist('config.js');
  const { initOrm } = dist('db/orm.js');
  const { poolRunner } = dist('db/sql.js');
  const { SUMMARY_HEADING } = dist('memory/context.js');
  const { MemoryService } = dist('memory/memory.service.js');
  const { DOCUMENT_TOOL } = dist('files/document-tool.js');

  // the measured server's memory settings; the budget holds the whole window, so both windows
  // are MAX_MESSAGES long and only the history behind them (and B's summary) differs
  const memoryEnv = {
    OPENAI_MODEL: 'gpt-4.1',
    MAX_MESSAGES: String(P.window),
    CONTEXT_TOKEN_BUDGET: '16000',
    REPLY_TOKEN_RESERVE: '2000',
    SUMMARY_MAX_TOKENS: '1500',
    SUMMARIES: 'false',
  };
  const config = loadConfig({ NODE_ENV: 'test', LOG_LEVEL: 'silent', ...memoryEnv });
  const orm = await initOrm(h.db.url, { poolMax: 2 });
  const memory = new MemoryService({
    sql: poolRunner(orm.em),
    config,
    llm: { client: null, model: config.llm.model, provider: 'openai' },
    logger: { info() {}, warn() {}, debug() {}, error() {} },
  });
  const tok = memory.tokenizer;

  let server;
  let stopObserving = () => undefined;
  try {
    // ---- seed
    const t0 = performance.now();
    const user = 'bench-context';
    const short = await seedDialog(pool, tok, { userId: user, title: 'Half marathon in April (short history)', n: P.short });
    const long = await seedDialog(pool, tok, { userId: user, title: 'Half marathon in April (long history)', n: P.long });
    const summary = summaryText(tok, SUMMARY_HEADING, P.summaryTokens);
    const summaryTokens = tok.count(SUMMARY_HEADING + summary);
    await pool.query(
      `insert into vision_summaries (id, visionid, content, tokens, coveredmessages, coveredthroughid, coveredthroughat, model, createdat)
       select $1, $2, $3, $4, $5, $6, (select createdat from vision_messages where id = $6), 'gpt-4.1', now() - interval '12 hours'`,
      [randomUUID(), long.visionId, summary, summaryTokens, P.long - P.window, long.ids[P.window]],
    );
    await pool.query('vacuum (analyze) visions, vision_messages, vision_summaries');
    const mark = (await pool.query('select now() as t')).rows[0].t;
    log(`  seeded in ${((performance.now() - t0) / 1000).toFixed(1)} s: ${P.short} messages (${short.tokens.toLocaleString('en')} tokens) and ${longN} (${long.tokens.toLocaleString('en')} tokens) + a summary of ${summaryTokens} tokens covering ${(P.long - P.window).toLocaleString('en')}`);

    // ---- the plans must differ only by the summary
    const A = { id: short.visionId, title: short.title };
    const B = { id: long.visionId, title: long.title };
    const planA = await memory.plan(A);
    const planB = await memory.plan(B);
    const contents = (p) => JSON.stringify(p.window.map((m) => m.content));
    if (planA.window.length !== P.window || planB.window.length !== P.window) {
      throw new Error(`context: windows of ${planA.window.length} and ${planB.window.length} messages, expected ${P.window} each (budget too small?)`);
    }
    if (planA.summary || !planB.summary || contents(planA) !== contents(planB)) throw new Error('context: the two plans differ by more than the summary');
    log(`  plans: ${P.window} messages each; ${planA.totalTokens} tokens (${P.short}) vs ${planB.totalTokens} (${longN}, summary included)`);

    // ---- the measured server
    server = await h.spawnServer(memoryEnv);
    const base = `http://127.0.0.1:${server.port}`;
    await h.warm(base);
    const url = `${base}/graphql`;
    const headers = h.headersFor(user);
    const arrivals = new Map();
    stopObserving = h.fake.observe(({ headAt, bodyAt, body }) => {
      const msgs = body.messages ?? [];
      const last = msgs[msgs.length - 1]?.content;
      if (typeof last === 'string' && (last.startsWith('What is my next step? #') || last.startsWith('Direct call #'))) {
        arrivals.set(last, { headAt, bodyAt, messages: msgs.length, summary: msgs.some((m) => m.role === 'system' && m.content.startsWith(SUMMARY_HEADING)) });
      }
    });

    let seq = 0;
    const sendOnce = async (vision) => {
      const content = `What is my next step? #${String(++seq).padStart(6, '0')}`;
      const body = JSON.stringify({ query: h.sendQuery, variables: { input: { visionId: vision.id, content } } });
      const start = performance.now();
      const res = await httpPost(url, headers, body);
      const end = performance.now();
      if (!res.text.includes('"state":"COMPLETE"')) throw new Error(`sendMessage failed: ${res.text.slice(0, 300)}`);
      // the model answered before the reply completed: its arrival is recorded by now
      const a = arrivals.get(content);
      arrivals.delete(content);
      if (!a) throw new Error('context: the model request of a send was not seen by the fake model');
      await pool.query('delete from vision_messages where visionid = $1 and createdat >= $2', [vision.id, mark]);
      return { head: a.headAt - start, body: a.bodyAt - start, total: end - start, messages: a.messages, summary: a.summary };
    };
    // the baseline: the same request (B's context and a new user message) through the official
    // SDK from this process, with the server's SDK settings; the time to the fake model's request
    // event is what any caller of the model pays, so send → model minus this is our overhead
    const OpenAI = require(join(h.root, 'node_modules/openai')).default;
    const sdk = new OpenAI({ apiKey: 'bench', baseURL: h.fake.baseURL, timeout: 60_000, maxRetries: 0 });
    const directOnce = async () => {
      const content = `Direct call #${String(++seq).padStart(6, '0')}`;
      const start = performance.now();
      const stream = await sdk.chat.completions.create({
        model: config.llm.model,
        messages: [...planB.messages, { role: 'user', content }],
        stream: true,
        stream_options: { include_usage: true },
        // the server offers create_document with every reply (DOCUMENT_TOOL on by default)
        tools: [DOCUMENT_TOOL],
        parallel_tool_calls: false,
      });
      for await (const chunk of stream) void chunk;
      const a = arrivals.get(content);
      arrivals.delete(content);
      if (!a) throw new Error('context: the direct SDK request was not seen by the fake model');
      return { head: a.headAt - start, body: a.bodyAt - start };
    };
    // the two visions take turns (A B, B A, …): both see the same state of the machine, which
    // drifts within seconds here (whole rounds of one vision differed by 30 % in a trial run)
    const pairs = async (n, fn, every, direct) => {
      const out = { short: [], long: [], direct: [] };
      for (let i = 0; i < n; i++) {
        for (const [k, v] of i % 2 === 0 ? [['short', A], ['long', B]] : [['long', B], ['short', A]]) out[k].push(await fn(v));
        if (direct) out.direct.push(await direct());
        if (every && ((i + 1) % every === 0 || i === n - 1)) await pool.query('vacuum vision_messages');
      }
      return out;
    };
    const sends = (n) => pairs(n, sendOnce, P.chunk, directOnce);
    const plans = (n) =>
      pairs(n, async (vision) => {
        const s = performance.now();
        await memory.plan(vision);
        return performance.now() - s;
      });

    // warm-up; it also checks what the model is sent: system prompt (+ summary) + the window
    const w = await sends(P.warmupSends);
    await plans(P.planIters);
    const shape = { short: { messages: w.short[0].messages, summary: w.short[0].summary }, long: { messages: w.long[0].messages, summary: w.long[0].summary } };
    if (shape.short.messages !== P.window + 1 || shape.short.summary || shape.long.messages !== P.window + 2 || !shape.long.summary) {
      throw new Error(`context: unexpected model requests ${JSON.stringify(shape)}`);
    }

    const rounds = [];
    for (let r = 0; r < P.rounds; r++) {
      const s = await sends(P.sends);
      const p = await plans(P.planIters);
      const round = {};
      for (const k of ['short', 'long']) {
        round[k] = { head: summarize(s[k].map((x) => x.head)), body: summarize(s[k].map((x) => x.body)), total: summarize(s[k].map((x) => x.total)), plan: summarize(p[k]) };
      }
      round.direct = { head: summarize(s.direct.map((x) => x.head)), body: summarize(s.direct.map((x) => x.body)) };
      log(
        `  round ${r + 1}: send → model p50 ${fmt(round.long.head.p50, 2)} ms (${longN}) vs ${fmt(round.short.head.p50, 2)} ms (${P.short}); ` +
          `direct SDK call → model p50 ${fmt(round.direct.head.p50, 2)} ms; planContext p50 ${fmt(round.long.plan.p50, 3)} vs ${fmt(round.short.plan.p50, 3)} ms`,
      );
      rounds.push(round);
    }

    const pick = (k, what, p) => median(rounds.map((x) => x[k][what][p]));
    const side = (k) => ({
      sendToModel: { p50: pick(k, 'head', 'p50'), p99: pick(k, 'head', 'p99') },
      sendToModelBodyComplete: { p50: pick(k, 'body', 'p50'), p99: pick(k, 'body', 'p99') },
      sendMessageTotal: { p50: pick(k, 'total', 'p50'), p99: pick(k, 'total', 'p99') },
      planContext: { p50: pick(k, 'plan', 'p50'), p99: pick(k, 'plan', 'p99') },
    });
    const res = {
      messages: { long: P.long, short: P.short },
      window: P.window,
      summaryTokens,
      coveredMessages: P.long - P.window,
      requestTokens: { long: planB.totalTokens, short: planA.totalTokens },
      requestMessages: shape,
      arrival: 'the fake model\'s node:http "request" event (request headers parsed: the first bytes); body complete recorded too',
      long: side('long'),
      short: side('short'),
      sendsPerRound: P.sends,
      planCallsPerRound: P.planIters,
      rounds,
    };
    res.ratio = res.long.sendToModel.p50 / res.short.sendToModel.p50;
    res.p99Ratio = res.long.sendToModel.p99 / res.short.sendToModel.p99;
    res.bodyRatio = res.long.sendToModelBodyComplete.p50 / res.short.sendToModelBodyComplete.p50;
    res.planRatio = res.long.planContext.p50 / res.short.planContext.p50;
    res.roundRatios = rounds.map((x) => x.long.head.p50 / x.short.head.p50);
    res.medianRoundRatio = median(res.roundRatios);
    res.met = res.ratio <= h.target;
    res.direct = { sdkToModel: { p50: median(rounds.map((x) => x.direct.head.p50)), p99: median(rounds.map((x) => x.direct.head.p99)) } };
    // issue 16: what a send adds before the model's first byte, over the SDK call alone (≤ 3 ms)
    res.overheadMs = { long: res.long.sendToModel.p50 - res.direct.sdkToModel.p50, short: res.short.sendToModel.p50 - res.direct.sdkToModel.p50 };
    res.overheadTargetMs = 3;
    res.overheadMet = res.overheadMs.long <= res.overheadTargetMs;

    // ---- the two statements, as PostgreSQL runs them for each vision
    res.explain = { long: await explainPlan(memory, pool, B), short: await explainPlan(memory, pool, A) };
    for (const k of ['long', 'short']) {
      for (const e of res.explain[k]) log(`  EXPLAIN ${k}: ${fmt(e.executionMs, 3)} ms execution, ${fmt(e.planningMs, 3)} ms planning: ${e.sql.slice(0, 90)}…\n      ${e.plan.join('\n      ')}`);
    }
    h.results.scenarios.contextAssembly = res;

    log(
      `  send → model p50 ${fmt(res.long.sendToModel.p50, 2)} vs ${fmt(res.short.sendToModel.p50, 2)} ms (${fmt(res.ratio, 2)}×; median of the rounds' ratios ${fmt(res.medianRoundRatio, 2)}×; body complete ${fmt(res.bodyRatio, 2)}×); ` +
        `planContext p50 ${fmt(res.long.planContext.p50, 3)} vs ${fmt(res.short.planContext.p50, 3)} ms; whole sendMessage p50 ${fmt(res.long.sendMessageTotal.p50, 2)} vs ${fmt(res.short.sendMessageTotal.p50, 2)} ms`,
    );
    h.addRow([
      `7 send → model p50 ms: ${longN}+summary vs ${P.short}`,
      fmt(res.long.sendToModel.p50, 2),
      fmt(res.short.sendToModel.p50, 2),
      `${fmt(res.ratio, 2)}×`,
      `≤ ${h.target}×`,
      res.met ? 'yes' : 'NO',
    ]);
    h.addRow([
      `  overhead over a direct SDK call p50 ms: ${longN}+summary; SDK alone`,
      fmt(res.overheadMs.long, 2),
      fmt(res.direct.sdkToModel.p50, 2),
      '',
      `≤ ${res.overheadTargetMs} ms`,
      res.overheadMet ? 'yes' : 'NO',
    ]);
    h.addRow([
      `  context assembly (planContext) p50 ms`,
      fmt(res.long.planContext.p50, 3),
      fmt(res.short.planContext.p50, 3),
      `${fmt(res.planRatio, 2)}×`,
      '(info)',
      '',
    ]);
  } finally {
    stopObserving();
    if (server) await server.stop();
    await orm.close(true);
  }
}
