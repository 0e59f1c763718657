import { VisionListScreenDocument } from './generated/graphql';
import { createScratchDatabase } from './support/db';
import { newUser, startTestServer, type TestServer } from './support/server';

/**
 * No N+1: the list screen costs the same number of SQL statements for 1 vision as for 50
 * (each vision with messages, a file and token rows). The server reports the statements of a
 * request in the x-sql-statements header (EXPOSE_SQL_STATS, on in tests).
 */
let s: TestServer;
beforeAll(async () => {
  s = await startTestServer();
});
afterAll(() => s?.stop());

async function seedUser(visions: number): Promise<string> {
  const user = newUser('n1');
  await s.sql(
    `with v as (
       insert into visions (id, userid, title, status, createdat, updatedat)
       select gen_random_uuid(), ?, 'v' || i, 'active', now(), now() - make_interval(secs => i) from generate_series(1, ?) i
       returning id),
     f as (insert into files (id, visionid, storagepath, filename, mime, size) select gen_random_uuid(), id, '/f', 'f.txt', 'text/plain', 3 from v returning id, visionid),
     m as (
       insert into vision_messages (id, visionid, sender, messagetype, content, payload, createdat)
       select gen_random_uuid(), v.id, s.sender, 'text', 'hello', null, now() - make_interval(secs => s.k) from v
       cross join (values ('user', 3), ('assistant', 2)) as s(sender, k)
       union all
       select gen_random_uuid(), f.visionid, 'assistant', 'file_result', 'file', jsonb_build_object('fileid', f.id), now() from f
       returning 1)
     insert into tokenscount (clientid, clienttype, provider, model, prompttokens, completiontokens, totaltokens, meta)
     select ?, 'user', 'openai', 'gpt-4.1', 3, 4, 7, jsonb_build_object('module', 'vision', 'visionid', v.id) from v`,
    [user, visions, user],
  );
  return user;
}

async function statementsFor(user: string) {
  const r = await s.gql(VisionListScreenDocument, { first: 50 }, { user });
  expect(r.errors).toBeUndefined();
  return { count: Number(r.headers.get('x-sql-statements')), data: r.data! };
}

it('visions(first: 50) with lastMessage, tokenUsage and messages(last: 1) runs as many statements for 1 vision as for 50', async () => {
  const one = await statementsFor(await seedUser(1));
  const fifty = await statementsFor(await seedUser(50));
  expect(one.data.visions.edges).toHaveLength(1);
  expect(fifty.data.visions.edges).toHaveLength(50);
  // the fields were really resolved for every vision
  for (const { node } of fifty.data.visions.edges) {
    expect(node.lastMessage!.content).toBe('file');
    expect(node.tokenUsage).toEqual({ totalTokens: 7, calls: 1 });
    expect(node.messages.edges).toHaveLength(1);
    expect(node.messages.edges[0]!.node.file).not.toBeNull();
  }
  expect(one.count).toBeGreaterThan(0);
  expect(fifty.count).toBe(one.count);
});

/** The two screens the bench measures: each must be one statement (as PostGraphile's are). */
const HISTORY = 'query ($id: ID!) { vision(id: $id) { messages(last: 50) { edges { node { id content sender createdAt } } } } }';
const LIST = 'query { visions(first: 50) { edges { node { title lastMessage { content } tokenUsage { totalTokens } } } } }';

it('the history read and the list screen are one statement each, with the right rows', async () => {
  const user = await seedUser(3);
  const [v] = await s.sql<{ id: string }>('select id from visions where userid = ? order by updatedat desc, id desc limit 1', [user]);
  const history = await s.gql<any, any>(HISTORY, { id: v!.id }, { user });
  expect(history.errors).toBeUndefined();
  expect(Number(history.headers.get('x-sql-statements'))).toBe(1);
  const expected = await s.sql<{ id: string; content: string; sender: string }>(
    'select id, content, sender from vision_messages where visionid = ? order by createdat, id',
    [v!.id],
  );
  expect(history.data.vision.messages.edges.map((e: any) => [e.node.id, e.node.content, e.node.sender.toLowerCase()])).toEqual(
    expected.map((r) => [r.id, r.content, r.sender]),
  );

  const list = await s.gql<any, any>(LIST, {}, { user });
  expect(list.errors).toBeUndefined();
  expect(Number(list.headers.get('x-sql-statements'))).toBe(1);
  expect(list.data.visions.edges.map((e: any) => e.node)).toEqual([
    { title: 'v1', lastMessage: { content: 'file' }, tokenUsage: { totalTokens: 7 } },
    { title: 'v2', lastMessage: { content: 'file' }, tokenUsage: { totalTokens: 7 } },
    { title: 'v3', lastMessage: { content: 'file' }, tokenUsage: { totalTokens: 7 } },
  ]);
  // a vision without messages or token rows
  await s.sql(`insert into visions (id, userid, title, status, updatedat) values (gen_random_uuid(), ?, 'empty', 'active', now() + interval '1 hour')`, [user]);
  const again = await s.gql<any, any>(LIST, {}, { user });
  expect(again.data.visions.edges[0].node).toEqual({ title: 'empty', lastMessage: null, tokenUsage: { totalTokens: 0 } });
  // someone else's vision is not read with the caller's id
  const other = await s.gql<any, any>(HISTORY, { id: v!.id }, { user: newUser('other') });
  expect(other.errors).toBeUndefined();
  expect(other.data.vision).toBeNull();
});

