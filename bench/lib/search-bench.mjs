// Scenario 8 (issue 12, search and recall).
//
// Seeded by SQL: one user with one vision of 100,000 messages (quick: 20,000) and their
// embeddings, another user with 20,000 (quick: 5,000), so the scan being limited to the caller is
// real, and a third vision of 10,000 messages for recall. Messages mix Russian and English
// coaching sentences with words drawn from a Zipf-distributed vocabulary, so query words have
// realistic frequencies (rare to common). Embeddings are the offline responder's (256 dimensions)
// computed here with the server's own code (dist/), as the instant fake model computes them.
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
//   embeddings are searched: both are recall's cost and stay in. Each send's messages are deleted
//   afterwards (untimed).
import { randomUUID } from 'node:crypto';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { httpPost, median, summarize } from './load.mjs';

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

/** Deterministic pseudo-random numbers (mulberry32). */
function rng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

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

/**
 * @param h the harness: { quick, root, pool, db, fake, log, fmt, addRow, results, headersFor,
 *   sendQuery, spawnServer(env) → { port, stop }, warm(base) }
 */
export async function scenarioSearch(h) {
  const P = h.quick ? SEARCH_PARAMS.quick : SEARCH_PARAMS.full;
  const { pool, log, fmt } = h;
  const { RECALL_HEADING } = require(join(h.root, 'dist/src/memory/context.js'));
  const bigN = P.big.toLocaleString('en');
  log(`scenario 8: search over ${bigN} messages (TEXT, HYBRID) and recall's added time (vision of ${P.recall.toLocaleString('en')})${h.quick ? ' — quick: smaller seed' : ''}`);

  const servers = [];
  let stopObserving = () => undefined;
  try {
    const t0 = performance.now();
    const user = 'bench-search';
    const big = await seedVision(pool, h, { userId: user, title: 'Марафон (search)', n: P.big, seed: 1 });
    await seedVision(pool, h, { userId: 'bench-search-other', title: 'Other person', n: P.other, seed: 2 });
    const recallVision = await seedVision(pool, h, { userId: 'bench-recall', title: 'Марафон (recall)', n: P.recall, seed: 3 });
    await pool.query('vacuum (analyze) visions, vision_messages, vision_message_embeddings, vision_message_vectors');
    const mark = (await pool.query('select now() as t')).rows[0].t;
    log(`  seeded in ${((performance.now() - t0) / 1000).toFixed(1)} s`);

    // queries from rare to common: made-up words of the vocabulary's head and tail, and real ones
    const queries = [VOCAB[3], VOCAB[40], VOCAB[400], VOCAB[2500], `${VOCAB[10]} ${VOCAB[90]}`, 'пробежка колено', '"long run"', 'кроссовки -новые', 'training plan', 'полумарафон'];
    const env = { EMBEDDINGS: 'true', SUMMARIES: 'false', MAX_MESSAGES: '40', RECALL_MAX: '5' };
    const server = await h.spawnServer(env, 'server (scenario 8, search)');
    servers.push(server);
    const base = `http://127.0.0.1:${server.port}`;
    await h.warm(base);
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
    const hitCounts = {};
    for (const [mode, list] of Object.entries(bodies)) {
      for (const b of list) {
        const { text } = await timed(b); // warm: caches, and HYBRID's query embedding
        if (mode !== 'read') hitCounts[mode] = (hitCounts[mode] ?? 0) + (text.match(/"cursor"/g) ?? []).length;
      }
    }
    if (!hitCounts.TEXT || !hitCounts.HYBRID) throw new Error(`search bench: no hits ${JSON.stringify(hitCounts)}`);

    const rounds = [];
    for (let r = 0; r < P.rounds; r++) {
      const lat = { TEXT: [], HYBRID: [], read: [] };
      for (let i = 0; i < P.searchesPerRound; i++) {
        // interleaved, so the three see the same machine
        for (const mode of ['TEXT', 'HYBRID', 'read']) {
          const list = bodies[mode];
          lat[mode].push((await timed(list[i % list.length])).ms);
        }
      }
      const round = { TEXT: summarize(lat.TEXT), HYBRID: summarize(lat.HYBRID), read: summarize(lat.read) };
      log(`  round ${r + 1}: TEXT p50 ${fmt(round.TEXT.p50, 2)} p99 ${fmt(round.TEXT.p99, 2)} ms; HYBRID p50 ${fmt(round.HYBRID.p50, 2)} p99 ${fmt(round.HYBRID.p99, 2)} ms; history read p50 ${fmt(round.read.p50, 2)} ms`);
      rounds.push(round);
    }
    const pick = (k, p) => median(rounds.map((x) => x[k][p]));

    // ---- recall: two servers, RECALL_MAX 5 and 0
    const withRecall = server;
    const without = await h.spawnServer({ ...env, RECALL_MAX: '0' }, 'server (scenario 8, no recall)');
    servers.push(without);
    await h.warm(`http://127.0.0.1:${without.port}`);
    const arrivals = new Map();
    stopObserving = h.fake.observe(({ headAt, body }) => {
      const msgs = body.messages ?? [];
      const last = msgs[msgs.length - 1]?.content;
      if (typeof last === 'string' && /#\d{6}$/.test(last)) {
        arrivals.set(last, { headAt, recalled: msgs.some((m) => m.role === 'system' && m.content.startsWith(RECALL_HEADING)) });
      }
    });
    const rHeaders = h.headersFor('bench-recall');
    let seq = 0;
    const sendOnce = async (srv) => {
      const content = `Колено болит после длинной пробежки, как готовиться к полумарафону? #${String(++seq).padStart(6, '0')}`;
      const body = JSON.stringify({ query: h.sendQuery, variables: { input: { visionId: recallVision, content } } });
      const start = performance.now();
      const res = await httpPost(`http://127.0.0.1:${srv.port}/graphql`, rHeaders, body);
      if (!res.text.includes('"state":"COMPLETE"')) throw new Error(`sendMessage failed: ${res.text.slice(0, 300)}`);
      const a = arrivals.get(content);
      arrivals.delete(content);
      if (!a) throw new Error('recall bench: the model request of a send was not seen by the fake model');
      await pool.query('delete from vision_messages where visionid = $1 and createdat >= $2', [recallVision, mark]);
      return { head: a.headAt - start, recalled: a.recalled };
    };
    const pairs = async (n) => {
      const out = { on: [], off: [] };
      for (let i = 0; i < n; i++) {
        for (const [k, srv] of i % 2 === 0 ? [['on', withRecall], ['off', without]] : [['off', without], ['on', withRecall]]) out[k].push(await sendOnce(srv));
      }
      return out;
    };
    const w = await pairs(P.warmupSends);
    if (!w.on.every((x) => x.recalled) || w.off.some((x) => x.recalled)) {
      throw new Error(`recall bench: recall ${w.on.filter((x) => x.recalled).length}/${w.on.length} with RECALL_MAX=5, ${w.off.filter((x) => x.recalled).length} without`);
    }
    const recallRounds = [];
    for (let r = 0; r < P.rounds; r++) {
      const s = await pairs(P.sends);
      const round = { on: summarize(s.on.map((x) => x.head)), off: summarize(s.off.map((x) => x.head)) };
      log(`  recall round ${r + 1}: send → model p50 ${fmt(round.on.p50, 2)} ms with recall vs ${fmt(round.off.p50, 2)} ms without`);
      recallRounds.push(round);
    }

    const res = {
      messages: { searched: P.big, otherUser: P.other, recallVision: P.recall },
      queries,
      text: { p50: pick('TEXT', 'p50'), p99: pick('TEXT', 'p99') },
      hybrid: { p50: pick('HYBRID', 'p50'), p99: pick('HYBRID', 'p99') },
      historyRead: { p50: pick('read', 'p50'), p99: pick('read', 'p99') },
      recall: {
        on: { p50: median(recallRounds.map((x) => x.on.p50)), p99: median(recallRounds.map((x) => x.on.p99)) },
        off: { p50: median(recallRounds.map((x) => x.off.p50)), p99: median(recallRounds.map((x) => x.off.p99)) },
      },
      rounds,
      recallRounds,
    };
    res.recall.addedP50 = res.recall.on.p50 - res.recall.off.p50;
    res.met = {
      text: res.text.p50 <= SEARCH_TARGETS.textP50Ms,
      hybrid: res.hybrid.p50 <= SEARCH_TARGETS.hybridP50Ms,
      recall: res.recall.addedP50 <= SEARCH_TARGETS.recallAddedMs,
    };
    h.results.scenarios.search = res;
    log(
      `  TEXT p50 ${fmt(res.text.p50, 2)} / p99 ${fmt(res.text.p99, 2)} ms; HYBRID p50 ${fmt(res.hybrid.p50, 2)} / p99 ${fmt(res.hybrid.p99, 2)} ms; ` +
        `history read p50 ${fmt(res.historyRead.p50, 2)} ms; recall adds ${fmt(res.recall.addedP50, 2)} ms p50 (${fmt(res.recall.on.p50, 2)} vs ${fmt(res.recall.off.p50, 2)})`,
    );
    h.addRow([`8 search TEXT p50 ms, ${bigN} msgs (vs history read)`, fmt(res.text.p50, 2), fmt(res.historyRead.p50, 2), `p99 ${fmt(res.text.p99, 1)}`, `≤ ${SEARCH_TARGETS.textP50Ms} ms`, res.met.text ? 'yes' : 'NO']);
    h.addRow([`  search HYBRID p50 ms (query embedding cached)`, fmt(res.hybrid.p50, 2), fmt(res.historyRead.p50, 2), `p99 ${fmt(res.hybrid.p99, 1)}`, `≤ ${SEARCH_TARGETS.hybridP50Ms} ms`, res.met.hybrid ? 'yes' : 'NO']);
    h.addRow([`  send → model p50 ms: recall on vs off`, fmt(res.recall.on.p50, 2), fmt(res.recall.off.p50, 2), `+${fmt(res.recall.addedP50, 2)} ms`, `≤ +${SEARCH_TARGETS.recallAddedMs} ms`, res.met.recall ? 'yes' : 'NO']);
  } finally {
    stopObserving();
    for (const s of servers) await s.stop();
  }
}
