import {
  CreateVisionDocument,
  GetVisionDocument,
  ListVisionsDocument,
  RenameVisionDocument,
  SetVisionStatusDocument,
  VisionMessagesDocument,
  VisionOverviewDocument,
  type ListVisionsQuery,
  type VisionMessagesQuery,
  type VisionStatus,
} from './generated/graphql';
import { errorCode, newUser, startTestServer, type GqlResult, type TestServer } from './support/server';

let s: TestServer;
beforeAll(async () => {
  // a time zone far from UTC, so a wrong zone shows up in the default title
  s = await startTestServer({ TITLE_TIME_ZONE: 'Pacific/Kiritimati' });
});
afterAll(() => s?.stop());

async function create(user: string, input?: { title?: string; meta?: Record<string, unknown> }) {
  const r = await s.gql(CreateVisionDocument, { input }, { user });
  expect(r.errors).toBeUndefined();
  return r.data!.createVision;
}

/** Inserts `n` messages with strictly increasing timestamps; returns their ids oldest first. */
async function seedMessages(visionId: string, n: number): Promise<string[]> {
  const rows = await s.sql<{ id: string }>(
    `insert into vision_messages (id, visionid, sender, messagetype, content, state, createdat)
     select gen_random_uuid(), ?, case when i % 2 = 1 then 'user' else 'assistant' end, 'text', 'm' || i, 'complete',
            timestamptz '2026-01-01' + make_interval(secs => i)
     from generate_series(1, ?) as i
     returning id`,
    [visionId, n],
  );
  const ordered = await s.sql<{ id: string }>(`select id from vision_messages where visionid = ? order by createdat, id`, [visionId]);
  expect(ordered).toHaveLength(rows.length);
  return ordered.map((r) => r.id);
}

