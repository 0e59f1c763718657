import { VisionListScreenDocument } from './generated/graphql';
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
