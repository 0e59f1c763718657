/**
 * Search (issue 12): full-text search with Russian and English stems, semantic and hybrid search
 * over embeddings made by durable jobs, metered through tokenscount. The real server, a scratch
 * PostgreSQL of this file (its job queue is its own), the official SDK against a fake model whose
 * embeddings are deterministic (texts sharing words are close).
 */
import { Client as PgClient } from 'pg';
import { poolRunner } from '../src/db/sql';
import { textSearch, textSearchStatement } from '../src/search/search.queries';
import { CreateVisionDocument, SendMessageDocument, SetVisionStatusDocument } from './generated/graphql';
import { createScratchDatabase } from './support/db';
import { startFakeOpenAI, type FakeOpenAI } from './support/fake-openai';
import { errorCode, newUser, postGraphQL, startTestServer, type TestServer } from './support/server';
import { waitUntil } from './support/wait';

const SEARCH = `query Search($q: String!, $visionId: ID, $mode: SearchMode, $first: Int, $after: String) {
  searchMessages(query: $q, visionId: $visionId, mode: $mode, first: $first, after: $after) {
    edges { cursor node { score snippet highlights { start length } message { id content sender } vision { id title status } } }
    pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
  } }`;

type Hit = { score: number; snippet: string; highlights: { start: number; length: number }[]; message: { id: string; content: string }; vision: { id: string } };
type SearchData = { searchMessages: { edges: { cursor: string; node: Hit }[]; pageInfo: { hasNextPage: boolean; hasPreviousPage: boolean; endCursor: string | null } } };

let fake: FakeOpenAI;
let scratch: Awaited<ReturnType<typeof createScratchDatabase>>;
let server: TestServer;

const waitFor = <T>(what: string, check: () => Promise<T | null | undefined | false>, timeoutMs = 15_000) => waitUntil(what, check, timeoutMs, 100);

beforeAll(async () => {
  fake = await startFakeOpenAI();
  scratch = await createScratchDatabase('vp_search');
  server = await startTestServer({
    DATABASE_URL: scratch.url,
    OPENAI_API_KEY: 'test-key',
    OPENAI_BASE_URL: fake.baseURL,
    LLM_MAX_RETRIES: '0',
    LLM_TIMEOUT_MS: '3000',
    EMBEDDINGS: 'true',
    SUMMARIES: 'false',
    JOBS_POLL_SECONDS: '1',
    JOBS_MAINTENANCE_SECONDS: '1',
    JOBS_RETRY_DELAY_SECONDS: '1',
    MAX_PAGE_SIZE: '50',
  });
});

beforeEach(() => fake.reset());

afterAll(async () => {
  await server?.stop();
  await fake?.close();
  await scratch?.drop();
});

async function createVision(user: string, title = 'Пробежать марафон'): Promise<string> {
  const r = await server.gql(CreateVisionDocument, { input: { title } }, { user });
  return r.data!.createVision.id;
}

/** Stores COMPLETE messages directly (oldest first, a minute apart); their ids in order. */
async function seed(visionId: string, contents: string[], sender: 'user' | 'assistant' = 'user'): Promise<string[]> {
  const rows = await server.sql<{ id: string }>(
    `insert into vision_messages (id, visionid, sender, messagetype, content, state, createdat)
     select gen_random_uuid(), ?, ?, 'text', c, 'complete', now() - interval '1 day' + n * interval '1 minute'
     from json_array_elements_text(?::json) with ordinality as t(c, n) order by n returning id`,
    [visionId, sender, JSON.stringify(contents)],
  );
  return rows.map((r) => r.id);
}

async function search(user: string, q: string, extra: Record<string, unknown> = {}) {
  return postGraphQL<SearchData>(server.graphqlUrl, SEARCH, { q, ...extra }, { user });
}

async function hitsOf(user: string, q: string, extra: Record<string, unknown> = {}): Promise<Hit[]> {
  const r = await search(user, q, extra);
  expect(r.errors).toBeUndefined();
  return r.data!.searchMessages.edges.map((e) => e.node);
}

