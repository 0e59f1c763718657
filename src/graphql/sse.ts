import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { getOperationAST, GraphQLError, type ExecutionResult, type GraphQLSchema } from 'graphql';
import { createHandler, TOKEN_HEADER_KEY, TOKEN_QUERY_KEY, type Response as SseResponse } from 'graphql-sse';
import { randomUUID } from 'node:crypto';
import type { Config } from '../config';
import type { Logger } from '../logger';
import type { Metrics } from '../metrics/metrics';
import { SseMeter } from '../metrics/sse-meter';
import { operationReporter } from './operation-log';
import { graphqlHttpErrorHandler, type Armor } from './apollo';
import { atExpiry, type Authenticator, type Identity } from './auth';
import type { GraphQLContext } from './context';
import { AppError, ErrorCode, UnauthenticatedError } from './errors';
import type { RateLimits } from './rate-limits';
import type { TrustedDocuments } from './trusted-documents';
import { errorResult, identityRefusal, mutationOverGet, one, refusal, streamLimit, tooMany, withContractCode } from './sse-responses';
import { SseStreams } from './sse-streams';
import { createSharedSubscribe } from './subscriptions';
import { WsOperations } from './ws-operations';

/** Where GraphQL over SSE is served (Apollo owns `/graphql`). */
export const SSE_PATH = '/graphql/stream';

export interface GraphqlSse {
  /** Event streams open now. */
  readonly openStreams: number;
  /**
   * Refuses new requests (503, reason shutting_down) and ends every open stream, so that the HTTP
   * server can drain; a stream still writing after a second has its socket cut.
   */
  close(): Promise<void>;
}

/** What one request carries from one graphql-sse hook to the next. */
interface SseRequestContext {
  identity?: Identity;
  /** The single connection stream the request belongs to (its owner checked). */
  token?: string;
  /** The operation admitted on that stream, counted until it completes. */
  opId?: string;
  /** The request took one of its user's stream slots: kept by the stream it opens, else released. */
  slot?: boolean;
  /** The server's own request that ends a registered stream nobody connected to. */
  internal?: boolean;
  /** When the operation of this request arrived (metrics/sse-meter.ts). */
  startedAt?: number;
}

type Ctx = GraphQLContext & Record<PropertyKey, unknown>;
type Raw = FastifyRequest | undefined;

/**
 * GraphQL over Server-Sent Events (graphql-sse) on {@link SSE_PATH} of the Fastify app, for
 * clients behind proxies that do not pass WebSockets: both of the protocol's modes, "distinct
 * connections" (each operation its own GET or POST with `accept: text/event-stream`) and "single
 * connection" (PUT registers a stream, GET/POST with its token opens it, POSTs start operations,
 * DELETE stops one). Everything else is the WebSocket's: identity from the request headers
 * (`Authorization: Bearer`, or `x-user-id` in development), refused before any stream (401, 503);
 * documents parsed within GRAPHQL_MAX_TOKENS and validated with graphql-armor's rules; the ops
 * rate limit per operation; ownership when a subscription starts (NOT_FOUND); each event executed
 * once per distinct operation; errors formatted as over HTTP. A refused operation is a `next`
 * event with the errors, then `complete`, as graphql-sse prescribes (a 4xx would end an EventSource).
 *
 * Limits per user and instance: at most MAX_WS_PER_USER streams open (counted apart from
 * WebSockets; a single connection stream counts from its PUT), otherwise 429 RATE_LIMITED before
 * any stream; at most MAX_SUBSCRIPTIONS_PER_CONNECTION operations on one single connection stream
 * (the next is RATE_LIMITED); a registered stream not opened within WS_INIT_TIMEOUT_MS is dropped.
 */
