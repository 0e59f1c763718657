import { execute, GraphQLError, GraphQLNonNull, GraphQLObjectType, GraphQLSchema, GraphQLString, Kind, parse } from 'graphql';
import pino from 'pino';
import { loadConfig } from '../src/config';
import { createArmor } from '../src/graphql/apollo';
import { jitGateway } from '../src/graphql/executor';
import { WsOperations } from '../src/graphql/ws-operations';

/**
 * The graphql-jit executor (src/graphql/executor.ts) on a small schema: compiled and interpreted
 * execution must agree, including errors, which Apollo formats. The real schema runs through it in
 * every HTTP test of the suite.
 */
const schema = new GraphQLSchema({
  query: new GraphQLObjectType({
    name: 'Query',
    fields: {
      hello: {
        type: GraphQLString,
        args: { name: { type: new GraphQLNonNull(GraphQLString) } },
        resolve: (_root, args: { name: string }) => {
          if (args.name === 'bad') throw new GraphQLError('bad name', { extensions: { code: 'BAD_USER_INPUT', field: 'name' } });
          if (args.name === 'boom') throw new Error('database down');
          return `hi ${args.name}`;
        },
      },
    },
  }),
});

async function run(maxOperations: number, query: string, variables: Record<string, unknown>) {
  const gateway = jitGateway(schema, { maxOperations });
  const { executor } = await gateway.load({ apollo: {} as never });
  const document = parse(query);
  return executor!({ document, request: { query, variables }, context: {}, operationName: null } as never);
}

const Q = 'query ($n: String!) { hello(name: $n) }';

it('compiled and interpreted execution give the same data', async () => {
  const compiled = await run(10, Q, { n: 'ann' });
  const interpreted = await run(0, Q, { n: 'ann' });
  expect(compiled).toEqual({ data: { hello: 'hi ann' } });
  expect(interpreted).toEqual(compiled);
});

it('resolver errors come back as graphql-js errors with their extensions and cause', async () => {
  const where = (await run(0, Q, { n: 'bad' })).errors![0]!.locations; // graphql-js's own
  expect(where).toEqual([{ line: 1, column: 23 }]);
  for (const max of [10, 0]) {
    const bad = await run(max, Q, { n: 'bad' });
    expect(bad.data).toEqual({ hello: null });
    const [err] = bad.errors!;
    expect(err).toBeInstanceOf(GraphQLError);
    expect(err!.message).toBe('bad name');
    expect(err!.path).toEqual(['hello']);
    expect(err!.extensions).toEqual({ code: 'BAD_USER_INPUT', field: 'name' });
    expect(err!.locations).toEqual(where);

    const boom = await run(max, Q, { n: 'boom' });
    const [e2] = boom.errors!;
    // Apollo reads `extensions.code`: an object must be there even when the cause had none
    expect(e2!.extensions).toEqual({});
    expect((e2!.originalError as Error).message).toBe('database down');
  }
});

it('refused variables are reported by graphql-js (the errors Apollo turns into BAD_USER_INPUT, HTTP 400)', async () => {
  for (const max of [10, 0]) {
    const r = await run(max, Q, { n: 42 });
    expect(r.data).toBeUndefined();
    const [err] = r.errors!;
    expect(err!.message).toMatch(/^Variable "\$n" got invalid value 42/);
    expect(err!.nodes?.[0]?.kind).toBe(Kind.VARIABLE_DEFINITION);
  }
});

it('at most maxOperations compiled operations are alive; a collected document frees its places', async () => {
  // needs a deterministic garbage collection: a child process with --expose-gc runs the built class
  const script = `
    const { CompiledOperations } = require('./dist/src/graphql/executor.js');
    const { buildSchema, parse } = require('graphql');
    const ops = new CompiledOperations(buildSchema('type Query { a: Int }'), { maxOperations: 2 });
    (async () => {
      const kept = parse('{ a }');
      const seen = [!!ops.get(kept, undefined)];
      (() => seen.push(!!ops.get(parse('query B { a }'), 'B')))();
      const late = parse('query C { a }');
      seen.push(!!ops.get(late, 'C'), ops.size);
      for (let i = 0; i < 50 && ops.size === 2; i++) { gc(); await new Promise((r) => setTimeout(r, 10)); }
      // B's document was collected: its place is free again, and C (refused while full) now compiles
      seen.push(ops.size, !!ops.get(late, 'C'), !!ops.get(parse('query D { a }'), 'D'), !!ops.get(kept, undefined), ops.size);
      console.log(JSON.stringify(seen));
    })();`;
  const { execFileSync } = await import('node:child_process');
  const out = execFileSync(process.execPath, ['--expose-gc', '-e', script], { cwd: `${__dirname}/..`, encoding: 'utf8' });
  expect(JSON.parse(out)).toEqual([true, true, false, 2, 1, true, false, true, 2]);
});

it('WebSocket and SSE queries and mutations run compiled, with the answers graphql-js gives', async () => {
  const config = loadConfig({ NODE_ENV: 'test' });
  const ops = new WsOperations({ schema, config, logger: pino({ level: 'silent' }), armor: createArmor(config) });
  for (const n of ['ann', 'bad', 'boom', 42]) {
    const document = parse(Q);
    const args = { schema, document, variableValues: { n }, contextValue: {} };
    const viaTransport = await ops.execute(args);
    const interpreted = await execute(args);
    // as clients receive them (GraphQLError's toJSON), in any key order
    expect(JSON.parse(JSON.stringify(viaTransport))).toEqual(JSON.parse(JSON.stringify(interpreted)));
    expect(viaTransport.errors?.map((e) => [e.message, e.extensions, e.locations])).toEqual(interpreted.errors?.map((e) => [e.message, e.extensions, e.locations]));
  }
  // each of the four documents was compiled (graphql-js alone would hold none)
  expect(ops.compiled.size).toBe(4);
});