const contents = (hits: Hit[]) => hits.map((h) => h.message.content);

/** Embeds every message of the vision now, the way the background job does. */
async function embedAll(visionId: string): Promise<void> {
  while ((await server.server.search.embeddings.embedPending(visionId)) === 'more');
}

describe('TEXT search', () => {
  it('finds Russian and English word forms, honours -word and quoted phrases, and ranks', async () => {
    const user = newUser('text');
    const v = await createVision(user);
    await seed(v, [
      'Вчера я бегал в парке целый час',
      'Утренняя пробежка была тяжелой',
      'Сегодня плавал в бассейне',
      'I was running every morning this week',
      'She runs faster than me',
      'Бегать по утрам я буду и дальше, бегать каждый день',
    ]);
    // Russian Snowball: бегать, бегал -> "бега"; пробежка -> "пробежк" (not the same stem)
    const run = await hitsOf(user, 'бегать', { mode: 'TEXT' });
    expect(contents(run).sort()).toEqual(['Бегать по утрам я буду и дальше, бегать каждый день', 'Вчера я бегал в парке целый час']);
    // two occurrences rank above one
    expect(run[0]!.message.content).toMatch(/^Бегать по утрам/);
    expect(run[0]!.score).toBeGreaterThan(run[1]!.score);
    // English: running, runs -> "run"
    expect(contents(await hitsOf(user, 'run', { mode: 'TEXT' })).sort()).toEqual(['I was running every morning this week', 'She runs faster than me']);
    // -word excludes
    expect(contents(await hitsOf(user, 'бегать -парк', { mode: 'TEXT' }))).toEqual(['Бегать по утрам я буду и дальше, бегать каждый день']);
    // quotes: the words next to each other, in this order
    expect(contents(await hitsOf(user, '"утренняя пробежка"', { mode: 'TEXT' }))).toEqual(['Утренняя пробежка была тяжелой']);
    expect(await hitsOf(user, '"пробежка утренняя"', { mode: 'TEXT' })).toEqual([]);
    // or
    expect(contents(await hitsOf(user, 'плавать or пробежка', { mode: 'TEXT' })).sort()).toEqual(['Сегодня плавал в бассейне', 'Утренняя пробежка была тяжелой']);
  });

  it('highlights point at the matched words inside a plain-text snippet', async () => {
    const user = newUser('hl');
    const v = await createVision(user);
    const long = `${'Сначала долго говорили о работе и погоде. '.repeat(8)}Потом я бегал вдоль реки, и бегать было легко. ${'Дальше снова о разном. '.repeat(8)}`;
    await seed(v, [long, 'Купил <b>новые</b> кроссовки, чтобы бегать']);
    const hits = await hitsOf(user, 'бегать', { mode: 'TEXT' });
    expect(hits).toHaveLength(2);
    for (const h of hits) {
      expect(h.highlights.length).toBeGreaterThan(0);
      for (const r of h.highlights) expect(h.snippet.slice(r.start, r.start + r.length).toLowerCase()).toMatch(/^бега(л|ть)$/);
      expect(h.snippet).not.toMatch(/[\uE000\uE001]/);
      expect(h.message.content.replace(/\s+/g, ' ')).toContain(h.snippet);
    }
    const longHit = hits.find((h) => h.message.content === long)!;
    // around the match, not the whole message
    expect(longHit.snippet.length).toBeLessThan(long.length / 2);
    // the user's own angle brackets are text, returned as written
    expect(hits.find((h) => h.message.content !== long)!.snippet).toContain('<b>новые</b>');
  });

  it('only COMPLETE and STOPPED user and assistant messages of the caller; FROZEN visions too, DELETED ones only when named', async () => {
    const user = newUser('own');
    const other = newUser('other');
    const v = await createVision(user);
    const gone = await createVision(user, 'Старая визия');
    const frozen = await createVision(user, 'Замороженная визия');
    const foreign = await createVision(other);
    await seed(v, ['Моя собака Барни любит гулять']);
    await seed(gone, ['Барни в старой визии']);
    await seed(frozen, ['Барни в замороженной визии']);
    await server.gql(SetVisionStatusDocument, { id: frozen, status: 'FROZEN' }, { user });
    await seed(foreign, ['Барни чужого человека']);
    await server.sql(
      `insert into vision_messages (id, visionid, sender, messagetype, content, state, createdat) values
       (gen_random_uuid(), ?, 'assistant', 'text', 'Барни недописан', 'streaming', now()),
       (gen_random_uuid(), ?, 'assistant', 'text', 'Барни сбой', 'failed', now()),
       (gen_random_uuid(), ?, 'system', 'text', 'Барни системный', 'complete', now())`,
      [v, v, v],
    );
    await server.gql(SetVisionStatusDocument, { id: gone, status: 'DELETED' }, { user });
    // FROZEN visions are searched (read-only, not gone); DELETED ones are not
    expect(contents(await hitsOf(user, 'Барни', { mode: 'TEXT' })).sort()).toEqual(['Барни в замороженной визии', 'Моя собака Барни любит гулять']);
    expect(contents(await hitsOf(user, 'Барни', { mode: 'TEXT', visionId: gone }))).toEqual(['Барни в старой визии']);
    const foreignSearch = await search(user, 'Барни', { visionId: foreign, mode: 'TEXT' });
    expect(errorCode(foreignSearch)).toBe('NOT_FOUND');
    expect(foreignSearch.status).toBe(200);
    expect(contents(await hitsOf(other, 'Барни', { mode: 'TEXT' }))).toEqual(['Барни чужого человека']);
  });

  it('pages by opaque cursors: every hit once, in one order, however the pages are cut', async () => {
    const user = newUser('pages');
    const v = await createVision(user);
    // ranks tie in groups (same text), so the id breaks ties across pages
    await seed(v, Array.from({ length: 23 }, (_, i) => (i % 3 === 0 ? 'цель цель цель' : i % 3 === 1 ? 'цель цель' : 'цель') + ` ${i}`));
    const all = await hitsOf(user, 'цель', { mode: 'TEXT', first: 50 });
    expect(all).toHaveLength(23);
    const seen: string[] = [];
    let after: string | null = null;
    let pages = 0;
    for (;;) {
      const r = await search(user, 'цель', { mode: 'TEXT', first: 5, after });
      const c = r.data!.searchMessages;
      seen.push(...c.edges.map((e) => e.node.message.id));
      expect(c.pageInfo.hasPreviousPage).toBe(after !== null);
      pages++;
      if (!c.pageInfo.hasNextPage) break;
      after = c.pageInfo.endCursor;
    }
    expect(pages).toBe(5);
    expect(seen).toEqual(all.map((h) => h.message.id));
    const scores = all.map((h) => h.score);
    expect([...scores].sort((a, b) => b - a)).toEqual(scores);
  });

  it('ranks only the newest SEARCH_TEXT_DEPTH matches', async () => {
    const user = newUser('depth');
    const v = await createVision(user);
    // the oldest has the word three times (the best rank of all), the newest once each
    const ids = await seed(v, ['озеро озеро озеро', 'озеро один', 'озеро два', 'озеро три', 'озеро четыре']);
    const sql = poolRunner(server.db.orm.em);
    const all = await textSearch(sql, { visionIds: [v], query: 'озеро', limit: 10, depth: 2000 });
    expect(all[0]!.id).toBe(ids[0]);
    expect(all).toHaveLength(5);
    const newest = await textSearch(sql, { visionIds: [v], query: 'озеро', limit: 10, depth: 3 });
    expect(newest.map((h) => h.id).sort()).toEqual(ids.slice(2).sort());
  });

  it('bad input is BAD_USER_INPUT with HTTP 200, never a 5xx', async () => {
    const user = newUser('bad');
    const v = await createVision(user);
    const cases: [string, Record<string, unknown>][] = [
      ['', {}],
      ['   \n\t ', {}],
      ['я'.repeat(501), {}],
      ['цель', { first: 51 }],
      ['цель', { first: 0 }],
      ['цель', { after: 'not-a-cursor' }],
      ['цель', { after: Buffer.from('s1:TEXT:abc:def').toString('base64url') }],
      ['цель', { visionId: 'nope' }],
      ['\ud800 цель', {}],
    ];
    for (const [q, extra] of cases) {
      const r = await search(user, q, { visionId: v, mode: 'TEXT', ...extra });
      expect([q.slice(0, 10), errorCode(r)]).toEqual([q.slice(0, 10), 'BAD_USER_INPUT']);
      expect(r.status).toBeLessThan(500);
    }
    // a cursor of another mode
    await seed(v, ['цель раз', 'цель два']);
    await embedAll(v);
    const first = await search(user, 'цель', { mode: 'SEMANTIC', first: 1 });
    const cursor = first.data!.searchMessages.pageInfo.endCursor;
    expect(cursor).toEqual(expect.any(String));
    expect(errorCode(await search(user, 'цель', { mode: 'HYBRID', after: cursor }))).toBe('BAD_USER_INPUT');
    // exactly 500 characters is fine
    expect((await search(user, 'я'.repeat(500), { mode: 'TEXT' })).errors).toBeUndefined();
    // stop words only: nothing to find, no error
    expect(await hitsOf(user, 'the and', { mode: 'TEXT' })).toEqual([]);
  });

  it('EXPLAIN on 100,000 messages of several users: the GIN index, and no other user\'s rows read', async () => {
    const users = Array.from({ length: 5 }, (_, i) => newUser(`explain${i}`));
    const visions: string[][] = [];
    for (const u of users) visions.push([await createVision(u, 'A'), await createVision(u, 'B')]);
    const all = visions.flat();
    // 100,000 messages spread over 10 visions of 5 users; every user has the word "марафон" in 1 % of them
    // on a connection of its own: the server's pool has a statement timeout (DB_TIMEOUT_MS) that a
    // loaded machine can pass here, and a client that gives up does not stop the insert on the server
    await bulkSql(
      `insert into vision_messages (id, visionid, sender, messagetype, content, state, createdat)
       select gen_random_uuid(), (?::uuid[])[1 + n % 10], case when n % 2 = 0 then 'user' else 'assistant' end, 'text',
              case when (n / 10) % 100 = 7 then 'Готовлюсь к марафону, шаг ' || n else 'Обычный день номер ' || n || ', работа и отдых' end,
              'complete', now() - interval '2 days' + n * interval '1 second'
       from generate_series(1, 100000) n`,
      [`{${all.join(',')}}`],
    );
    await bulkSql('analyze vision_messages', []);
    try {
      const mine = visions[0]!;
      const [{ n: expected }] = await server.sql<{ n: string }>(
        `select count(*) as n from vision_messages where visionid = any(?::uuid[]) and searchtsv @@ websearch_to_tsquery('russian', 'марафон')`,
        [`{${mine.join(',')}}`],
      );
      expect(Number(expected)).toBe(200);
      const { sql, params } = textSearchStatement({ visionIds: mine, query: 'марафон', limit: 21, depth: 2000 });
      let i = 0;
      const pg = new PgClient({ connectionString: scratch.url });
      await pg.connect();
      try {
        const res = await pg.query(`explain (analyze, format json) ${sql.replace(/\?/g, () => `$${++i}`)}`, params.map((p) => (typeof p === 'number' ? p : String(p))));
        const plan = JSON.stringify(res.rows[0]['QUERY PLAN']);
        const nodes: any[] = [];
        const walk = (n: any) => {
          nodes.push(n);
          (n.Plans ?? []).forEach(walk);
        };
        walk(res.rows[0]['QUERY PLAN'][0].Plan);
        const index = nodes.find((n) => n['Node Type'] === 'Bitmap Index Scan');
        expect(index?.['Index Name']).toBe('vision_messages_search_idx');
        // both the vision and the words are conditions of the index itself
        expect(index['Index Cond']).toMatch(/visionid/);
        expect(index['Index Cond']).toMatch(/searchtsv/);
        // what left the index is exactly the caller's matches: no other user's row reached the heap
        expect(index['Actual Rows']).toBe(200);
        const heap = nodes.find((n) => n['Node Type'] === 'Bitmap Heap Scan');
        expect(heap['Actual Rows']).toBe(200);
        expect(heap['Rows Removed by Index Recheck'] ?? 0).toBe(0);
        expect(heap['Rows Removed by Filter'] ?? 0).toBe(0);
        expect(plan).not.toMatch(/Seq Scan/);
      } finally {
        await pg.end();
      }
      // and the API agrees
      const hits = await hitsOf(users[0]!, 'марафон', { mode: 'TEXT', first: 50 });
      expect(hits).toHaveLength(50);
      expect(new Set(hits.map((h) => h.vision.id)).size).toBe(2);
      for (const h of hits) expect(mine).toContain(h.vision.id);
    } finally {
      await bulkSql(`delete from vision_messages where visionid = any(?::uuid[])`, [`{${all.join(',')}}`]);
    }
  }, 120_000);
});

