import { GraphQLID, GraphQLObjectType, GraphQLSchema, GraphQLString, specifiedRules } from 'graphql';
import { createAppPubSub, Topic } from '../src/graphql/pubsub';
import { createSharedSubscribe, DocumentCache } from '../src/graphql/subscriptions';

/**
 * The machinery under graphql-ws (src/graphql/subscriptions.ts) on a small schema whose
 * resolver counts its calls; the end-to-end behaviour over real WebSockets is in
 * dialog.test.ts ("one event, many subscribers").
 */
function setup() {
  const listeners = new Set<(e: object) => void>();
  const returned: string[] = [];
  let resolved = 0;
  // a pub/sub that hands the same event object to every listener, like graphql-yoga's
  const source = (name: string): AsyncIterable<object> => ({
    [Symbol.asyncIterator]() {
      const queue: object[] = [];
      let wake: (() => void) | undefined;
      const listener = (e: object) => {
        queue.push(e);
        wake?.();
      };
      listeners.add(listener);
      return {
        async next() {
          while (!queue.length) await new Promise<void>((r) => (wake = r));
          return { value: queue.shift()!, done: false };
        },
        async return() {
          listeners.delete(listener);
          returned.push(name);
          return { value: undefined, done: true };
        },
      };
    },
  });
  const Event = new GraphQLObjectType({
    name: 'Event',
    fields: {
      id: { type: GraphQLID },
      text: {
        type: GraphQLString,
        args: { prefix: { type: GraphQLString } },
        resolve: (e: { text: string }, args: { prefix?: string }) => {
          resolved++;
          return `${args.prefix ?? ''}${e.text}`;
        },
      },
    },
  });
  const schema = new GraphQLSchema({
    query: new GraphQLObjectType({ name: 'Query', fields: { ok: { type: GraphQLString } } }),
    subscription: new GraphQLObjectType({
      name: 'Subscription',
      fields: {
        events: { type: Event, args: { name: { type: GraphQLString } }, subscribe: (_r, args: { name: string }) => source(args.name), resolve: (e) => e },
      },
    }),
  });
  const publish = (e: object) => listeners.forEach((l) => l(e));
  return { schema, publish, returned, resolvedCount: () => resolved, listenerCount: () => listeners.size };
}

const docs = new DocumentCache({ schema: setup().schema, rules: specifiedRules });
const doc = (query: string) => docs.load(query).document!;
const Q = 'subscription ($p: String, $n: String) { events(name: $n) { id text(prefix: $p) } }';

it('executes an event once per distinct operation, shared by every subscriber of it', async () => {
  const t = setup();
  const subscribe = createSharedSubscribe();
  const start = async (p: string, n: string, query = Q) =>
    (await subscribe({ schema: t.schema, document: doc(query), variableValues: { p, n } })) as AsyncGenerator<any>;
  const same = await Promise.all([start('>', 'a'), start('>', 'a'), start('>', 'a')]);
  const differentVars = await start('#', 'd');
  const differentText = await start('>', 'e', `${Q} `);
  const all = [...same, differentVars, differentText];
  const event = { id: '1', text: 'hi' };
  t.publish(event);
  const results = await Promise.all(all.map((it) => it.next()));
  expect(results.map((r) => r.value.data.events.text)).toEqual(['>hi', '>hi', '>hi', '#hi', '>hi']);
  // the three identical operations share one result object; the two others ran on their own
  expect(results[1]!.value).toBe(results[0]!.value);
  expect(results[2]!.value).toBe(results[0]!.value);
  expect(t.resolvedCount()).toBe(3);
  // a new event object is executed again
  t.publish({ id: '2', text: 'yo' });
  await Promise.all(all.map((it) => it.next()));
  expect(t.resolvedCount()).toBe(6);
  await Promise.all(all.map((it) => it.return(undefined)));
});

it('return() ends a subscription at once, without waiting for another event', async () => {
  const t = setup();
  const it = (await createSharedSubscribe()({ schema: t.schema, document: doc(Q), variableValues: { n: 'idle' } })) as AsyncGenerator<any>;
  const pending = it.next();
  expect(t.listenerCount()).toBe(1);
  await expect(it.return(undefined)).resolves.toEqual({ value: undefined, done: true });
  expect(t.returned).toEqual(['idle']);
  expect(t.listenerCount()).toBe(0);
  void pending.catch(() => undefined);
});

it('keeps a valid text parsed once, without locations; invalid texts are refused, not kept', () => {
  const a = doc(Q);
  expect(doc(Q)).toBe(a);
  expect(a.loc).toBeUndefined();
  const size = docs.size;
  expect(docs.load('subscription { events { nope } }').errors!.map((e) => e.message)).toEqual(['Cannot query field "nope" on type "Event".']);
  expect(docs.load('subscription {').errors![0]!.message).toMatch(/Syntax Error/);
  expect(docs.size).toBe(size);
});

describe('createAppPubSub (in memory; the Redis event target is covered by multi-instance.test.ts)', () => {
  it('routes by topic and id, queues events until they are read, and return() ends a pending read', async () => {
    const pubsub = createAppPubSub();
    const a = pubsub.subscribe(Topic.MESSAGE_ADDED, 'a');
    const b = pubsub.subscribe(Topic.MESSAGE_ADDED, 'b');
    const stops = pubsub.subscribe(Topic.REPLY_STOP);
    const msg = (id: string) => ({ id, visionId: 'a', sender: 'user', type: 'text', content: id, state: 'complete', payload: null, createdAt: '' });
    pubsub.publish(Topic.MESSAGE_ADDED, 'a', msg('1'));
    pubsub.publish(Topic.MESSAGE_ADDED, 'a', msg('2'));
    pubsub.publish(Topic.REPLY_STOP, { visionId: 'a', replyId: 'r', cause: 'user' });
    expect((await a.next()).value?.id).toBe('1');
    expect((await a.next()).value?.id).toBe('2');
    expect((await stops.next()).value).toEqual({ visionId: 'a', replyId: 'r', cause: 'user' });
    const pendingB = b.next();
    await b.return();
    await expect(pendingB).resolves.toEqual({ value: undefined, done: true });
    // after return() nothing more is delivered
    pubsub.publish(Topic.MESSAGE_ADDED, 'b', msg('3'));
    await expect(b.next()).resolves.toEqual({ value: undefined, done: true });
    await a.return();
    await stops.return();
  });

  it('ends a subscriber that falls too far behind with an error, without disturbing the others', async () => {
    const pubsub = createAppPubSub();
    const slow = pubsub.subscribe(Topic.REPLY_STOP);
    const fast = pubsub.subscribe(Topic.REPLY_STOP);
    const got: unknown[] = [];
    for (let i = 0; i < 1100; i++) {
      pubsub.publish(Topic.REPLY_STOP, { visionId: String(i), replyId: 'r', cause: 'user' });
      got.push((await fast.next()).value);
    }
    expect(got).toHaveLength(1100);
    await expect(slow.next()).rejects.toThrow(/fell more than 1024 events behind/);
    await fast.return();
  });
});
