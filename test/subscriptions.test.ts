import { GraphQLID, GraphQLObjectType, GraphQLSchema, GraphQLString, specifiedRules } from 'graphql';
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

const docs = new DocumentCache({ rules: specifiedRules });
const Q = 'subscription ($p: String, $n: String) { events(name: $n) { id text(prefix: $p) } }';

it('executes an event once per distinct operation, shared by every subscriber of it', async () => {
  const t = setup();
  const subscribe = createSharedSubscribe();
  const start = async (p: string, n: string, query = Q) =>
    (await subscribe({ schema: t.schema, document: docs.parse(query), variableValues: { p, n } })) as AsyncGenerator<any>;
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
  const it = (await createSharedSubscribe()({ schema: t.schema, document: docs.parse(Q), variableValues: { n: 'idle' } })) as AsyncGenerator<any>;
  const pending = it.next();
  expect(t.listenerCount()).toBe(1);
  await expect(it.return(undefined)).resolves.toEqual({ value: undefined, done: true });
  expect(t.returned).toEqual(['idle']);
  expect(t.listenerCount()).toBe(0);
  void pending.catch(() => undefined);
});

it('parses a text once and validates a document once; syntax errors are thrown, not cached', () => {
  const { schema } = setup();
  const a = docs.parse(Q);
  expect(docs.parse(Q)).toBe(a);
  expect(a.loc).toBeUndefined();
  expect(docs.validate(schema, a)).toEqual([]);
  const bad = docs.parse('subscription { events { nope } }');
  const errors = docs.validate(schema, bad);
  expect(errors.map((e) => e.message)).toEqual(['Cannot query field "nope" on type "Event".']);
  expect(docs.validate(schema, bad)).toBe(errors);
  expect(() => docs.parse('subscription {')).toThrow(/Syntax Error/);
});