describe('createVision', () => {
  it('defaults the title to "Визия от DD.MM.YYYY" in the configured time zone and the status to ACTIVE', async () => {
    const user = newUser();
    const v = await create(user);
    // Kiritimati is UTC+14 all year
    const local = new Date(Date.parse(v.createdAt) + 14 * 3600_000);
    const dd = String(local.getUTCDate()).padStart(2, '0');
    const mm = String(local.getUTCMonth() + 1).padStart(2, '0');
    expect(v.title).toBe(`Визия от ${dd}.${mm}.${local.getUTCFullYear()}`);
    expect(v.status).toBe('ACTIVE');
    expect(v.meta).toBeNull();
    expect(v.updatedAt).toBe(v.createdAt);
    const [row] = await s.sql(`select userid, status, title from visions where id = ?`, [v.id]);
    expect(row).toEqual({ userid: user, status: 'active', title: v.title });
  });

  it('keeps a given title (trimmed) and meta', async () => {
    const v = await create(newUser(), { title: '  Пробежать марафон  ', meta: { tags: ['sport'], n: 1 } });
    expect(v.title).toBe('Пробежать марафон');
    expect(v.meta).toEqual({ tags: ['sport'], n: 1 });
  });

  it('uses UUIDv7 ids', async () => {
    const v = await create(newUser());
    expect(v.id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
  });
});

describe('renameVision and setVisionStatus', () => {
  it('renames and bumps updatedAt', async () => {
    const user = newUser();
    const v = await create(user);
    await new Promise((r) => setTimeout(r, 5));
    const r = await s.gql(RenameVisionDocument, { id: v.id, title: 'Новое имя' }, { user });
    expect(r.data!.renameVision.title).toBe('Новое имя');
    expect(Date.parse(r.data!.renameVision.updatedAt)).toBeGreaterThan(Date.parse(v.updatedAt));
  });

  const statuses: VisionStatus[] = ['ACTIVE', 'FROZEN', 'DELETED'];
  for (const from of statuses) {
    for (const to of statuses) {
      it(`${from} → ${to}`, async () => {
        const user = newUser();
        const v = await create(user);
        if (from !== 'ACTIVE') expect((await s.gql(SetVisionStatusDocument, { id: v.id, status: from }, { user })).data!.setVisionStatus.status).toBe(from);
        const r = await s.gql(SetVisionStatusDocument, { id: v.id, status: to }, { user });
        expect(r.errors).toBeUndefined();
        expect(r.data!.setVisionStatus.status).toBe(to);
        const [row] = await s.sql(`select status from visions where id = ?`, [v.id]);
        expect(row!.status).toBe(to.toLowerCase());
      });
    }
  }

  it('DELETED keeps the vision and its messages; ACTIVE restores it', async () => {
    const user = newUser();
    const v = await create(user);
    await seedMessages(v.id, 3);
    await s.gql(SetVisionStatusDocument, { id: v.id, status: 'DELETED' }, { user });
    const listed = await s.gql(ListVisionsDocument, {}, { user });
    expect(listed.data!.visions.edges.map((e) => e.node.id)).not.toContain(v.id);
    const got = await s.gql(VisionMessagesDocument, { id: v.id }, { user });
    expect(got.data!.vision!.messages.totalCount).toBe(3);
    const deleted = await s.gql(ListVisionsDocument, { status: ['DELETED'] }, { user });
    expect(deleted.data!.visions.edges.map((e) => e.node.id)).toEqual([v.id]);
    await s.gql(SetVisionStatusDocument, { id: v.id, status: 'ACTIVE' }, { user });
    const restored = await s.gql(ListVisionsDocument, {}, { user });
    expect(restored.data!.visions.edges.map((e) => e.node.id)).toEqual([v.id]);
    const [{ n }] = (await s.sql(`select count(*)::int as n from vision_messages where visionid = ?`, [v.id])) as [{ n: number }];
    expect(n).toBe(3);
  });
});

describe('visions list', () => {
  it('filters by status (default ACTIVE and FROZEN) and orders by most recently updated', async () => {
    const user = newUser();
    const a = await create(user, { title: 'a' });
    await create(user, { title: 'b' });
    const c = await create(user, { title: 'c' });
    const d = await create(user, { title: 'd' });
    await s.gql(SetVisionStatusDocument, { id: c.id, status: 'FROZEN' }, { user });
    await s.gql(SetVisionStatusDocument, { id: d.id, status: 'DELETED' }, { user });
    await s.gql(RenameVisionDocument, { id: a.id, title: 'a2' }, { user }); // a is now the most recent
    const all = await s.gql(ListVisionsDocument, {}, { user });
    expect(all.data!.visions.edges.map((e) => e.node.title)).toEqual(['a2', 'c', 'b']);
    expect(all.data!.visions.totalCount).toBe(3);
    const frozen = await s.gql(ListVisionsDocument, { status: ['FROZEN'] }, { user });
    expect(frozen.data!.visions.edges.map((e) => e.node.id)).toEqual([c.id]);
    const every = await s.gql(ListVisionsDocument, { status: ['ACTIVE', 'FROZEN', 'DELETED'] }, { user });
    expect(every.data!.visions.totalCount).toBe(4);
    expect(every.data!.visions.edges.map((e) => e.node.title)).toEqual(['a2', 'd', 'c', 'b']);
  });

  it('pages with first/after to the end', async () => {
    const user = newUser();
    for (let i = 0; i < 5; i++) await create(user, { title: `v${i}` });
    const seen: string[] = [];
    let after: string | null = null;
    for (let page = 0; page < 3; page++) {
      const r: GqlResult<ListVisionsQuery> = await s.gql(ListVisionsDocument, { first: 2, after }, { user });
      const conn = r.data!.visions;
      seen.push(...conn.edges.map((e) => e.node.title));
      expect(conn.pageInfo.hasNextPage).toBe(page < 2);
      expect(conn.pageInfo.hasPreviousPage).toBe(page > 0);
      after = conn.pageInfo.endCursor ?? null;
    }
    expect(seen).toEqual(['v4', 'v3', 'v2', 'v1', 'v0']);
  });

  it('an empty list has no cursors', async () => {
    const r = await s.gql(ListVisionsDocument, { first: 10 }, { user: newUser() });
    expect(r.data!.visions).toEqual({
      totalCount: 0,
      edges: [],
      pageInfo: { hasNextPage: false, hasPreviousPage: false, startCursor: null, endCursor: null },
    });
  });

  it('refuses a cursor that is not one of the caller’s visions', async () => {
    const owner = newUser();
    const v = await create(owner);
    const page = await s.gql(ListVisionsDocument, { first: 1 }, { user: owner });
    const cursor = page.data!.visions.edges[0]!.cursor;
    expect(page.data!.visions.edges[0]!.node.id).toBe(v.id);
    const r = await s.gql(ListVisionsDocument, { first: 1, after: cursor }, { user: newUser() });
    expect(errorCode(r)).toBe('BAD_USER_INPUT');
    expect(errorCode(await s.gql(ListVisionsDocument, { after: 'garbage!!' }, { user: owner }))).toBe('BAD_USER_INPUT');
  });
});

describe('Vision.messages pagination', () => {
  it('without first/last returns the latest MAX_MESSAGES, oldest first', async () => {
    const user = newUser();
    const v = await create(user);
    const ids = await seedMessages(v.id, 60);
    const r = await s.gql(VisionMessagesDocument, { id: v.id }, { user });
    const conn = r.data!.vision!.messages;
    expect(conn.edges.map((e) => e.node.id)).toEqual(ids.slice(10));
    expect(conn.totalCount).toBe(60);
    expect(conn.pageInfo.hasPreviousPage).toBe(true);
    expect(conn.pageInfo.hasNextPage).toBe(false);
    expect(conn.edges[0]!.node).toMatchObject({ visionId: v.id, sender: 'USER', type: 'TEXT', state: 'COMPLETE', content: 'm11', file: null });
  });

  it('pages forward with first/after and backward with last/before over the same order', async () => {
    const user = newUser();
    const v = await create(user);
    const ids = await seedMessages(v.id, 7);
    const forward: string[] = [];
    let after: string | null = null;
    let hasNext = true;
    while (hasNext) {
      const r: GqlResult<VisionMessagesQuery> = await s.gql(VisionMessagesDocument, { id: v.id, first: 3, after }, { user });
      const c = r.data!.vision!.messages;
      forward.push(...c.edges.map((e) => e.node.id));
      expect(c.pageInfo.hasPreviousPage).toBe(after !== null);
      hasNext = c.pageInfo.hasNextPage;
      after = c.pageInfo.endCursor ?? null;
    }
    expect(forward).toEqual(ids);

    const backward: string[][] = [];
    let before: string | null = null;
    let hasPrev = true;
    while (hasPrev) {
      const r: GqlResult<VisionMessagesQuery> = await s.gql(VisionMessagesDocument, { id: v.id, last: 3, before }, { user });
      const c = r.data!.vision!.messages;
      backward.unshift(c.edges.map((e) => e.node.id));
      expect(c.pageInfo.hasNextPage).toBe(before !== null);
      hasPrev = c.pageInfo.hasPreviousPage;
      before = c.pageInfo.startCursor ?? null;
    }
    expect(backward).toEqual([ids.slice(0, 1), ids.slice(1, 4), ids.slice(4, 7)]);
  });

  it('the last page, an exact fit and a window between two cursors', async () => {
    const user = newUser();
    const v = await create(user);
    const ids = await seedMessages(v.id, 4);
    const all = (await s.gql(VisionMessagesDocument, { id: v.id, first: 4 }, { user })).data!.vision!.messages;
    expect(all.pageInfo).toMatchObject({ hasNextPage: false, hasPreviousPage: false });
    const cur = all.edges.map((e) => e.cursor);
    const between = (await s.gql(VisionMessagesDocument, { id: v.id, first: 10, after: cur[0], before: cur[3] }, { user })).data!.vision!.messages;
    expect(between.edges.map((e) => e.node.id)).toEqual(ids.slice(1, 3));
    const tail = (await s.gql(VisionMessagesDocument, { id: v.id, first: 10, after: cur[3] }, { user })).data!.vision!.messages;
    expect(tail.edges).toEqual([]);
    expect(tail.pageInfo).toEqual({ hasNextPage: false, hasPreviousPage: true, startCursor: null, endCursor: null });
  });

  it('an empty vision', async () => {
    const user = newUser();
    const v = await create(user);
    const c = (await s.gql(VisionMessagesDocument, { id: v.id, first: 5 }, { user })).data!.vision!.messages;
    expect(c).toEqual({ totalCount: 0, edges: [], pageInfo: { hasNextPage: false, hasPreviousPage: false, startCursor: null, endCursor: null } });
    const o = (await s.gql(VisionOverviewDocument, { id: v.id }, { user })).data!.vision!;
    expect(o.lastMessage).toBeNull();
    expect(o.tokenUsage).toEqual({ calls: 0, promptTokens: 0, completionTokens: 0, totalTokens: 0 });
  });

  it('rejects invalid cursors, cursors of another vision, page sizes over 200, negative sizes and first+last', async () => {
    const user = newUser();
    const v = await create(user);
    const other = await create(user);
    await seedMessages(v.id, 2);
    await seedMessages(other.id, 1);
    const otherCursor = (await s.gql(VisionMessagesDocument, { id: other.id, first: 1 }, { user })).data!.vision!.messages.edges[0]!.cursor;
    const cases: Record<string, unknown>[] = [
      { first: 201 },
      { last: 201 },
      { first: -1 },
      { first: 1, last: 1 },
      { after: 'not-a-cursor' },
      { before: Buffer.from('v1:1234').toString('base64url') },
      { after: otherCursor },
      { before: otherCursor },
    ];
    for (const args of cases) {
      const r = await s.gql(VisionMessagesDocument, { id: v.id, ...args } as never, { user });
      expect([JSON.stringify(args), errorCode(r)]).toEqual([JSON.stringify(args), 'BAD_USER_INPUT']);
    }
    const ok = await s.gql(VisionMessagesDocument, { id: v.id, first: 200 }, { user });
    expect(ok.data!.vision!.messages.totalCount).toBe(2);
  });

  it('VisionMessage.file resolves payload.fileid to a file of the same vision only', async () => {
    const user = newUser();
    const v = await create(user);
    const other = await create(newUser());
    const [f1] = await s.sql<{ id: string }>(
      `insert into files (id, visionid, storagepath, filename, mime, size) values (gen_random_uuid(), ?, '/x/a.pdf', 'plan.pdf', 'application/pdf', 1234) returning id`,
      [v.id],
    );
    const [f2] = await s.sql<{ id: string }>(
      `insert into files (id, visionid, storagepath, filename, mime, size) values (gen_random_uuid(), ?, '/x/b.pdf', 'secret.pdf', 'application/pdf', 1) returning id`,
      [other.id],
    );
    await s.sql(
      `insert into vision_messages (id, visionid, sender, messagetype, content, payload, createdat) values
       (gen_random_uuid(), ?, 'assistant', 'file_result', 'Вот ваш документ', ?::jsonb, now()),
       (gen_random_uuid(), ?, 'assistant', 'file_result', 'чужой', ?::jsonb, now() + interval '1 second'),
       (gen_random_uuid(), ?, 'assistant', 'file_result', 'битый', '{"fileid":"nope"}'::jsonb, now() + interval '2 second')`,
      [v.id, JSON.stringify({ fileid: f1!.id, filename: 'plan.pdf' }), v.id, JSON.stringify({ fileid: f2!.id }), v.id],
    );
    const edges = (await s.gql(VisionMessagesDocument, { id: v.id }, { user })).data!.vision!.messages.edges;
    expect(edges.map((e) => [e.node.type, e.node.file?.filename ?? null])).toEqual([
      ['FILE_RESULT', 'plan.pdf'],
      ['FILE_RESULT', null],
      ['FILE_RESULT', null],
    ]);
    expect(edges[0]!.node.file).toMatchObject({ id: f1!.id, mime: 'application/pdf', size: 1234 });
    expect(edges[0]!.node.payload).toEqual({ fileid: f1!.id, filename: 'plan.pdf' });
  });

  it('lastMessage and tokenUsage of one vision', async () => {
    const user = newUser();
    const v = await create(user);
    const ids = await seedMessages(v.id, 3);
    await s.sql(
      `insert into tokenscount (clientid, clienttype, provider, model, prompttokens, completiontokens, totaltokens, meta)
       values (?, 'user', 'openai', 'gpt-4.1', 10, 5, 15, ?::jsonb), (?, 'user', 'openai', 'gpt-4.1', 1, 2, 3, ?::jsonb)`,
      [user, JSON.stringify({ module: 'vision', visionid: v.id }), user, JSON.stringify({ module: 'vision', visionid: v.id })],
    );
    const o = (await s.gql(VisionOverviewDocument, { id: v.id }, { user })).data!.vision!;
    expect(o.lastMessage!.id).toBe(ids[2]);
    expect(o.tokenUsage).toEqual({ calls: 2, promptTokens: 11, completionTokens: 7, totalTokens: 18 });
  });
});

describe('another user’s vision behaves exactly like a missing one', () => {
  it('for every operation', async () => {
    const owner = newUser('owner');
    const intruder = newUser('intruder');
    const v = await create(owner, { title: 'private' });
    await seedMessages(v.id, 2);
    const missing = '01a20000-0000-7000-8000-000000000000';
    for (const id of [v.id, missing]) {
      expect((await s.gql(GetVisionDocument, { id }, { user: intruder })).data).toEqual({ vision: null });
      expect((await s.gql(VisionMessagesDocument, { id }, { user: intruder })).data).toEqual({ vision: null });
      const rename = await s.gql(RenameVisionDocument, { id, title: 'mine' }, { user: intruder });
      const status = await s.gql(SetVisionStatusDocument, { id, status: 'DELETED' }, { user: intruder });
      for (const r of [rename, status]) {
        expect(r.data).toBeNull();
        expect(r.errors!.map((e) => [e.message, e.extensions?.code])).toEqual([['Vision not found', 'NOT_FOUND']]);
      }
    }
    expect((await s.gql(ListVisionsDocument, { status: ['ACTIVE', 'FROZEN', 'DELETED'] }, { user: intruder })).data!.visions.totalCount).toBe(0);
    const [row] = await s.sql(`select title, status from visions where id = ?`, [v.id]);
    expect(row).toEqual({ title: 'private', status: 'active' });
  });
});

describe('bad input is BAD_USER_INPUT and changes nothing', () => {
  it('titles', async () => {
    const user = newUser();
    const v = await create(user, { title: 'keep' });
    for (const title of ['', '   ', 'x'.repeat(201), 'bad\u0000title', 'tab\there']) {
      expect(errorCode(await s.gql(CreateVisionDocument, { input: { title } }, { user }))).toBe('BAD_USER_INPUT');
      expect(errorCode(await s.gql(RenameVisionDocument, { id: v.id, title }, { user }))).toBe('BAD_USER_INPUT');
    }
    expect((await create(user, { title: 'я'.repeat(200) })).title).toHaveLength(200);
    const listed = await s.gql(ListVisionsDocument, {}, { user });
    expect(listed.data!.visions.totalCount).toBe(2);
    expect((await s.gql(GetVisionDocument, { id: v.id }, { user })).data!.vision!.title).toBe('keep');
  });

  it('meta over 16 KB, non-object meta, NUL in meta', async () => {
    const user = newUser();
    expect(errorCode(await s.gql(CreateVisionDocument, { input: { meta: { blob: 'x'.repeat(16 * 1024) } } }, { user }))).toBe('BAD_USER_INPUT');
    expect(errorCode(await s.gql(CreateVisionDocument, { input: { meta: [1, 2] as never } }, { user }))).toBe('BAD_USER_INPUT');
    expect(errorCode(await s.gql(CreateVisionDocument, { input: { meta: 'text' as never } }, { user }))).toBe('BAD_USER_INPUT');
    expect(errorCode(await s.gql(CreateVisionDocument, { input: { meta: { a: 'x\u0000' } } }, { user }))).toBe('BAD_USER_INPUT');
    expect((await s.gql(ListVisionsDocument, {}, { user })).data!.visions.totalCount).toBe(0);
  });

  it('malformed ids and enum values', async () => {
    const user = newUser();
    for (const id of ['42', 'not-a-uuid', "'; drop table visions; --", '']) {
      expect(errorCode(await s.gql(GetVisionDocument, { id }, { user }))).toBe('BAD_USER_INPUT');
      expect(errorCode(await s.gql(SetVisionStatusDocument, { id, status: 'FROZEN' }, { user }))).toBe('BAD_USER_INPUT');
    }
    const v = await create(user);
    expect(errorCode(await s.gql(SetVisionStatusDocument, { id: v.id, status: 'ARCHIVED' as never }, { user }))).toBe('BAD_USER_INPUT');
    expect(errorCode(await s.gql(SetVisionStatusDocument, { id: v.id, status: 'active' as never }, { user }))).toBe('BAD_USER_INPUT');
    const inline = await s.gql(`mutation { setVisionStatus(id: "${v.id}", status: ARCHIVED) { id } }`, undefined, { user });
    expect(errorCode(inline)).toBe('BAD_USER_INPUT');
    expect(errorCode(await s.gql(ListVisionsDocument, { status: ['GONE' as never] }, { user }))).toBe('BAD_USER_INPUT');
    expect((await s.gql(GetVisionDocument, { id: v.id }, { user })).data!.vision!.status).toBe('ACTIVE');
  });

  it('tokenUsage with since after until', async () => {
    const r = await s.gql(`query { tokenUsage(since: "2026-02-01T00:00:00Z", until: "2026-01-01T00:00:00Z") { calls } }`, undefined, { user: newUser() });
    expect(errorCode(r)).toBe('BAD_USER_INPUT');
    expect(errorCode(await s.gql(`query { tokenUsage(since: "yesterday") { calls } }`, undefined, { user: newUser() }))).toBe('BAD_USER_INPUT');
  });
});

describe('Query.tokenUsage', () => {
  it('sums the caller’s rows over every module within [since, until)', async () => {
    const user = newUser();
    await s.sql(
      `insert into tokenscount (clientid, clienttype, provider, model, prompttokens, completiontokens, totaltokens, meta, createdat) values
       (?, 'user', 'openai', 'gpt-4.1', 10, 1, 11, '{"module":"vision"}', '2026-01-01T00:00:00Z'),
       (?, 'user', 'openai', 'gpt-4.1', 20, 2, 22, '{"module":"other"}', '2026-01-02T00:00:00Z'),
       (?, 'visitor', 'openai', 'gpt-4.1', 99, 9, 108, null, '2026-01-02T00:00:00Z'),
       (?, 'user', 'openai', 'gpt-4.1', null, null, null, null, '2026-01-03T00:00:00Z')`,
      [user, user, user, user],
    );
    const all = await s.gql(`query { tokenUsage { calls promptTokens completionTokens totalTokens } }`, undefined, { user });
    expect(all.data).toEqual({ tokenUsage: { calls: 3, promptTokens: 30, completionTokens: 3, totalTokens: 33 } });
    const window = await s.gql(
      `query { tokenUsage(since: "2026-01-02T00:00:00Z", until: "2026-01-03T00:00:00Z") { calls totalTokens } }`,
      undefined,
      { user },
    );
    expect(window.data).toEqual({ tokenUsage: { calls: 1, totalTokens: 22 } });
  });
});
