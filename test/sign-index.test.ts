/**
 * The float4 store's in-process sign index (src/search/sign-index.ts): the same neighbours as the
 * scan in PostgreSQL, kept up to date from the database (new rows, rows of another process,
 * deleted messages, another model), within its memory bound. Real PostgreSQL.
 */
import { poolRunner, type SqlRunner } from '../src/db/sql';
import { SignIndex } from '../src/search/sign-index';
import { Float4Store, type NearestQuery } from '../src/search/vector-store';
import { CreateVisionDocument } from './generated/graphql';
import { createScratchDatabase } from './support/db';
import { newUser, startTestServer, type TestServer } from './support/server';

let scratch: Awaited<ReturnType<typeof createScratchDatabase>>;
let server: TestServer;
let sql: SqlRunner;
const MODEL = 'test-embedding';
const DIMS = 64;

/** Deterministic pseudo-random vectors (mulberry32). */
function rng(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296 - 0.5;
  };
}
const vectorOf = (r: () => number) => Array.from({ length: DIMS }, r);

beforeAll(async () => {
  scratch = await createScratchDatabase('vp_signs');
  server = await startTestServer({ DATABASE_URL: scratch.url });
  sql = poolRunner(server.db.orm.em);
});

afterAll(async () => {
  await server?.stop();
  await scratch?.drop();
});

async function visionWith(n: number, seed: number, model = MODEL): Promise<{ visionId: string; ids: string[] }> {
  const r = await server.gql(CreateVisionDocument, { input: { title: 'signs' } }, { user: newUser() });
  const visionId = r.data!.createVision.id;
  const rows = await server.sql<{ id: string }>(
    `insert into vision_messages (id, visionid, sender, messagetype, content, state, createdat)
     select gen_random_uuid(), ?, 'user', 'text', 'm' || g, 'complete', timestamptz '2026-01-01' + g * interval '1 minute'
     from generate_series(1, ?) g order by g returning id`,
    [visionId, n],
  );
  const ids = rows.map((x) => x.id);
  const random = rng(seed);
  await new Float4Store().store(sql, model, ids.map((messageId) => ({ messageId, vector: vectorOf(random) })));
  return { visionId, ids };
}

