import { CreateVisionDocument } from './generated/graphql';
import { errorCode, newUser, startTestServer, type TestServer } from './support/server';

let s: TestServer;
beforeAll(async () => {
  s = await startTestServer({ MAX_PAGE_SIZE: '10' });
});
afterAll(() => s?.stop());

const NODE = /* GraphQL */ `
  query Node($id: ID!) {
    node(id: $id) {
      __typename
      id
      ... on Vision { title status }
      ... on VisionMessage { visionId content sender }
    }
  }
`;
const NODES = /* GraphQL */ `
  query Nodes($ids: [ID!]!) {
    nodes(ids: $ids) { __typename id }
  }
`;

async function visionWithMessage(user: string, title: string) {
  const r = await s.gql(CreateVisionDocument, { input: { title } }, { user });
  expect(r.errors).toBeUndefined();
  const visionId = r.data!.createVision.id;
  const [m] = await s.sql<{ id: string }>(
    `insert into vision_messages (id, visionid, sender, messagetype, content, state) values (gen_random_uuid(), ?, 'user', 'text', ?, 'complete') returning id`,
    [visionId, `hello from ${title}`],
  );
  return { visionId, messageId: m.id };
}

describe('Relay object identification (Query.node, Query.nodes)', () => {
  it('refetches the caller own vision and message by id, with their concrete types', async () => {
    const user = newUser();
    const { visionId, messageId } = await visionWithMessage(user, 'Бег');
    const v = await s.gql<any, any>(NODE, { id: visionId }, { user });
    expect(v.errors).toBeUndefined();
    expect(v.data.node).toEqual({ __typename: 'Vision', id: visionId, title: 'Бег', status: 'ACTIVE' });
    const m = await s.gql<any, any>(NODE, { id: messageId.toUpperCase() }, { user });
    expect(m.errors).toBeUndefined();
    expect(m.data.node).toEqual({ __typename: 'VisionMessage', id: messageId, visionId, content: 'hello from Бег', sender: 'USER' });
  });

  it('answers null for another user objects and for ids that name nothing, exactly alike', async () => {
    const owner = newUser();
    const stranger = newUser();
    const { visionId, messageId } = await visionWithMessage(owner, 'Чужая');
    for (const id of [visionId, messageId, '0190a000-0000-7000-8000-000000000000']) {
      const r = await s.gql<any, any>(NODE, { id }, { user: stranger });
      expect(r.errors).toBeUndefined();
      expect(r.data).toEqual({ node: null });
    }
  });

  it('still finds a DELETED vision and its messages for the owner (as Query.vision does)', async () => {
    const user = newUser();
    const { visionId, messageId } = await visionWithMessage(user, 'Удалённая');
    await s.sql(`update visions set status = 'deleted' where id = ?`, [visionId]);
    const r = await s.gql<any, any>(NODES, { ids: [visionId, messageId] }, { user });
    expect(r.errors).toBeUndefined();
    expect(r.data.nodes).toEqual([
      { __typename: 'Vision', id: visionId },
      { __typename: 'VisionMessage', id: messageId },
    ]);
  });

  it('nodes keeps the order asked, repeats duplicates and puts null where nothing of the caller is', async () => {
    const user = newUser();
    const a = await visionWithMessage(user, 'A');
    const foreign = await visionWithMessage(newUser(), 'B');
    const ids = [a.messageId, foreign.visionId, a.visionId, a.messageId];
    const r = await s.gql<any, any>(NODES, { ids }, { user });
    expect(r.errors).toBeUndefined();
    expect(r.data.nodes).toEqual([
      { __typename: 'VisionMessage', id: a.messageId },
      null,
      { __typename: 'Vision', id: a.visionId },
      { __typename: 'VisionMessage', id: a.messageId },
    ]);
    const empty = await s.gql<any, any>(NODES, { ids: [] }, { user });
    expect(empty.data).toEqual({ nodes: [] });
  });

  it('refuses malformed ids, too many ids and a missing identity with contract codes', async () => {
    const user = newUser();
    const bad = await s.gql<any, any>(NODE, { id: 'not-a-uuid' }, { user });
    expect(errorCode(bad)).toBe('BAD_USER_INPUT');
    expect(bad.status).toBeLessThan(500);
    const badInList = await s.gql<any, any>(NODES, { ids: ['0190a000-0000-7000-8000-000000000000', 'x'] }, { user });
    expect(errorCode(badInList)).toBe('BAD_USER_INPUT');
    const tooMany = Array.from({ length: 11 }, (_, i) => `0190a000-0000-7000-8000-${String(i).padStart(12, '0')}`);
    const over = await s.gql<any, any>(NODES, { ids: tooMany }, { user });
    expect(errorCode(over)).toBe('BAD_USER_INPUT');
    expect(over.errors![0].extensions!.field).toBe('ids');
    const anonymous = await s.gql<any, any>(NODE, { id: '0190a000-0000-7000-8000-000000000000' });
    expect(errorCode(anonymous)).toBe('UNAUTHENTICATED');
  });
});
