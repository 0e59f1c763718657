/**
 * The two vector stores behind one interface (issue 12). The pgvector one runs where the
 * extension exists: the machine's PostgreSQL has none, so it runs on PGlite (PostgreSQL 18
 * compiled to WebAssembly, with pgvector) over a real PostgreSQL wire connection
 * (pglite-socket) through the `pg` driver, the same statements the server sends. The float4 one
 * runs on the same data there, and on the suite's PostgreSQL the start-up check picks it.
 */
import { randomUUID } from 'node:crypto';
import { Client } from 'pg';
import pino from 'pino';
import { EMBEDDINGS_TABLE } from '../migrations/Migration20261128000000_search';
import { queryRows, type SqlTx } from '../src/db/sql';
import { offlineEmbedding } from '../src/llm/offline-embeddings';
import { prepareVectorStore } from '../src/search/pgvector-store';
import { loadSearchConfig } from '../src/search/search.config';
import { Float4Store } from '../src/search/vector-store';
import { testDatabaseUrl } from './support/db';
import { startPgliteWithVector } from './support/pglite-vector';

const logger = pino({ level: 'silent' });
const DIMS = 64;
const config = (env: Record<string, string> = {}) => loadSearchConfig({ EMBEDDING_DIMENSIONS: String(DIMS), ...env });

const WORDS = 'утром вечером дома вместе спокойно быстро медленно снова впервые немного всерьёз радостно упорно легко трудно регулярно иногда'.split(' ');
const TOPICS = ['бегать по утрам в парке', 'учить испанский язык', 'копить деньги на квартиру', 'спать до полуночи', 'готовить полезный ужин'];

