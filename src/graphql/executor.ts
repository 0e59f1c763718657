import type { GatewayExecutor, GatewayInterface } from '@apollo/server-gateway-interface';
import {
  execute,
  getOperationAST,
  getVariableValues,
  GraphQLError,
  type DocumentNode,
  type ExecutionResult,
  type GraphQLSchema,
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
  const max = opts.maxOperations ?? 1000;
  // Apollo keeps one parsed document per query text, so the document object is the key
  const compiled = new WeakMap<DocumentNode, Map<string, CompiledQuery | null>>();
  let count = 0;

  const compile = (document: DocumentNode, operationName: string | undefined): CompiledQuery | null => {
    let byName = compiled.get(document);
    if (!byName) compiled.set(document, (byName = new Map()));
    const key = operationName ?? '';
    let query = byName.get(key);
    if (query === undefined) {
      const result = count < max ? compileQuery(schema, document, operationName) : null;
      query = result && isCompiledQuery(result) ? result : null;
      // beyond `max` distinct operations (an unusual client fleet), graphql-js interprets the rest
      if (query) count++;
      byName.set(key, query);
    }
    return query;
  };

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
    const query = compile(document, operation.name?.value);
    if (!query) return execute({ schema, document, contextValue, variableValues: request.variables, operationName });
    const result: ExecutionResult = await query.query(undefined, contextValue, request.variables ?? {});
    if (!result.errors) return result;
    if (!('data' in result)) {
      // nothing ran: the variables were refused. graphql-js's errors for them are the ones Apollo
      // recognises as BAD_USER_INPUT (HTTP 400), exactly as without this executor
      const coerced = getVariableValues(schema, operation.variableDefinitions ?? [], request.variables ?? {});
      if (coerced.errors) return { errors: coerced.errors };
    }
    return { ...result, errors: result.errors.map(asGraphQLError) };
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