export function registerGraphqlSse(
  app: FastifyInstance,
  opts: {
    schema: GraphQLSchema;
    config: Config;
    logger: Logger;
    auth: Authenticator;
    armor: Armor;
    limits: RateLimits;
    /** The PERSISTED_DOCUMENTS safelist, as over WebSocket (a document by hash: `query: ""` and `extensions.persistedQuery`). */
    trusted?: TrustedDocuments;
    /** Operations are counted here as over WebSocket (transport `sse`). */
    metrics?: Metrics;
    buildContext(user: Identity | null): GraphQLContext;
  },
): GraphqlSse {
  const { config, logger, auth, limits } = opts;
  // parsing, validation and error formatting exactly as for a WebSocket operation (its own cache)
  const operations = new WsOperations({ schema: opts.schema, config, logger, armor: opts.armor, trusted: opts.trusted });
  const maxOps = config.limits.maxSubscriptionsPerConnection;
  // each operation: a log line, and the metrics when they are on
  const meter = new SseMeter(operationReporter(opts.logger, opts.metrics));
  let closing = false;

  const streams = new SseStreams({
    maxPerUser: config.limits.maxWsPerUser,
    maxOpsPerStream: maxOps,
    connectTimeoutMs: config.limits.wsInitTimeoutMs,
    logger,
    // opening a registered stream and returning it at once is the handler's only way to drop it
    dispose: async (token) => {
      const [body] = await handler({
        method: 'GET',
        url: SSE_PATH,
        headers: { get: (key) => (key === 'accept' ? 'text/event-stream' : key === TOKEN_HEADER_KEY ? token : null) },
        body: null,
        raw: undefined,
        context: { internal: true, token },
      });
      if (body && typeof body !== 'string') await body.return(undefined);
    },
  });

  const handler = createHandler<Raw, SseRequestContext, Ctx>({
    schema: opts.schema,
    // every document reaching the handler was validated by `operations.prepare` in onSubscribe
    validate: () => [],
    subscribe: createSharedSubscribe() as never,
    execute: operations.execute as never, // graphql-jit, as over HTTP and WebSocket
    context: (req) => opts.buildContext(req.context.identity ?? null) as Ctx,

    // every request, first: who is asking, and which registered stream (if any) it is about
    async authenticate(req) {
      const { context } = req;
      if (context.internal) return context.token;
      if (closing) {
        return refusal(503, 'Service Unavailable', {
          message: 'The server is shutting down; reconnect',
          extensions: { code: ErrorCode.INTERNAL_SERVER_ERROR, reason: 'shutting_down' },
        });
      }
      let identity: Identity | null;
      try {
        identity = await auth.authenticate(req.headers.get('authorization') ?? undefined, req.headers.get('x-user-id') ?? undefined);
      } catch (err) {
        if (err instanceof AppError) return identityRefusal(err);
        throw err;
      }
      if (!identity) return identityRefusal(new UnauthenticatedError());
      context.identity = identity;
      const token = req.headers.get(TOKEN_HEADER_KEY) || new URL(req.url, 'http://localhost/').searchParams.get(TOKEN_QUERY_KEY);
      if (token) {
        // another user's stream is as unknown as a missing one
        if (streams.ownerOf(token) !== identity.userId) {
          return refusal(404, 'Not Found', { message: 'Stream not found', extensions: { code: ErrorCode.BAD_USER_INPUT, reason: 'BAD_REQUEST' } });
        }
        return (context.token = token);
      }
      if (req.method !== 'PUT') return null; // distinct connections mode
      if (!streams.take(identity.userId)) return refusal(429, 'Too Many Requests', streamLimit(config.limits.maxWsPerUser));
      context.slot = true;
      return randomUUID();
    },

    // an event stream is about to open: a distinct operation's takes a slot here
    onConnect(req) {
      const { context } = req;
      // (a PUT took its slot in authenticate already)
      if (context.internal || context.token || context.slot) return;
      if (!streams.take(context.identity!.userId)) return refusal(429, 'Too Many Requests', streamLimit(config.limits.maxWsPerUser));
      context.slot = true;
    },

    async onSubscribe(req, params) {
      const { context } = req;
      const identity = context.identity!;
      const opId = context.token ? String(params.extensions?.operationId ?? '') : undefined;
      // counted before the first await, so that a DELETE racing the start finds it
      if (context.token && !streams.admitOp(context.token, opId!)) {
        return errorResult([tooMany('subscriptions per connection', maxOps)]);
      }
      meter.start(context);
      const refuse = (errors: readonly GraphQLError[]) => {
        if (context.token) streams.opEnded(context.token, opId!);
        meter.refused(context, errors);
        return errorResult(errors);
      };
      try {
        await limits.consumeOperation(identity.userId);
      } catch (err) {
        return refuse([err instanceof GraphQLError ? err : new GraphQLError(String((err as Error)?.message), { originalError: err as Error })]);
      }
      const prepared = operations.prepare({
        query: params.query,
        operationName: params.operationName,
        variables: params.variables,
        extensions: params.extensions,
      });
      if (Array.isArray(prepared)) return refuse(prepared);
      if (req.method === 'GET' && getOperationAST(prepared.document, prepared.operationName)?.operation === 'mutation') {
        if (context.token) streams.opEnded(context.token, opId!);
        return mutationOverGet();
      }
      context.opId = opId;
      return { ...prepared, contextValue: opts.buildContext(identity) as Ctx };
    },

    // a subscription counts as it starts (or is refused by its resolver), a query or mutation with its result
    onOperation(_ctx, req, args, result) {
      meter.ran(req.context, getOperationAST(args.document, args.operationName), result);
      return undefined;
    },

    onNext: (ctx, _req, result) =>
      (operations.onNext(undefined, '', undefined, { contextValue: ctx }, result as ExecutionResult) ?? undefined) as never,

    onComplete(_ctx, req) {
      const { token, opId } = req.context;
      if (token && opId !== undefined) streams.opEnded(token, opId);
    },
  });

  async function serve(request: FastifyRequest, reply: FastifyReply): Promise<void> {
    // the response is written here, as graphql-sse's adapters do, not through reply.send
    reply.hijack();
    const res = reply.raw;
    const context: SseRequestContext = {};
    let response: SseResponse;
    try {
      response = await handler({
        method: request.method,
        url: request.url,
        headers: {
          get(key) {
            const value = one(request.headers[key.toLowerCase()]);
            // graphql-sse compares the whole header; a browser's list that names event streams means one
            if (key.toLowerCase() === 'accept' && value?.includes('text/event-stream')) return 'text/event-stream';
            return value ?? null;
          },
        },
        // Fastify has parsed a JSON body already (within MAX_BODY_BYTES)
        body: (request.body ?? null) as string | Record<PropertyKey, unknown> | null,
        raw: request,
        context,
      });
    } catch (err) {
      logger.error({ err }, 'internal error in a GraphQL over SSE request');
      response = refusal(500, 'Internal Server Error', { message: 'Internal server error', extensions: { code: ErrorCode.INTERNAL_SERVER_ERROR } });
    }
    const [body, init] = response;
    const userId = context.identity?.userId;
    const headers: Record<string, string> = {};
    for (const [k, v] of Object.entries(reply.getHeaders())) if (v !== undefined) headers[k] = one(v)!;

    if (body === null || typeof body === 'string') {
      if (context.slot && userId) {
        if (request.method === 'PUT' && init.status === 201 && body) streams.reserve(body, userId);
        else streams.release(userId);
      }
      if (request.method === 'DELETE' && context.token) {
        const opId = new URL(request.url, 'http://localhost/').searchParams.get('operationId');
        if (opId) streams.opEnded(context.token, opId);
      }
      const [out, outInit] = withContractCode([body, init]);
      res.writeHead(outInit.status, outInit.statusText, { ...headers, ...outInit.headers });
      res.end(out ?? undefined);
      return;
    }
    // an event stream: a distinct operation's (it keeps the slot its request took) or a registered one
    const token = context.token;
    if (token) streams.connected(token);
    // proxies that buffer responses (nginx) must pass each event on at once
    res.writeHead(init.status, init.statusText, { ...headers, ...init.headers, 'x-accel-buffering': 'no' });
    // the server's idle timeout (HTTP_REQUEST_TIMEOUT_MS) may be shorter than graphql-sse's 12 s
    // keep-alive comments; a stream is never idle while its client reads
    const socket = request.raw.socket;
    const idleTimeout = socket.timeout;
    socket.setTimeout(0);
    // the stream lives as long as the token it was opened with: ended at its expiry (graphql-sse
    // clients take that for a network error and reconnect, asking for headers again)
    const expire = context.identity && atExpiry(context.identity, () => void body.return(undefined).catch(() => undefined));
    await streams.pipe(body, res, () => {
      expire?.();
      if (token) streams.end(token);
      else if (context.slot && userId) streams.release(userId);
    });
    if (idleTimeout && !socket.destroyed) socket.setTimeout(idleTimeout);
  }

  app.route({
    url: SSE_PATH,
    method: ['GET', 'POST', 'PUT', 'DELETE'],
    exposeHeadRoute: false,
    // bodies Fastify refuses before the handler (bad JSON, 413, 415) answer in the contract's shape
    errorHandler: graphqlHttpErrorHandler,
    handler: serve,
  });

  return {
    get openStreams() {
      return streams.openCount;
    },
    async close() {
      closing = true;
      await streams.close();
    },
  };
}
