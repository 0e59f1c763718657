// Scenario 8 (issue 12, search and recall).
//
// Seeded by SQL: one user with one vision of 100,000 messages (quick: 20,000) and their
// embeddings, another user with 20,000 (quick: 5,000), so the scan being limited to the caller is
// real, and a third vision of 10,000 messages for recall. Messages alternate person (1–3
// sentences) and coach (2–6), Russian or English, sentences drawn Zipf-like from running-coach
// lists, plus 1–4 words of a Zipf-distributed made-up vocabulary, so query words have realistic
// frequencies (rare to common). Embeddings are the offline responder's (256 dimensions) computed
// here with the server's own code (dist/), as the instant fake model computes them.
//
// Measured on a server of its own (EMBEDDINGS=true), one request at a time:
// - searchMessages TEXT and HYBRID (first: 20) over the 100,000-message vision, for a fixed set of
//   queries, each warmed once: HYBRID's query embedding is then served from the server's cache, so
//   its time excludes the embedding call, as the issue asks. Baseline in the same run: the history
//   read `vision(id) { messages(last: 20) }` of the same vision.
// - recall's added time before the model's first request byte: sendMessage → the fake model's
//   chat request (its headers parsed), on the 10,000-message vision, on two servers in the same
//   run, RECALL_MAX=5 and RECALL_MAX=0 (both EMBEDDINGS=true, MAX_MESSAGES=40), sends alternating.
//   With recall the new message is embedded (one call to the instant fake) and the vision's
//   embeddings are searched: both are recall's cost and stay in. The fake model also records
//   when that embeddings call arrives and is answered, which splits the time with recall in two.
//   Each send's messages are deleted afterwards (untimed; vacuum every 25 pairs).
// Then, with the servers idle: every statement of a search and of recall, captured from the
// server's code (dist/) and run with EXPLAIN (ANALYZE, BUFFERS) as the server runs it (a named
// prepared statement, after 5 runs), and the wall time of the server's own functions called here.
import { randomUUID } from 'node:crypto';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import pg from 'pg';
import { withDatabase } from './db.mjs';
import { httpPost, median, summarize } from './load.mjs';
import { planLines, rng } from './shared.mjs';

const require = createRequire(import.meta.url);

export const SEARCH_PARAMS = {
  quick: { big: 20_000, other: 5_000, recall: 10_000, rounds: 3, searchesPerRound: 40, sends: 20, warmupSends: 5 },
  full: { big: 100_000, other: 20_000, recall: 10_000, rounds: 5, searchesPerRound: 200, sends: 150, warmupSends: 20 },
};

export const SEARCH_TARGETS = { textP50Ms: 20, hybridP50Ms: 50, recallAddedMs: 5 };

// Sentences of a running coach's dialog, user and coach, Russian and English. Within each list
// sentence i is drawn with weight 1/(i+1) (Zipf), so their words too range from common to rare.
const USER_RU = [
  'Сегодня утром пробежал пять километров и чувствую себя отлично.',
  'Опять не успел на тренировку, работа съела весь вечер.',
  'Как сохранить режим, когда расписание меняется каждую неделю?',
  'После длинной пробежки немного болит колено.',
  'Плохо спал всю неделю, каждая пробежка давалась тяжело.',
  'Записался на полумарафон в апреле, немного страшно.',
  'Думаю купить новые кроссовки, старые совсем износились.',
  'Сравниваю себя с другом, который бегает гораздо быстрее.',
  'Сделал интервальную тренировку, все шесть повторов.',
  'Честно говоря, сегодня я собой горжусь.',
  'Что лучше съесть перед длинной пробежкой рано утром?',
  'Бежать ли под дождём или лучше устроить день отдыха?',
  'На работе аврал, сил хватает только на прогулку.',
  'Пульс на лёгком беге всё ещё высокий, это нормально?',
  'Дети заболели, неделя выпала полностью.',
  'Попробовал бегать с подкастом, время пролетело незаметно.',
  'Голень ноет после стадиона, может, слишком резко начал.',
  'Хочу к осени выбежать десятку из пятидесяти минут.',
  'Вес стоит на месте третью неделю, это расстраивает.',
  'Купил часы с GPS, теперь слежу за темпом.',
  'В старых кроссовках после десятки гудят ноги.',
];
const COACH_RU = [
  'Это настоящий шаг вперёд, и он важнее любой дистанции.',
  'Регулярность растёт из маленьких тренировок, которые получается сохранить даже в трудную неделю.',
  'Давай посмотрим на неделю вперёд и найдём два окна, которые сложно потерять.',
  'Боль в колене после длинной пробежки — сигнал прислушаться, а не терпеть.',
  'Если боль острая или держится больше двух дней, покажись физиотерапевту перед следующей длинной пробежкой.',
  'Сон — часть тренировки: после коротких ночей бегай легко и пропускай интервалы.',
  'Запиши одну вещь, которая сегодня получилась, чтобы найти её в трудный день.',
  'До апреля четырнадцать недель, этого хватит, чтобы спокойно подготовиться к полумарафону.',
  'Длинные пробежки можно увеличивать примерно на десять процентов в неделю, каждая четвёртая неделя легче.',
  'Новые кроссовки имеют смысл, когда у старых набежало около шестисот километров.',
  'Сравнение с другом измеряет его путь, а не твой.',
  'Твой дневник — лучшее зеркало: три месяца назад двадцать минут казались долгими.',
  'Перед ранней длинной пробежкой лучше что-то лёгкое и привычное: банан, тост с мёдом, немного воды.',
  'Дождь не помеха лёгкому бегу, если одеться слоями и держать спокойный темп.',
  'Что сделало бы следующую тренировку чуть проще для старта?',
  'Высокий пульс на лёгком беге обычно значит, что темп пока выше, чем нужно; замедлись.',
  'Неделя без бега из-за болезни детей ничего не ломает: начни с двух спокойных выходов.',
  'Ноющая голень после стадиона часто значит, что объём вырос слишком быстро.',
  'Цель на десятку из пятидесяти минут реальна, если держать три тренировки в неделю.',
  'Вес колеблется от недели к неделе; смотри на тренд за месяц, а не на одну цифру.',
];
const USER_EN = [
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
  'My heart rate on easy runs is still high, is that normal?',
  'The kids were ill and the whole week fell apart.',
];
const COACH_EN = [
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
  'April is fourteen weeks away, which is enough time to build up calmly for the half marathon.',
  'We can plan the long runs so that they grow by about ten percent a week, with an easier week every fourth.',
  'New shoes make sense once your current pair has around six hundred kilometres on it.',
];