/** One statement (`?` placeholders) on a connection of its own, without the server pool's statement timeout. */
async function bulkSql(query: string, params: unknown[]): Promise<void> {
  const pg = new PgClient({ connectionString: scratch.url });
  await pg.connect();
  try {
    let i = 0;
    await pg.query(query.replace(/\?/g, () => `$${++i}`), params);
  } finally {
    await pg.end();
  }
}

describe('embeddings, SEMANTIC and HYBRID', () => {
  it('every COMPLETE message gets an embedding from a job, one tokenscount row per embeddings call', async () => {
    const user = newUser('emb');
    const v = await createVision(user);
    const before = fake.embeddingRequests.length;
    // the reply names the same stroke, so every embeddings request of this turn carries the word
    fake.defaultBehaviour = { kind: 'stream', chunks: ['Плавание кролем: ', 'начните с дыхания.'] };
    const sent = await server.gql(SendMessageDocument, { input: { visionId: v, content: 'Хочу научиться плавать кролем' } }, { user });
    expect(sent.errors).toBeUndefined();
    // SEMANTIC finds a message within 10 s of its commit
    const rows = await waitFor('both messages of the turn embedded', async () => {
      const r = await server.sql<{ sender: string; dims: number }>(
        `select m.sender, e.dims from vision_messages m join vision_message_embeddings e on e.messageid = m.id where m.visionid = ?`,
        [v],
      );
      return r.length === 2 ? r : null;
    }, 10_000);
    expect(rows.map((r) => r.dims)).toEqual([256, 256]);
    const calls = fake.embeddingRequests.slice(before).filter((r) => JSON.stringify(r.body).includes('кролем'));
    const metered = await server.sql<{ meta: any; prompttokens: number; completiontokens: number; state: string }>(
      `select meta, prompttokens, completiontokens, state from tokenscount where clientid = ? and meta->>'purpose' = 'embedding'`,
      [user],
    );
    // the user message is embedded before the reply (recall), the reply by the job
    expect(metered.length).toBe(calls.length);
    expect(metered.map((m: any) => m.meta.for).sort()).toEqual(['messages', 'recall']);
    for (const m of metered) {
      expect(m).toMatchObject({ state: 'settled', completiontokens: 0, meta: { module: 'search', finish: 'complete', purpose: 'embedding', visionid: v } });
      expect(m.prompttokens).toBeGreaterThan(0);
    }
    // the model and dimensions asked for, floats asked for
    expect(calls[0]!.body).toMatchObject({ model: 'text-embedding-3-small', dimensions: 256, encoding_format: 'float' });
  });

  it('SEMANTIC ranks the message that shares the meaning first; HYBRID has both kinds of hit', async () => {
    const user = newUser('sem');
    const v = await createVision(user);
    await seed(v, [
      'Я записался на марафон в апреле',
      'Купил продукты на неделю',
      'Марафонская дистанция пугает меня',
      'Посмотрел новый фильм вечером',
    ]);
    await embedAll(v);
    const semantic = await hitsOf(user, 'записаться на марафон', { mode: 'SEMANTIC' });
    expect(semantic[0]!.message.content).toBe('Я записался на марафон в апреле');
    expect(contents(semantic)).toContain('Марафонская дистанция пугает меня');
    expect(contents(semantic)).not.toContain('Купил продукты на неделю');
    for (let i = 1; i < semantic.length; i++) expect(semantic[i - 1]!.score).toBeGreaterThanOrEqual(semantic[i]!.score);
    // TEXT knows only the exact stem; the adjective is found by meaning only
    const text = contents(await hitsOf(user, 'марафон', { mode: 'TEXT' }));
    expect(text).toEqual(['Я записался на марафон в апреле']);
    const hybrid = await hitsOf(user, 'марафон');
    expect(contents(hybrid).slice(0, 2).sort()).toEqual(['Марафонская дистанция пугает меня', 'Я записался на марафон в апреле']);
    // a hit in both rankings outranks a hit in one
    expect(hybrid[0]!.message.content).toBe('Я записался на марафон в апреле');
    // one metered call per search (the query text's embedding)
    const searchRows = () => server.sql(`select 1 from tokenscount where clientid = ? and meta->>'for' = 'search'`, [user]);
    expect(await searchRows()).toHaveLength(2);
    // the same text again (the next page, say) asks the model nothing
    await hitsOf(user, 'марафон', { first: 1 });
    expect(await searchRows()).toHaveLength(2);
  });

  it('never returns another user\'s messages by meaning', async () => {
    const me = newUser('semown');
    const other = newUser('semother');
    const mine = await createVision(me);
    const theirs = await createVision(other);
    await seed(mine, ['Мой план тренировок на зиму']);
    await seed(theirs, ['Секретный план тренировок соседа']);
    await embedAll(mine);
    await embedAll(theirs);
    for (const mode of ['SEMANTIC', 'HYBRID', 'TEXT']) {
      const hits = await hitsOf(me, 'план тренировок', { mode });
      expect(contents(hits)).toEqual(['Мой план тренировок на зиму']);
    }
  });

  it('with the embeddings endpoint down: TEXT still works, SEMANTIC falls back with a warning, and the message is embedded once it returns', async () => {
    const user = newUser('down');
    const v = await createVision(user);
    fake.embeddingBehaviour = { kind: 'status', status: 503 };
    const sent = await server.gql(SendMessageDocument, { input: { visionId: v, content: 'Записался в секцию скалолазания' } }, { user });
    expect(sent.errors).toBeUndefined();
    // the reply completes regardless
    await waitFor('the reply', async () => {
      const r = await server.sql(`select 1 from vision_messages where visionid = ? and sender = 'assistant' and state = 'complete'`, [v]);
      return r.length === 1;
    });
    await waitFor('a failed embedding attempt', async () => fake.embeddingRequests.length >= 2);
    const r = await search(user, 'скалолазание', { mode: 'SEMANTIC' });
    expect(r.status).toBe(200);
    expect(r.errors).toBeUndefined();
    expect(contents(r.data!.searchMessages.edges.map((e) => e.node))).toEqual(['Записался в секцию скалолазания']);
    const ext = await rawExtensions(user, 'скалолазание');
    expect(ext.warnings[0].code).toBe('SEARCH_FELL_BACK_TO_TEXT');
    // failed calls are metered too
    const failed = await server.sql(`select 1 from tokenscount where clientid = ? and meta->>'purpose' = 'embedding' and meta->>'finish' = 'failed'`, [user]);
    expect(failed.length).toBeGreaterThan(0);
    expect(await server.sql(`select 1 from vision_message_embeddings e join vision_messages m on m.id = e.messageid where m.visionid = ?`, [v])).toHaveLength(0);
    // the endpoint returns: the job's retry embeds the turn
    fake.embeddingBehaviour = undefined;
    await waitFor(
      'embeddings after the endpoint returned',
      async () => (await server.sql(`select 1 from vision_message_embeddings where visionid = ?`, [v])).length === 2,
      20_000,
    );
    const ok = await rawExtensions(user, 'скалолазание', 'SEMANTIC');
    expect(ok.warnings).toBeUndefined();
  }, 40_000);
});

