import type { GatewayExecutor, GatewayInterface } from '@apollo/server-gateway-interface';
import {
  execute,
  getOperationAST,
  getVariableValues,
  GraphQLError,
  type DocumentNode,
  type ExecutionResult,
  type GraphQLSchema,
  type OperationDefinitionNode,
} from 'graphql';
import { compileQuery, isCompiledQuery, type CompiledQuery } from 'graphql-jit';
import { AppError, ErrorCode } from './errors';

const SUBSCRIPTION_OVER_HTTP = 'Subscriptions are served over WebSocket (graphql-transport-ws) on /graphql, not over HTTP';

/**
 * Query and mutation execution through graphql-jit: each distinct operation is compiled once
 * into a JavaScript function, which then runs the resolvers without graphql-js's per-field
 * interpretation (argument coercion, field collection, completion dispatch). On the read
 * screens that interpretation is a large share of a request (BENCHMARKS.md).
 *
 * Apollo Server 5 has no executor option; its documented way to plug one in is the gateway
 * interface, which it then calls for execution only (parsing, validation, plugins, error
 * formatting stay Apollo's). The schema never changes at runtime. Operations graphql-jit
 * cannot compile run on graphql-js. Subscriptions are not Apollo's: see subscriptions.ts.
 */
export function jitGateway(schema: GraphQLSchema, opts: { maxOperations?: number } = {}): GatewayInterface {
  const compiled = new CompiledOperations(schema, opts);

  const executor: GatewayExecutor = async (requestContext) => {
    const { document, request, context: contextValue } = requestContext;
    // the client's operationName, not the resolved one: Apollo leaves that null when the name is
    // unknown, and the document's only operation would then run instead of an error
    const operationName = request.operationName ?? undefined;
    const operation = requestContext.operation ?? getOperationAST(document, operationName);
    if (!operation) {
      // nothing to run (unknown name, or several operations and none named): graphql-js says why
      // and Apollo answers it as OPERATION_RESOLUTION_FAILURE (HTTP 400); nothing is compiled for it
      return execute({ schema, document, contextValue, variableValues: request.variables, operationName });
    }
    if (operation.operation === 'subscription') {
      // executed here, a subscription field's resolver would run once without its event
      return { errors: [new AppError(SUBSCRIPTION_OVER_HTTP, ErrorCode.BAD_USER_INPUT, { reason: 'BAD_REQUEST' }, 400)] };
    }
    const query = compiled.get(document, operation.name?.value);
    if (!query) return execute({ schema, document, contextValue, variableValues: request.variables, operationName });
    return runCompiled(schema, query, operation, contextValue, request.variables);
  };

  return {
    async load() {
      return { executor };
    },
    onSchemaLoadOrUpdate(callback) {
      callback({ apiSchema: schema, coreSupergraphSdl: '' });
      return () => undefined;
    },
    async stop() {},
  };
}

/**
 * Operations compiled by graphql-jit, by document object and operation name: callers keep one
 * document per query text (Apollo's document store, the HTTP lane's cache), so the object is the
 * key and a document that is forgotten takes its compiled operations with it. At most
 * `maxOperations` compiled operations are alive at once (an unusual client fleet); past it
 * graphql-js interprets the others (`get` answers null, as for an operation graphql-jit cannot
 * compile) until documents the caches evicted are collected and free their places.
 */
export class CompiledOperations {
  private readonly compiled = new WeakMap<DocumentNode, { byName: Map<string, CompiledQuery | null>; alive: { n: number } }>();
  /** Gives back a collected document's places; holds only its counter, never the document. */
  private readonly released = new FinalizationRegistry<{ n: number }>((alive) => {
    this.count -= alive.n;
  });
  private readonly max: number;
  private count = 0;

  constructor(
    private readonly schema: GraphQLSchema,
    opts: { maxOperations?: number } = {},
  ) {
    this.max = opts.maxOperations ?? 1000;
  }

  /** Compiled operations alive (those of collected documents no longer count). */
  get size(): number {
    return this.count;
  }

  get(document: DocumentNode, operationName: string | undefined): CompiledQuery | null {
    let entry = this.compiled.get(document);
    if (!entry) {
      entry = { byName: new Map(), alive: { n: 0 } };
      this.compiled.set(document, entry);
    }
    const key = operationName ?? '';
    let query = entry.byName.get(key);
    if (query === undefined) {
      // full: interpreted this time, not remembered, so a later request can compile it
      if (this.count >= this.max) return null;
      const result = compileQuery(this.schema, document, operationName);
      query = isCompiledQuery(result) ? result : null;
      if (query) {
        // a document holds places from its first compiled operation on (those that compiled nothing hold none)
        if (entry.alive.n === 0) this.released.register(document, entry.alive);
        this.count++;
        entry.alive.n++;
      }
      entry.byName.set(key, query);
    }
    return query;
  }
}

/**
 * A compiled operation's result as graphql-js would give it: graphql-jit's errors become
 * graphql-js's (see {@link asGraphQLError}), and when nothing ran because the variables were
 * refused, the errors are graphql-js's own for them (the ones Apollo recognises as
 * BAD_USER_INPUT, HTTP 400).
 */
export async function runCompiled(
  schema: GraphQLSchema,
  query: CompiledQuery,
  operation: OperationDefinitionNode,
  contextValue: unknown,
  variables: Record<string, unknown> | null | undefined,
): Promise<ExecutionResult> {
  const result: ExecutionResult = await query.query(undefined, contextValue, variables ?? {});
  if (!result.errors) return result;
  if (!('data' in result)) {
    const coerced = getVariableValues(schema, operation.variableDefinitions ?? [], variables ?? {});
    if (coerced.errors) return { errors: coerced.errors };
  }
  return { ...result, errors: result.errors.map(asGraphQLError) };
}

/**
 * graphql-jit's errors imitate GraphQLError (no `extensions` object when the cause had none, no
 * nodes); Apollo's error formatting expects graphql-js's. Same message, path, locations and cause.
 */
function asGraphQLError(e: GraphQLError): GraphQLError {
  const err = new GraphQLError(e.message, {
    path: e.path,
    originalError: e.originalError ?? undefined,
    extensions: e.extensions ?? undefined,
  });
  if (e.locations) (err as { locations?: GraphQLError['locations'] }).locations = e.locations;
  return err;
}