describe('sign index', () => {
  test('gives the same neighbours as the scan in PostgreSQL, with and without a floor', async () => {
    const a = await visionWith(3000, 1);
    const b = await visionWith(500, 2);
    const scan = new Float4Store();
    const indexed = new Float4Store(new SignIndex(64 * 1024 * 1024));
    const random = rng(99);
    for (let i = 0; i < 20; i++) {
      const q: NearestQuery = {
        visionIds: i % 2 ? [a.visionId] : [a.visionId, b.visionId],
        model: MODEL,
        vector: vectorOf(random),
        limit: i % 3 ? 5 : 200,
        minScore: -1,
        beforeMessageId: i % 4 === 0 ? a.ids[1500] : undefined,
      };
      const [expected, got] = [await scan.nearest(sql, q), await indexed.nearest(sql, q)];
      expect(got).toEqual(expected);
      expect(got.length).toBe(q.limit);
    }
    // recall's form: the window's ids instead of a lookup of the floor, and the messages read with the vectors
    for (let i = 0; i < 5; i++) {
      const floor = 1000 + 400 * i;
      const q: NearestQuery = { visionIds: [a.visionId], model: MODEL, vector: vectorOf(random), limit: 5, minScore: -1, beforeMessageId: a.ids[floor] };
      const expected = await scan.nearest(sql, q);
      const got = await indexed.nearest(sql, {
        ...q,
        windowIds: a.ids.slice(floor),
        withMessages: { columns: 'm.id, m.content', eligible: "m.state = 'complete'" },
      });
      expect(got.map(({ messageId, score }) => ({ messageId, score }))).toEqual(expected);
      for (const n of got) expect(n.row).toEqual({ id: n.messageId, content: `m${a.ids.indexOf(n.messageId) + 1}` });
    }
    // a floor that has no embedding yet (the index cannot tell its time): the window's ids are left out one by one
    const [unembedded] = await server.sql<{ id: string }>(
      `insert into vision_messages (id, visionid, sender, messagetype, content, state, createdat)
       select gen_random_uuid(), visionid, 'user', 'text', 'floor', 'complete', createdat - interval '30 seconds' from vision_messages where id = ? returning id`,
      [a.ids[2000]],
    );
    const q: NearestQuery = { visionIds: [a.visionId], model: MODEL, vector: vectorOf(random), limit: 5, minScore: -1, beforeMessageId: unembedded!.id };
    expect(await indexed.nearest(sql, { ...q, windowIds: [unembedded!.id, ...a.ids.slice(2000)] })).toEqual(await scan.nearest(sql, q));
  });

  test('sees rows written after its first read, also by another process, and forgets deleted messages', async () => {
    const { visionId, ids } = await visionWith(400, 3);
    const index = new SignIndex(64 * 1024 * 1024);
    const mine = new Float4Store(index);
    const q = (vector: number[]): NearestQuery => ({ visionIds: [visionId], model: MODEL, vector, limit: 5, minScore: -1 });
    const probe = vectorOf(rng(7));
    expect(await mine.nearest(sql, q(probe))).toEqual(await new Float4Store().nearest(sql, q(probe)));

    // a message embedded afterwards (by another process: plain store) with the query's own vector is the best match
    const [added] = await server.sql<{ id: string }>(
      `insert into vision_messages (id, visionid, sender, messagetype, content, state) values (gen_random_uuid(), ?, 'user', 'text', 'new', 'complete') returning id`,
      [visionId],
    );
    await new Float4Store().store(sql, MODEL, [{ messageId: added!.id, vector: probe }]);
    const after = await mine.nearest(sql, q(probe));
    expect(after[0]).toEqual({ messageId: added!.id, score: expect.closeTo(1, 5) });

    // deleted: never ranked, and the index reads on to fill the list
    const top = after.slice(0, 3).map((n) => n.messageId);
    await server.sql(`delete from vision_messages where id = any(?::uuid[])`, [`{${top.join(',')}}`]);
    const healed = await mine.nearest(sql, q(probe));
    for (const id of top) expect(healed.map((n) => n.messageId)).not.toContain(id);
    expect(healed).toEqual(await new Float4Store().nearest(sql, q(probe)));
    expect(healed).toHaveLength(5);

    // re-embedded by another model: gone from this model's ranking
    const moved = healed[0]!.messageId;
    await new Float4Store().store(sql, 'another-model', [{ messageId: moved, vector: probe }]);
    const other = await mine.nearest(sql, q(probe));
    expect(other.map((n) => n.messageId)).not.toContain(moved);
    expect(other).toEqual(await new Float4Store().nearest(sql, q(probe)));
    expect(ids.length).toBe(400);
  });

  test('stays within its memory bound by forgetting the least recently used visions, and still answers', async () => {
    const a = await visionWith(300, 4);
    const b = await visionWith(300, 5);
    const index = new SignIndex(60_000); // room for about one of them
    const store = new Float4Store(index);
    const vector = vectorOf(rng(11));
    for (const v of [a, b, a]) {
      const q: NearestQuery = { visionIds: [v.visionId], model: MODEL, vector, limit: 5, minScore: -1 };
      expect(await store.nearest(sql, q)).toEqual(await new Float4Store().nearest(sql, q));
      expect(index.size).toBeLessThanOrEqual(60_000);
      expect(index.size).toBeGreaterThan(0);
    }
  });

  test('the server uses it on PostgreSQL without pgvector; SIGN_INDEX_BYTES=0 scans in PostgreSQL', async () => {
    expect(server.server.search.store.kind).toBe('float4');
    expect(typeof server.server.search.store.warm).toBe('function');
    const { visionId } = await visionWith(50, 6);
    await server.server.search.store.warm!(sql, [visionId], MODEL, DIMS);
    const off = await startTestServer({ DATABASE_URL: scratch.url, SIGN_INDEX_BYTES: '0' });
    try {
      expect((off.server.search.store as unknown as { index?: SignIndex }).index).toBeUndefined();
      expect((server.server.search.store as unknown as { index?: SignIndex }).index).toBeInstanceOf(SignIndex);
      const q: NearestQuery = { visionIds: [visionId], model: MODEL, vector: vectorOf(rng(12)), limit: 5, minScore: -1 };
      expect(await off.server.search.store.nearest(sql, q)).toEqual(await server.server.search.store.nearest(sql, q));
    } finally {
      await off.stop();
    }
  });
});