describe('backfill', () => {
  it('messages stored before embeddings existed are embedded after a start, without a new turn', async () => {
    const user = newUser('backfill');
    const v = await createVision(user);
    const ids = await seed(v, ['Старое сообщение про горы', 'Ещё одно старое про море']);
    // nothing queues these: they were stored by SQL, as rows from before the feature are
    await new Promise((r) => setTimeout(r, 1500));
    expect(await server.sql(`select 1 from vision_message_embeddings where visionid = ?`, [v])).toHaveLength(0);
    // a start (a deploy) queues the backfill; any instance's workers run it
    const next = await startTestServer({
      DATABASE_URL: scratch.url,
      OPENAI_API_KEY: 'test-key',
      OPENAI_BASE_URL: fake.baseURL,
      EMBEDDINGS: 'true',
      SUMMARIES: 'false',
      JOBS_POLL_SECONDS: '1',
    });
    try {
      const rows = await waitFor('backfilled embeddings', async () => {
        const r = await server.sql<{ messageid: string }>(`select messageid from vision_message_embeddings where visionid = ?`, [v]);
        return r.length === 2 ? r : null;
      });
      expect(rows.map((r) => r.messageid).sort()).toEqual([...ids].sort());
      const metered = await server.sql(`select 1 from tokenscount where clientid = ? and meta->>'purpose' = 'embedding' and meta->>'for' = 'messages'`, [user]);
      expect(metered.length).toBeGreaterThanOrEqual(1);
    } finally {
      await next.stop();
    }
  });
});