/**
 * `vision(id) { messages(...) }` reads the page in the vision's statement; the same page below a
 * list (`visions { ... messages(...) }`) goes through the batched loader. Both must give the same
 * page for every kind of page request, cursors included.
 */
it('a page read with its vision equals the same page read through the loader', async () => {
  const user = newUser('pages');
  const [v] = await s.sql<{ id: string }>(`insert into visions (id, userid, title, status) values (gen_random_uuid(), ?, 't', 'active') returning id`, [user]);
  await s.sql(
    `insert into vision_messages (id, visionid, sender, messagetype, content, state, createdat)
     select gen_random_uuid(), ?, 'user', 'text', 'm' || i, 'complete', timestamptz '2026-01-01 00:00:00+00' + make_interval(secs => i / 2 + (i % 3) * 0.000999 + (i % 2) * 0.123456)
     from generate_series(1, 9) as i`,
    [v!.id],
  );
  const rows = await s.sql<{ id: string; at: string }>(
    `select id, to_char(createdat at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') as at from vision_messages where visionid = ? order by createdat, id`,
    [v!.id],
  );
  const ids = rows.map((r) => r.id);
  // whole milliseconds, truncated (0.999 ms past a second is still .000): as PostgreSQL prints them
  const all = await s.gql<any, any>('query ($id: ID!) { vision(id: $id) { messages(first: 20) { edges { node { createdAt } } } } }', { id: v!.id }, { user });
  expect(all.data.vision.messages.edges.map((e: any) => e.node.createdAt)).toEqual(rows.map((r) => r.at));
  const cursor = (id: string) => Buffer.from(`v1:${id}`).toString('base64url');
  const PAGE = '{ pageInfo { hasNextPage hasPreviousPage startCursor endCursor } edges { cursor node { id content createdAt } } }';
  // [page arguments, ids of the page]
  const cases: [Record<string, unknown>, string[]][] = [
    [{}, ids],
    [{ first: 4 }, ids.slice(0, 4)],
    [{ last: 4 }, ids.slice(5)],
    [{ first: 3, after: cursor(ids[2]!) }, ids.slice(3, 6)],
    [{ last: 3, before: cursor(ids[6]!) }, ids.slice(3, 6)],
    [{ first: 10, after: cursor(ids[8]!) }, []],
    [{ last: 2, after: cursor(ids[1]!), before: cursor(ids[7]!) }, ids.slice(5, 7)],
    [{ first: 0 }, []],
  ];
  for (const [args, want] of cases) {
    const decl = Object.keys(args).map((k) => `$${k}: ${k === 'first' || k === 'last' ? 'Int' : 'String'}`);
    const pass = Object.keys(args).map((k) => `${k}: $${k}`).join(', ');
    const vars = decl.length ? `, ${decl.join(', ')}` : '';
    const direct = await s.gql<any, any>(`query ($id: ID!${vars}) { vision(id: $id) { messages${pass ? `(${pass})` : ''} ${PAGE} } }`, { id: v!.id, ...args }, { user });
    const listed = await s.gql<any, any>(`query ${decl.length ? `(${decl.join(', ')})` : ''} { visions { edges { node { messages${pass ? `(${pass})` : ''} ${PAGE} } } } }`, args, { user });
    expect(direct.errors).toBeUndefined();
    expect(listed.errors).toBeUndefined();
    expect(direct.data.vision.messages.edges.map((e: any) => e.node.id)).toEqual(want);
    if (want[0] === ids[0]) expect(direct.data.vision.messages.edges[0].node.createdAt).toBe('2026-01-01T00:00:00.124Z');
    expect(direct.data.vision.messages).toEqual(listed.data.visions.edges[0].node.messages);
  }
});