/** Cumulative Zipf weights (item k: 1/(k+1)) of `n` items; `zipfIndex(c, u)` draws one for u in [0, 1). */
function zipfCumulative(n) {
  const c = [];
  let sum = 0;
  for (let k = 0; k < n; k++) c.push((sum += 1 / (k + 1)));
  return c.map((x) => x / sum);
}
function zipfIndex(c, u) {
  let lo = 0;
  let hi = c.length - 1;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (c[mid] < u) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/**
 * A vocabulary of 3,000 made-up words (Cyrillic and Latin syllables: names, places, things of a
 * person's life that the sentences above do not have), drawn Zipf-like: word k with weight
 * 1/(k+1), so the rank-40 word is in about 1 message of 100 and the rank-2,500 word in about 1 of 6,000.
 */
const SYL_RU = ['ка', 'ро', 'ми', 'ла', 'ве', 'ту', 'сон', 'дар', 'пе', 'ни', 'за', 'бор', 'ле', 'ска'];
const SYL_EN = ['ta', 'ro', 'mi', 'len', 'ver', 'tu', 'son', 'dar', 'pe', 'ni', 'za', 'bor', 'lex', 'ska'];
const VOCAB = Array.from({ length: 3000 }, (_, k) => {
  const r = rng(1000 + k);
  const syl = k % 3 === 0 ? SYL_EN : SYL_RU;
  const n = 3 + Math.floor(r() * 2);
  let w = '';
  for (let i = 0; i < n; i++) w += syl[Math.floor(r() * syl.length)];
  return w;
});
const VOCAB_Z = zipfCumulative(VOCAB.length);
const zipfWord = (u) => VOCAB[zipfIndex(VOCAB_Z, u)];
const POOLS = new Map([USER_RU, COACH_RU, USER_EN, COACH_EN].map((p) => [p, zipfCumulative(p.length)]));
const sentence = (pool, u) => pool[zipfIndex(POOLS.get(pool), u)];

/**
 * Message `j` of a dialog (even: the person, odd: the coach). The person writes 1–3 sentences,
 * the coach 2–6 (distinct); a message is Russian (65 %) or English, and carries 1–4 words of the made-up
 * vocabulary ("about <w1>, <w2>").
 */
function messageText(seed, j) {
  const r = rng(seed);
  const user = j % 2 === 0;
  const ru = r() < 0.65;
  const pool = user ? (ru ? USER_RU : USER_EN) : ru ? COACH_RU : COACH_EN;
  const n = user ? 1 + Math.floor(r() * 3) : 2 + Math.floor(r() * 5);
  const parts = [];
  for (let i = 0; i < n; i++) {
    let s = sentence(pool, r());
    for (let k = 0; k < 8 && parts.includes(s); k++) s = sentence(pool, r()); // no sentence twice
    if (!parts.includes(s)) parts.push(s);
  }
  const words = [];
  for (let i = 0, m = 1 + Math.floor(r() * 4); i < m; i++) words.push(zipfWord(r()));
  const about = `${ru ? 'Ещё про' : 'Also about'} ${words.join(', ')}.`;
  parts.splice(Math.floor(r() * (parts.length + 1)), 0, about);
  return parts.join(' ');
}

/** Inserts a vision with `n` messages and their embeddings; returns its id. */
export async function seedVision(pool, h, { userId, title, n, seed }) {
  const { offlineEmbedding } = require(join(h.root, 'dist/src/llm/offline-embeddings.js'));
  const { rows } = await pool.query(
    `insert into visions (id, userid, title, status, createdat, updatedat) values (gen_random_uuid(), $1, $2, 'active', now() - interval '300 days', now()) returning id`,
    [userId, title],
  );
  const visionId = rows[0].id;
  const slice = 2000;
  for (let from = 0; from < n; from += slice) {
    const ids = [];
    const senders = [];
    const contents = [];
    const js = [];
    const vectors = [];
    const signs = [];
    for (let j = from; j < Math.min(n, from + slice); j++) {
      const content = messageText(seed * 1_000_003 + j, j);
      const v = offlineEmbedding(content, 256);
      ids.push(randomUUID());
      senders.push(j % 2 === 0 ? 'user' : 'assistant');
      contents.push(content);
      js.push(n - j);
      vectors.push(`{${v.join(',')}}`);
      signs.push(v.map((x) => (x > 0 ? '1' : '0')).join(''));
    }
    await pool.query(
      `insert into vision_messages (id, visionid, sender, messagetype, content, state, createdat)
       select u.id, $1, u.sender, 'text', u.content, 'complete', now() - interval '1 day' - u.j * interval '1 minute'
       from unnest($2::uuid[], $3::text[], $4::text[], $5::int[]) as u(id, sender, content, j)`,
      [visionId, ids, senders, contents, js],
    );
    await pool.query(
      `insert into vision_message_embeddings (messageid, visionid, messageat, model, dims, signs)
       select m.id, m.visionid, m.createdat, 'text-embedding-3-small', 256, u.s::bit varying
       from unnest($1::uuid[], $2::text[]) as u(id, s) join vision_messages m on m.id = u.id`,
      [ids, signs],
    );
    await pool.query(`insert into vision_message_vectors (messageid, embedding) select u.id, u.v::float4[] from unnest($1::uuid[], $2::text[]) as u(id, v)`, [ids, vectors]);
  }
  return visionId;
}

const Q_SEARCH = `query S($q: String!, $id: ID, $mode: SearchMode) { searchMessages(query: $q, visionId: $id, mode: $mode, first: 20) {
  edges { cursor node { score snippet highlights { start length } message { id content createdAt } } } pageInfo { hasNextPage endCursor } } }`;
const Q_READ = 'query R($id: ID!) { vision(id: $id) { messages(last: 20) { edges { node { id content } } } } }';

// ------------------------------------------------------------------ statements as the server runs them


/** A runner that `queryRows` takes for an ORM transaction: each statement runs on `client` and is recorded. */
function capturingRunner(client, statements) {
  return {
    getTransactionContext: () => ({}),
    getConnection: () => ({
      execute: async (sql, params) => {
        statements.push({ sql, params });
        let i = 0;
        return (await client.query(sql.replace(/\?/g, () => `$${++i}`), params)).rows;
      },
    }),
  };
}

let explained = 0;
/**
 * EXPLAIN (ANALYZE, BUFFERS) of a statement as the server runs it: a named prepared statement
 * (src/db/sql.ts), executed 5 times first, after which PostgreSQL may switch it to a generic plan
 * (it did, when `generic`: `pg_prepared_statements.generic_plans` counted the EXPLAIN's
 * executions; PostgreSQL 14+); then the same with the values written in (the custom plan), for
 * comparison.
 */
async function explainAsServer(client, sql, params) {
  let i = 0;
  const text = sql.replace(/\?/g, () => `$${++i}`);
  const name = `bench_explain_${++explained}`;
  for (let k = 0; k < 5; k++) await client.query({ name, text, values: params });
  const literal = (p) => (p === null || p === undefined ? 'null' : typeof p === 'number' ? String(p) : client.escapeLiteral(String(p)));
  const one = async (q) => {
    await client.query(q); // caches warm
    const [{ 'QUERY PLAN': [p] }] = (await client.query(q)).rows;
    return { planningMs: p['Planning Time'], executionMs: p['Execution Time'], plan: planLines(p.Plan) };
  };
  const counters = async () => {
    try {
      return (await client.query('select generic_plans::int as g from pg_prepared_statements where name = $1', [name])).rows[0]?.g;
    } catch {
      return undefined; // before PostgreSQL 14
    }
  };
  const g0 = await counters();
  const prepared = await one(`explain (analyze, buffers, format json) execute ${name}(${params.map(literal).join(', ')})`);
  const g1 = await counters();
  prepared.generic = g0 === undefined || g1 === undefined ? undefined : g1 > g0;
  let j = 0;
  const custom = prepared.generic ? await one(`explain (analyze, buffers, format json) ${sql.replace(/\?/g, () => literal(params[j++]))}`) : undefined;
  return { sql: sql.replace(/\s+/g, ' ').trim(), prepared, custom };
}

/** Median wall time of `fn` in this process over `n` calls (after one untimed). */
async function timeIt(fn, n) {
  await fn();
  const t = [];
  for (let i = 0; i < n; i++) {
    const s = performance.now();
    await fn();
    t.push(performance.now() - s);
  }
  return median(t);
}

/**
 * Where a search's and a recall's time goes in PostgreSQL: each statement the server's code
 * (dist/) runs for them, captured and explained on this database, plus the wall time of the
 * server's own functions called here (statement + transfer + decoding + cosine in JS).
 */
async function explainSearch(h, pool, { big, recallVision, queries, recallText }) {
  const dist = (p) => require(join(h.root, 'dist/src', p));
  const { textSearchStatement, textSearch, loadHits } = dist('search/search.queries.js');
  const { loadSearchConfig } = dist('search/search.config.js');
  const { prepareVectorStore } = dist('search/pgvector-store.js');
  const { offlineEmbedding } = dist('llm/offline-embeddings.js');
  // the scan in PostgreSQL (SIGN_INDEX_BYTES=0) is what there is to EXPLAIN: with the sign index
  // the shortlist is computed in the server and PostgreSQL only reads the shortlisted vectors
  const config = loadSearchConfig({ SIGN_INDEX_BYTES: '0' });
  const model = config.embeddingModel;
  const client = await pool.connect();
  const quiet = { info() {}, warn() {}, debug() {}, error() {}, child: () => quiet };
  try {
    const plain = capturingRunner(client, []);
    const store = await prepareVectorStore(plain, config, quiet);
    const out = { store: store.kind, text: [], hybridText: [] };
    // TEXT: every query, page of 20 (+1) and HYBRID's text part (SEARCH_SEMANTIC_DEPTH)
    for (const q of queries) {
      const matches = Number(
        (await client.query(`select count(*) as n from vision_messages where visionid = $1 and searchtsv @@ websearch_to_tsquery('russian', $2)`, [big, q])).rows[0].n,
      );
      // the server's depth (SEARCH_TEXT_DEPTH): without it the statement ranked every match
      const t = textSearchStatement({ visionIds: [big], query: q, limit: 21, depth: config.textDepth });
      const d = textSearchStatement({ visionIds: [big], query: q, limit: config.semanticDepth, depth: config.textDepth });
      out.text.push({ query: q, matches, ...(await explainAsServer(client, t.sql, t.params)) });
      out.hybridText.push({ query: q, matches, ...(await explainAsServer(client, d.sql, d.params)) });
    }
    // SEMANTIC part of HYBRID: nearest SEARCH_SEMANTIC_DEPTH to one query's vector
    // the query with the most matches: the most rows to rank and the longest page to load
    const sq = out.text.reduce((a, b) => (b.matches > a.matches ? b : a)).query;
    const nearestSearch = { visionIds: [big], model, vector: offlineEmbedding(sq, config.embeddingDimensions || 256), limit: config.semanticDepth, minScore: config.searchMinScore };
    const captured = [];
    await store.nearest(capturingRunner(client, captured), nearestSearch);
    out.nearest = { query: sq, ...(await explainAsServer(client, captured[0].sql, captured[0].params)), statements: captured.length };
    out.nearest.wallMs = await timeIt(() => store.nearest(plain, nearestSearch), 10);
    const hits = await textSearch(plain, { visionIds: [big], query: sq, limit: 20, depth: config.textDepth });
    const capturedLoad = [];
    await loadHits(capturingRunner(client, capturedLoad), hits.map((x) => x.id), sq);
    out.loadHits = { query: sq, ids: hits.length, ...(await explainAsServer(client, capturedLoad[0].sql, capturedLoad[0].params)) };
    out.loadHits.wallMs = await timeIt(() => loadHits(plain, hits.map((x) => x.id), sq), 10);
    out.hybridTextWallMs = await timeIt(() => textSearch(plain, { visionIds: [big], query: sq, limit: config.semanticDepth, depth: config.textDepth }), 10);
    // recall: RECALL_MAX nearest before the window (the 40th newest message) of the recall vision
    const floor = (await client.query('select id from vision_messages where visionid = $1 order by createdat desc, id desc offset 39 limit 1', [recallVision])).rows[0].id;
    const nearestRecall = { visionIds: [recallVision], model, vector: offlineEmbedding(recallText, config.embeddingDimensions || 256), limit: config.recallMax, minScore: config.recallMinScore, beforeMessageId: floor };
    const capturedRecall = [];
    await store.nearest(capturingRunner(client, capturedRecall), nearestRecall);
    out.recallNearest = { ...(await explainAsServer(client, capturedRecall[0].sql, capturedRecall[0].params)), statements: capturedRecall.length };
    out.recallNearest.wallMs = await timeIt(() => store.nearest(plain, nearestRecall), 20);
    return out;
  } finally {
    client.release(true); // its prepared statements go with it
  }
}

// ------------------------------------------------------------------ the scenario

/**
 * A database of its own for the scenario, next to the run's (`<name>_s8`), dropped at the end.
 * Not the run's database: a server with EMBEDDINGS=true embeds, at its start, every message that
 * has no embedding (the backfill), and the run's database holds the other scenarios' seeds
 * (scenario 4's 100,000 messages among them): that background work would run during the
 * measurements (it did in a first version: ~1,600 embeddings jobs of 64 messages).
 */
async function ownDatabase(h) {
  const name = `${h.db.name}_s8`;
  const admin = async (sql) => {
    const c = new pg.Client({ connectionString: h.db.url });
    await c.connect();
    try {
      await c.query(sql);
    } finally {
      await c.end();
    }
  };
  await admin(`create database ${name}`);
  let closed = false;
  const pool = new pg.Pool({ connectionString: withDatabase(h.db.url, name), max: 4 });
  return {
    name,
    url: withDatabase(h.db.url, name),
    pool,
    async close() {
      if (closed) return;
      closed = true;
      await pool.end().catch(() => undefined);
      await admin(`drop database if exists ${name} with (force)`);
    },
  };
}

/** Waits (at most `ms`) until every eligible message has an embedding: the background jobs are done. */
async function embeddingsSettled(pool, ms) {
  const end = performance.now() + ms;
  for (;;) {
    const { rows } = await pool.query(
      `select count(*)::int as n from vision_messages m
       where m.sender in ('user', 'assistant') and m.messagetype <> 'info' and m.state in ('complete', 'stopped') and m.content <> ''
         and not exists (select 1 from vision_message_embeddings e where e.messageid = m.id)`,
    );
    if (rows[0].n === 0) return 0;
    if (performance.now() > end) return rows[0].n;
    await new Promise((r) => setTimeout(r, 200));
  }
}

/**
 * @param h the harness: { quick, root, db, fake, log, fmt, addRow, results, targets,
 *   headersFor(userId), sendQuery, spawnServer(env, name) → { port, stop }, warm(base),
 *   defer(fn): fn runs at the harness's cleanup (an interrupted run) }
 */
export async function scenarioSearch(h) {
  const P = h.quick ? SEARCH_PARAMS.quick : SEARCH_PARAMS.full;
  const T = h.targets ?? SEARCH_TARGETS;
  const { log, fmt } = h;
  const { RECALL_HEADING } = require(join(h.root, 'dist/src/memory/context.js'));
  const bigN = P.big.toLocaleString('en');
  log(
    `scenario 8: search over ${bigN} messages (TEXT, HYBRID) and recall's added time (vision of ${P.recall.toLocaleString('en')})` +
      (h.quick ? ` — QUICK: ${bigN} messages instead of ${SEARCH_PARAMS.full.big.toLocaleString('en')}, ${P.other.toLocaleString('en')} for the other user` : ''),
  );

  const servers = [];
  const stops = [];
  const own = await ownDatabase(h);
  h.defer?.(async () => {
    for (const s of servers) await s.stop();
    await own.close();
  });
  const pool = own.pool;
  try {
    // the first server applies the migrations to the empty database
    const env = { DATABASE_URL: own.url, EMBEDDINGS: 'true', SUMMARIES: 'false', MAX_MESSAGES: '40', RECALL_MAX: '5' };
    const server = await h.spawnServer(env, 'server (scenario 8, search)');
    servers.push(server);
    const base = `http://127.0.0.1:${server.port}`;
    await h.warm(base);

    const t0 = performance.now();
    const user = 'bench-search';
    const big = await seedVision(pool, h, { userId: user, title: 'Марафон (search)', n: P.big, seed: 1 });
    await seedVision(pool, h, { userId: 'bench-search-other', title: 'Other person', n: P.other, seed: 2 });
    const recallVision = await seedVision(pool, h, { userId: 'bench-recall', title: 'Марафон (recall)', n: P.recall, seed: 3 });
    await pool.query('vacuum (analyze) visions, vision_messages, vision_message_embeddings, vision_message_vectors');
    const mark = (await pool.query('select now() as t')).rows[0].t;
    log(`  seeded in ${((performance.now() - t0) / 1000).toFixed(1)} s: ${bigN} + ${P.other.toLocaleString('en')} (other user) + ${P.recall.toLocaleString('en')} (recall) messages with embeddings`);

    // queries from rare to common: made-up words of the vocabulary's head and tail, and real ones
    const queries = [VOCAB[3], VOCAB[40], VOCAB[400], VOCAB[2500], `${VOCAB[10]} ${VOCAB[90]}`, 'пробежка колено', '"long run"', 'кроссовки -новые', 'training plan', 'полумарафон'];
    const left = await embeddingsSettled(pool, 15_000);
    if (left) log(`  ! ${left} messages still without an embedding: background embedding jobs may run during the measurements`);
    const url = `${base}/graphql`;
    const headers = h.headersFor(user);
    const timed = async (body) => {
      const s = performance.now();
      const res = await httpPost(url, headers, body);
      const ms = performance.now() - s;
      if (res.status !== 200 || res.text.includes('"errors"')) throw new Error(`search bench: ${res.text.slice(0, 300)}`);
      return { ms, text: res.text };
    };
    const bodies = {
      TEXT: queries.map((q) => JSON.stringify({ query: Q_SEARCH, variables: { q, id: big, mode: 'TEXT' } })),
      HYBRID: queries.map((q) => JSON.stringify({ query: Q_SEARCH, variables: { q, id: big, mode: 'HYBRID' } })),
      read: [JSON.stringify({ query: Q_READ, variables: { id: big } })],
    };
    const hitCounts = { TEXT: [], HYBRID: [] };
    for (const [mode, list] of Object.entries(bodies)) {
      for (const b of list) {
        const { text } = await timed(b); // warm: caches, and HYBRID's query embedding
        if (mode === 'read') continue;
        const edges = JSON.parse(text).data.searchMessages.edges;
        hitCounts[mode].push(edges.length);
        // a cursor names the mode that answered: HYBRID falls back to TEXT when it cannot embed
        const answered = edges[0] && /^s1:([A-Z]+):/.exec(Buffer.from(edges[0].cursor, 'base64url').toString('utf8'))?.[1];
        if (edges[0] && answered !== mode) throw new Error(`search bench: a ${mode} search was answered by ${answered}`);
      }
    }
    if (!hitCounts.TEXT.some(Boolean) || !hitCounts.HYBRID.every(Boolean)) throw new Error(`search bench: no hits ${JSON.stringify(hitCounts)}`);

    const perQuery = { TEXT: queries.map(() => []), HYBRID: queries.map(() => []) };
    const rounds = [];
    for (let r = 0; r < P.rounds; r++) {
      const lat = { TEXT: [], HYBRID: [], read: [] };
      for (let i = 0; i < P.searchesPerRound; i++) {
        // interleaved, so the three see the same machine
        for (const mode of ['TEXT', 'HYBRID', 'read']) {
          const list = bodies[mode];
          const ms = (await timed(list[i % list.length])).ms;
          lat[mode].push(ms);
          if (perQuery[mode]) perQuery[mode][i % list.length].push(ms);
        }
      }
      const round = { TEXT: summarize(lat.TEXT), HYBRID: summarize(lat.HYBRID), read: summarize(lat.read) };
      log(`  round ${r + 1}: TEXT p50 ${fmt(round.TEXT.p50, 2)} p99 ${fmt(round.TEXT.p99, 2)} ms; HYBRID p50 ${fmt(round.HYBRID.p50, 2)} p99 ${fmt(round.HYBRID.p99, 2)} ms; history read p50 ${fmt(round.read.p50, 2)} ms`);
      rounds.push(round);
    }
    const pick = (k, p) => median(rounds.map((x) => x[k][p]));
    const matches = [];
    for (const q of queries) {
      const { rows } = await pool.query(`select count(*)::int as n from vision_messages where visionid = $1 and searchtsv @@ websearch_to_tsquery('russian', $2)`, [big, q]);
      matches.push(rows[0].n);
    }
    const byQuery = queries.map((q, i) => ({
      query: q,
      matches: matches[i],
      textP50: median(perQuery.TEXT[i]),
      hybridP50: median(perQuery.HYBRID[i]),
      textHits: hitCounts.TEXT[i],
      hybridHits: hitCounts.HYBRID[i],
    }));
    log(`  p50 per query (matches: TEXT / HYBRID ms): ${byQuery.map((x) => `${x.query} (${x.matches}): ${fmt(x.textP50, 1)}/${fmt(x.hybridP50, 1)}`).join('; ')}`);
    // TEXT's cost grows with the matches it ranks: with half the set common words, the p50 of all
    // searches is the boundary between the two halves, so both halves are reported too
    const common = (i) => matches[i] > P.big / 100;
    const byClass = (mode, want) => summarize(perQuery[mode].flatMap((list, i) => (common(i) === want ? list : [])));
    const classes = {
      commonQueries: queries.filter((_, i) => common(i)),
      text: { common: byClass('TEXT', true), rare: byClass('TEXT', false) },
      hybrid: { common: byClass('HYBRID', true), rare: byClass('HYBRID', false) },
    };
    log(
      `  ${classes.commonQueries.length} queries with more than 1 % of the messages matching vs ${queries.length - classes.commonQueries.length} with fewer: ` +
        `TEXT p50 ${fmt(classes.text.common.p50, 2)} vs ${fmt(classes.text.rare.p50, 2)} ms, HYBRID p50 ${fmt(classes.hybrid.common.p50, 2)} vs ${fmt(classes.hybrid.rare.p50, 2)} ms`,
    );

    // ---- recall: two servers, RECALL_MAX 5 and 0
    const withRecall = server;
    const without = await h.spawnServer({ ...env, RECALL_MAX: '0' }, 'server (scenario 8, no recall)');
    servers.push(without);
    await h.warm(`http://127.0.0.1:${without.port}`);
    await embeddingsSettled(pool, 15_000); // its start's backfill has nothing to do but the warm-up's
    const arrivals = new Map();
    const embedCalls = new Map();
    let open = null; // the content of the send under way
    stops.push(
      h.fake.observe(({ headAt, body }) => {
        const msgs = body.messages ?? [];
        const last = msgs[msgs.length - 1]?.content;
        if (typeof last === 'string' && last === open) {
          arrivals.set(last, { headAt, messages: msgs.length, recalled: msgs.some((m) => m.role === 'system' && m.content.startsWith(RECALL_HEADING)) });
        }
      }),
    );
    stops.push(
      h.fake.observeEmbeddings(({ headAt, answeredAt, body }) => {
        const input = Array.isArray(body.input) ? body.input : [body.input];
        if (open && !embedCalls.has(open) && input.includes(open)) embedCalls.set(open, { headAt, answeredAt, inputs: input.length });
      }),
    );
    const rHeaders = h.headersFor('bench-recall');
    let seq = 0;
    const recallText = 'Колено болит после длинной пробежки, как готовиться к полумарафону?';
    const sendOnce = async (srv) => {
      const content = `${recallText} #${String(++seq).padStart(6, '0')}`;
      const body = JSON.stringify({ query: h.sendQuery, variables: { input: { visionId: recallVision, content } } });
      open = content;
      const start = performance.now();
      const res = await httpPost(`http://127.0.0.1:${srv.port}/graphql`, rHeaders, body);
      const end = performance.now();
      open = null;
      if (!res.text.includes('"state":"COMPLETE"')) throw new Error(`sendMessage failed: ${res.text.slice(0, 300)}`);
      // the model answered before the reply completed: its arrival is recorded by now
      const a = arrivals.get(content);
      const e = embedCalls.get(content);
      arrivals.delete(content);
      embedCalls.delete(content);
      if (!a) throw new Error('recall bench: the model request of a send was not seen by the fake model');
      // untimed: the send's two messages go (their embeddings, if stored by now, with them)
      await pool.query('delete from vision_messages where visionid = $1 and createdat >= $2', [recallVision, mark]);
      return {
        head: a.headAt - start,
        total: end - start,
        recalled: a.recalled,
        messages: a.messages,
        embedHead: e ? e.headAt - start : undefined,
        embedToModel: e ? a.headAt - e.answeredAt : undefined,
      };
    };
    // the two servers take turns (on off, off on, …) so both see the same state of the machine
    const pairs = async (n) => {
      const out = { on: [], off: [] };
      for (let i = 0; i < n; i++) {
        for (const [k, srv] of i % 2 === 0 ? [['on', withRecall], ['off', without]] : [['off', without], ['on', withRecall]]) out[k].push(await sendOnce(srv));
        if ((i + 1) % 25 === 0 || i === n - 1) await pool.query('vacuum vision_messages, vision_message_embeddings, vision_message_vectors');
      }
      return out;
    };
    const w = await pairs(P.warmupSends);
    const recalledOn = w.on.filter((x) => x.recalled).length;
    const recalledOff = w.off.filter((x) => x.recalled).length;
    if (recalledOn !== w.on.length || recalledOff || w.on.some((x) => x.embedHead === undefined)) {
      throw new Error(`recall bench: recall in ${recalledOn}/${w.on.length} sends with RECALL_MAX=5, ${recalledOff} without; embeddings calls seen ${w.on.filter((x) => x.embedHead !== undefined).length}`);
    }
    const shape = { on: w.on[0].messages, off: w.off[0].messages };
    const recallRounds = [];
    for (let r = 0; r < P.rounds; r++) {
      const s = await pairs(P.sends);
      const sm = (list, k) => summarize(list.map((x) => x[k]).filter((x) => x !== undefined));
      const round = {
        on: { head: sm(s.on, 'head'), total: sm(s.on, 'total'), embedHead: sm(s.on, 'embedHead'), embedToModel: sm(s.on, 'embedToModel') },
        off: { head: sm(s.off, 'head'), total: sm(s.off, 'total') },
      };
      log(
        `  recall round ${r + 1}: send → model p50 ${fmt(round.on.head.p50, 2)} ms with recall vs ${fmt(round.off.head.p50, 2)} ms without ` +
          `(with: send → embeddings request ${fmt(round.on.embedHead.p50, 2)} ms, embeddings answered → model request ${fmt(round.on.embedToModel.p50, 2)} ms)`,
      );
      recallRounds.push(round);
    }
    const rpick = (side, k, p) => median(recallRounds.map((x) => x[side][k][p]));

    // ---- where the time goes, statement by statement (servers idle)
    const explain = await explainSearch(h, pool, { big, recallVision, queries, recallText });
    const show = (label, e) => {
      const head = `  EXPLAIN ${label}: ${fmt(e.prepared.executionMs, 3)} ms execution, ${fmt(e.prepared.planningMs, 3)} ms planning${e.prepared.generic ? ' (GENERIC plan of the prepared statement' + (e.custom ? `; custom plan: ${fmt(e.custom.executionMs, 3)} ms` : '') + ')' : ''}${e.wallMs !== undefined ? `; the server's function, called here: ${fmt(e.wallMs, 2)} ms wall` : ''}`;
      log(`${head}\n      ${e.prepared.plan.join('\n      ')}`);
    };
    log(`  vector store: ${explain.store}; TEXT statement per query (matches; execution ms, page of 21 / HYBRID's text part, limit SEARCH_SEMANTIC_DEPTH; G: generic plan): ${explain.text.map((x, i) => `${x.query} ${x.matches} ${fmt(x.prepared.executionMs, 2)}/${fmt(explain.hybridText[i].prepared.executionMs, 2)}${x.prepared.generic ? ' G' : ''}`).join('; ')}`);
    const slowest = explain.text.reduce((a, b) => (b.prepared.executionMs > a.prepared.executionMs ? b : a));
    show(`TEXT page, slowest query "${slowest.query}" (${slowest.matches} matches)`, slowest);
    const slowestH = explain.hybridText.reduce((a, b) => (b.prepared.executionMs > a.prepared.executionMs ? b : a));
    show(`HYBRID's text part, slowest query "${slowestH.query}"`, slowestH);
    show(`HYBRID's nearest as a scan in PostgreSQL, SIGN_INDEX_BYTES=0 ("${explain.nearest.query}")`, explain.nearest);
    show(`loadHits (${explain.loadHits.ids} ids)`, explain.loadHits);
    show('recall nearest as a scan in PostgreSQL, SIGN_INDEX_BYTES=0 (RECALL_MAX before the window)', explain.recallNearest);

    const res = {
      messages: { searched: P.big, otherUser: P.other, recallVision: P.recall },
      queries: byQuery,
      byMatches: classes,
      text: { p50: pick('TEXT', 'p50'), p99: pick('TEXT', 'p99') },
      hybrid: { p50: pick('HYBRID', 'p50'), p99: pick('HYBRID', 'p99') },
      historyRead: { p50: pick('read', 'p50'), p99: pick('read', 'p99') },
      searchesPerRound: P.searchesPerRound,
      recall: {
        requestMessages: shape,
        on: {
          sendToModel: { p50: rpick('on', 'head', 'p50'), p99: rpick('on', 'head', 'p99') },
          sendToEmbeddingsRequest: { p50: rpick('on', 'embedHead', 'p50') },
          embeddingsAnsweredToModel: { p50: rpick('on', 'embedToModel', 'p50') },
          sendMessageTotal: { p50: rpick('on', 'total', 'p50') },
        },
        off: {
          sendToModel: { p50: rpick('off', 'head', 'p50'), p99: rpick('off', 'head', 'p99') },
          sendMessageTotal: { p50: rpick('off', 'total', 'p50') },
        },
        sendsPerRound: P.sends,
      },
      rounds,
      recallRounds,
      explain,
    };
    res.recall.addedP50 = res.recall.on.sendToModel.p50 - res.recall.off.sendToModel.p50;
    res.recall.roundAdded = recallRounds.map((x) => x.on.head.p50 - x.off.head.p50);
    res.met = {
      text: res.text.p50 <= T.textP50Ms,
      hybrid: res.hybrid.p50 <= T.hybridP50Ms,
      recall: res.recall.addedP50 <= T.recallAddedMs,
    };
    h.results.scenarios.search = res;
    log(
      `  TEXT p50 ${fmt(res.text.p50, 2)} / p99 ${fmt(res.text.p99, 2)} ms; HYBRID p50 ${fmt(res.hybrid.p50, 2)} / p99 ${fmt(res.hybrid.p99, 2)} ms; ` +
        `history read p50 ${fmt(res.historyRead.p50, 2)} ms; recall adds ${fmt(res.recall.addedP50, 2)} ms p50 (${fmt(res.recall.on.sendToModel.p50, 2)} vs ${fmt(res.recall.off.sendToModel.p50, 2)}; ` +
        `rounds ${res.recall.roundAdded.map((x) => fmt(x, 2)).join(', ')})`,
    );
    h.addRow([`8 search TEXT p50 ms, ${bigN} msgs (vs history read)`, fmt(res.text.p50, 2), fmt(res.historyRead.p50, 2), `p99 ${fmt(res.text.p99, 1)}`, `≤ ${T.textP50Ms} ms`, res.met.text ? 'yes' : 'NO']);
    h.addRow([
      `  TEXT p50 ms: ${classes.commonQueries.length} common-word queries vs the rest`,
      fmt(classes.text.common.p50, 2),
      fmt(classes.text.rare.p50, 2),
      `${fmt(classes.text.common.p50 / classes.text.rare.p50, 1)}×`,
      '(info)',
      '',
    ]);
    h.addRow([`  search HYBRID p50 ms (query embedding cached)`, fmt(res.hybrid.p50, 2), fmt(res.historyRead.p50, 2), `p99 ${fmt(res.hybrid.p99, 1)}`, `≤ ${T.hybridP50Ms} ms`, res.met.hybrid ? 'yes' : 'NO']);
    h.addRow([
      `  send → model p50 ms: recall on vs off (${P.recall.toLocaleString('en')})`,
      fmt(res.recall.on.sendToModel.p50, 2),
      fmt(res.recall.off.sendToModel.p50, 2),
      `+${fmt(res.recall.addedP50, 2)} ms`,
      `≤ +${T.recallAddedMs} ms`,
      res.met.recall ? 'yes' : 'NO',
    ]);
  } finally {
    for (const stop of stops) stop();
    while (servers.length) await servers.pop().stop();
    await own.close();
  }
}