describe('with no OPENAI_API_KEY', () => {
  it('the offline responder embeds: SEMANTIC search works and is metered', async () => {
    // a database of its own: on a shared one, the other server's workers would take its jobs
    const own = await createScratchDatabase('vp_search_offline');
    const offline = await startTestServer({ DATABASE_URL: own.url, EMBEDDINGS: 'true', SUMMARIES: 'false', JOBS_POLL_SECONDS: '1' });
    try {
      expect(offline.server.search.embeddings.enabled).toBe(true);
      const user = newUser('offline');
      const r = await offline.gql(CreateVisionDocument, { input: { title: 'Офлайн' } }, { user });
      const v = r.data!.createVision.id;
      const sent = await offline.gql(SendMessageDocument, { input: { visionId: v, content: 'Начала учить испанский язык по вечерам' } }, { user });
      expect(sent.errors).toBeUndefined();
      // embedded by the job within 10 s of the commit
      await waitFor('embeddings from the offline responder', async () => (await offline.sql(`select 1 from vision_message_embeddings where visionid = ?`, [v])).length === 2, 10_000);
      const res = await postGraphQL<SearchData>(offline.graphqlUrl, SEARCH, { q: 'испанский язык', mode: 'SEMANTIC' }, { user });
      expect(res.errors).toBeUndefined();
      expect(res.data!.searchMessages.edges[0]!.node.message.content).toBe('Начала учить испанский язык по вечерам');
      const rows = await offline.sql(`select 1 from tokenscount where clientid = ? and meta->>'purpose' = 'embedding' and state = 'settled'`, [user]);
      expect(rows.length).toBeGreaterThanOrEqual(2);
      // no request reached the test's fake model
      expect(fake.embeddingRequests).toHaveLength(0);
    } finally {
      await offline.stop();
      await own.drop();
    }
  });
});

async function rawExtensions(user: string, q: string, mode = 'SEMANTIC'): Promise<any> {
  const res = await fetch(server.graphqlUrl, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'x-user-id': user },
    body: JSON.stringify({ query: SEARCH, variables: { q, mode } }),
  });
  const body = (await res.json()) as { errors?: unknown; extensions?: unknown };
  expect(body.errors).toBeUndefined();
  return body.extensions ?? {};
}