it('prefetching follows fragments and @skip, and bad page arguments are reported on the messages field', async () => {
  const user = await seedUser(1);
  const [v] = await s.sql<{ id: string }>('select id from visions where userid = ?', [user]);
  const viaFragment = await s.gql<any, any>(
    'query ($id: ID!) { vision(id: $id) { ...F } } fragment F on Vision { messages(last: 2) { edges { node { content } } } }',
    { id: v!.id },
    { user },
  );
  expect(viaFragment.errors).toBeUndefined();
  expect(Number(viaFragment.headers.get('x-sql-statements'))).toBe(1);
  expect(viaFragment.data.vision.messages.edges.map((e: any) => e.node.content)).toEqual(['hello', 'file']);

  const skipped = await s.gql<any, any>('query ($id: ID!) { vision(id: $id) { id messages(last: 2) @skip(if: true) { edges { cursor } } } }', { id: v!.id }, { user });
  expect(skipped.errors).toBeUndefined();
  expect(skipped.data.vision).toEqual({ id: v!.id });
  expect(Number(skipped.headers.get('x-sql-statements'))).toBe(1);

  // two selections of the same page with different fields share one read: it carries what both ask for
  const both = await s.gql<any, any>(
    `query ($id: ID!) { vision(id: $id) {
       a: messages(last: 2) { edges { node { id } } }
       b: messages(last: 2) { edges { node { id content sender type state visionId payload createdAt file { filename } } } } } }`,
    { id: v!.id },
    { user },
  );
  expect(both.errors).toBeUndefined();
  expect(both.data.vision.a.edges.map((e: any) => e.node.id)).toEqual(both.data.vision.b.edges.map((e: any) => e.node.id));
  expect(both.data.vision.b.edges.map((e: any) => [e.node.content, e.node.sender, e.node.type, e.node.state, e.node.visionId, e.node.file?.filename ?? null])).toEqual([
    ['hello', 'ASSISTANT', 'TEXT', 'COMPLETE', v!.id, null],
    ['file', 'ASSISTANT', 'FILE_RESULT', 'COMPLETE', v!.id, 'f.txt'],
  ]);
  expect(typeof both.data.vision.b.edges[1].node.payload.fileid).toBe('string');
  expect(Date.parse(both.data.vision.b.edges[0].node.createdAt)).toBeGreaterThan(0);

  const bad = await s.gql<any, any>('query ($id: ID!) { vision(id: $id) { id messages(last: 201) { edges { cursor } } } }', { id: v!.id }, { user });
  expect(bad.errors?.[0]?.message).toBe('last must be at most 200');
  expect(bad.errors?.[0]?.extensions?.code).toBe('BAD_USER_INPUT');
  expect(bad.errors?.[0]?.path).toEqual(['vision', 'messages']);
  expect(bad.data.vision).toBeNull();
});

/**
 * Reads run as named prepared statements on each pooled connection. A migration that changes a
 * table under a prepared `select v.*` makes PostgreSQL refuse the cached plan; the server must
 * prepare it again instead of failing every request on that connection.
 */
it('a read prepared before a table changed is prepared again, not failed', async () => {
  const scratch = await createScratchDatabase('vp_prepared');
  const own = await startTestServer({ DATABASE_URL: scratch.url, DB_POOL_MAX: '1' });
  try {
    const user = newUser('prep');
    const created = await own.gql<any, any>('mutation { createVision(input: { title: "p" }) { id } }', {}, { user });
    const id = created.data.createVision.id;
    const read = () => own.gql<any, any>('query ($id: ID!) { vision(id: $id) { title messages(last: 5) { edges { cursor } } } }', { id }, { user });
    expect((await read()).data.vision.title).toBe('p');
    await own.sql('alter table visions add column extra int');
    const after = await read();
    expect(after.errors).toBeUndefined();
    expect(after.data.vision.title).toBe('p');
    expect((await read()).errors).toBeUndefined();
  } finally {
    await own.stop();
    await scratch.drop();
  }
});

/**
 * sendMessage's statements (issue 16): the turn (lock, check, both inserts, and the context's
 * summary and window) is one statement, the call's tokenscount row (pending) another, and the
 * final write (the reply, the vision bump and the row's final numbers) the third; no begin/commit.
 */
it('sendMessage runs 3 statements: turn with the context read, tokenscount pending row, final write with the settlement', async () => {
  const user = newUser('send');
  const created = await s.gql<any, any>('mutation { createVision { id } }', {}, { user });
  const visionId = created.data.createVision.id as string;
  const send = (content: string) =>
    s.gql<any, any>('mutation ($input: SendMessageInput!) { sendMessage(input: $input) { userMessage { id } assistantMessage { state } } }', { input: { visionId, content } }, { user });
  await send('first');
  const r = await send('second');
  expect(r.errors).toBeUndefined();
  expect(r.data.sendMessage.assistantMessage.state).toBe('COMPLETE');
  expect(Number(r.headers.get('x-sql-statements'))).toBe(3);
});