describe('pgvector store (PGlite with pgvector, over the wire)', () => {
  let pglite: Awaited<ReturnType<typeof startPgliteWithVector>>;
  let client: Client;
  let on: SqlTx;
  const mine = randomUUID();
  const theirs = randomUUID();
  const ids: { id: string; vision: string; text: string }[] = [];

  beforeAll(async () => {
    pglite = await startPgliteWithVector();
    client = new Client({ connectionString: pglite.url });
    await client.connect();
    on = { client } as unknown as SqlTx;
    await client.query(`create table visions (id uuid primary key, userid text not null)`);
    await client.query(`create table vision_messages (id uuid primary key, visionid uuid not null references visions (id), content text not null, createdat timestamptz not null)`);
    for (const s of EMBEDDINGS_TABLE) await client.query(s);
    await client.query(`insert into visions values ($1, 'me'), ($2, 'them')`, [mine, theirs]);
    for (let i = 0; i < 120; i++) {
      const vision = i % 3 === 2 ? theirs : mine;
      // the topic, then words that vary, so similarities differ from message to message
      const text = `${TOPICS[i % TOPICS.length]}, ${WORDS[i % 13]} ${WORDS[(i * 7) % 17]} ${'очень '.repeat(i % 4)}день ${i}`;
      const id = randomUUID();
      ids.push({ id, vision, text });
      await client.query(`insert into vision_messages values ($1, $2, $3, now() - interval '1 day' + $4 * interval '1 minute')`, [id, vision, text, i]);
    }
  }, 60_000);

  afterAll(async () => {
    await client?.end();
    await pglite?.stop();
  });

  it('is chosen at start where the extension exists, stores vectors and ranks like the exact float4 ranking', async () => {
    const store = await prepareVectorStore(on, config(), logger);
    expect(store.kind).toBe('pgvector');
    const [ext] = await queryRows<{ v: string }>(on, `select extversion as v from pg_extension where extname = 'vector'`, []);
    expect(ext?.v).toMatch(/^\d+\.\d+/);
    await store.store(on, 'm', ids.map((r) => ({ messageId: r.id, vector: offlineEmbedding(r.text, DIMS) })));
    const [{ n }] = await queryRows<{ n: string }>(on, `select count(*) as n from vision_message_embeddings where vec is not null`, []);
    expect(Number(n)).toBe(ids.length);

    const query = offlineEmbedding('учить испанский', DIMS);
    const float4 = new Float4Store();
    const q = { visionIds: [mine], model: 'm', vector: query, limit: 10, minScore: 0.1 };
    const a = await store.nearest(on, q);
    const b = await float4.nearest(on, q);
    expect(a.length).toBe(10);
    // the same scores in the same order; the same messages, except where equal scores meet the cut
    a.forEach((x, i) => expect(x.score).toBeCloseTo(b[i]!.score, 5));
    const cut = a[a.length - 1]!.score;
    const above = (list: typeof a) => list.filter((x) => x.score > cut + 1e-6).map((x) => x.messageId).sort();
    expect(above(a).length).toBeGreaterThan(2);
    expect(above(a)).toEqual(above(b));
    // the best are about Spanish, and only the caller's
    const byId = new Map(ids.map((r) => [r.id, r]));
    for (const x of a) {
      expect(byId.get(x.messageId)!.vision).toBe(mine);
      expect(byId.get(x.messageId)!.text).toMatch(/испанский/);
    }
    // before a message: only older ones
    const pivot = ids.filter((r) => r.vision === mine)[40]!;
    const older = await store.nearest(on, { ...q, beforeMessageId: pivot.id });
    const pivotIndex = ids.indexOf(pivot);
    for (const x of older) expect(ids.findIndex((r) => r.id === x.messageId)).toBeLessThan(pivotIndex);
    // another model's rows are not compared
    expect(await store.nearest(on, { ...q, model: 'other' })).toEqual([]);
  });

  it("the store's own ranking statement can use the HNSW index built at start", async () => {
    // the statement exactly as the store sends it, captured on the way to the wire
    const sent: { text: string; values: unknown[] }[] = [];
    const spy = {
      client: {
        query: (q: { text: string; values: unknown[] }) => {
          sent.push(q);
          return client.query(q);
        },
      },
    } as unknown as SqlTx;
    const store = await prepareVectorStore(on, config(), logger);
    await store.nearest(spy, { visionIds: [mine], model: 'm', vector: offlineEmbedding('спать', DIMS), limit: 5, minScore: -1 });
    expect(sent).toHaveLength(1);
    // 120 rows: the planner rightly prefers the caller's rows and a sort; steered off those, the index must serve the order
    await client.query('set enable_seqscan = off; set enable_bitmapscan = off; set enable_sort = off');
    try {
      const plan = await client.query({ text: `explain ${sent[0]!.text}`, values: sent[0]!.values as unknown[] });
      expect(plan.rows.map((r) => r['QUERY PLAN']).join('\n')).toMatch(new RegExp(`vision_message_embeddings_vec${DIMS}_idx`));
    } finally {
      await client.query('reset enable_seqscan; reset enable_bitmapscan; reset enable_sort');
    }
  });
});

describe('on a PostgreSQL without pgvector', () => {
  let client: Client;
  beforeAll(async () => {
    client = new Client({ connectionString: testDatabaseUrl() });
    await client.connect();
  });
  afterAll(() => client?.end());

  it('auto picks float4 arrays; VECTOR_STORE=pgvector refuses to start', async () => {
    const on = { client } as unknown as SqlTx;
    const [has] = await queryRows(on, `select 1 from pg_available_extensions where name = 'vector'`, []);
    if (has) {
      // this server has pgvector after all: the start-up check must then choose it
      expect((await prepareVectorStore(on, config(), logger)).kind).toBe('pgvector');
      return;
    }
    expect((await prepareVectorStore(on, config(), logger)).kind).toBe('float4');
    expect((await prepareVectorStore(on, config({ VECTOR_STORE: 'float4' }), logger)).kind).toBe('float4');
    await expect(prepareVectorStore(on, config({ VECTOR_STORE: 'pgvector' }), logger)).rejects.toThrow(/no pgvector extension/);
  });
});
