import { ApolloServer, type ApolloServerPlugin } from '@apollo/server';
import { ApolloServerPluginCacheControlDisabled, ApolloServerPluginLandingPageDisabled } from '@apollo/server/plugin/disabled';
import { fastifyApolloHandler } from '@as-integrations/fastify';
import { ApolloArmor } from '@escape.tech/graphql-armor';
import Fastify, { type FastifyInstance } from 'fastify';
import { GraphQLError, specifiedRules, type GraphQLSchema } from 'graphql';
import type { AddressInfo } from 'node:net';
import { WebSocketServer } from 'ws';
import type { Config } from './config';
import type { Database } from './db/database';
import { poolRunner } from './db/sql';
import { sqlStats } from './db/sql-stats';
import { createAuthenticator, type Identity } from './graphql/auth';
import { OperationContext, type ContextServices, type GraphQLContext } from './graphql/context';
import { createFormatError, ErrorCode, UnauthenticatedError } from './graphql/errors';
import { jitGateway } from './graphql/executor';
import { RateLimits } from './graphql/rate-limits';
import { createSharedSubscribe, DocumentCache } from './graphql/subscriptions';
import { serveGraphqlWs, type WsExtra } from './graphql/ws-transport';
import { ModelBreaker } from './llm/breaker';
import { createPubSubBackend, type AppPubSub } from './graphql/pubsub';
import { createSchema } from './graphql/schema';
import { createOpenAIClient, type OpenAI } from './llm/openai.client';
import { startOfflineResponder, type OfflineResponder } from './llm/offline-responder';
import { DialogService } from './vision/dialog.service';
import { MemoryReplyBuffer, RedisReplyBuffer, type ReplyBuffer } from './vision/reply-buffer';
import type { Logger } from './logger';
import { createVisionLoaders } from './vision/vision.loaders';

export interface AppServer {
  /** Base URL, e.g. http://127.0.0.1:4000 */
  url: string;
  port: number;
  app: FastifyInstance;
  dialog: DialogService;
  pubsub: AppPubSub;
  /**
   * Stops taking operations, lets running replies finish for up to `graceMs` (then stores them
   * STOPPED), closes WebSockets (1001), drains HTTP, stops Apollo. The database is the caller's.
   */
  stop(graceMs?: number): Promise<void>;
}

function header(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}

/** One log line per GraphQL operation: name, user, duration, error code. No variables, no content. */
function operationLogPlugin(logger: Logger, exposeSqlStats: boolean): ApolloServerPlugin<GraphQLContext> {
  return {
    async requestDidStart({ contextValue }) {
      const started = performance.now();
      return {
        async willSendResponse({ operationName, operation, errors, response }) {
          const stats = sqlStats.getStore();
          if (exposeSqlStats && stats) response.http.headers.set('x-sql-statements', String(stats.statements));
          const codes = errors?.map((e) => String(e.extensions?.code ?? 'INTERNAL_SERVER_ERROR'));
          logger.info(
            {
              op: operationName ?? null,
              type: operation?.operation ?? null,
              userId: contextValue.user?.userId ?? null,
              ms: Math.round((performance.now() - started) * 10) / 10,
              sql: stats?.statements,
              ...(codes?.length ? { errorCode: codes[0], errorCodes: codes.length > 1 ? codes : undefined } : {}),
            },
            'graphql',
          );
        },
      };
    },
  };
}

/** Every operation of a known user counts against RATE_LIMIT_OPS_PER_SECOND. */
function rateLimitPlugin(limits: RateLimits): ApolloServerPlugin<GraphQLContext> {
  return {
    async requestDidStart() {
      return {
        async didResolveOperation({ contextValue }) {
          if (contextValue.user) await limits.consumeOperation(contextValue.user.userId);
        },
      };
    },
  };
}

/**
 * HTTP (Fastify + Apollo Server 5) and WebSocket (graphql-ws) on one port, both on `/graphql`;
 * `/healthz` and `/readyz` for orchestration.
 */
export async function startServer(opts: {
  config: Config;
  logger: Logger;
  db: Database;
  schema?: GraphQLSchema;
  /** Overrides the model client built from the configuration (tests, benchmarks). */
  llmClient?: OpenAI;
}): Promise<AppServer> {
  const { config, logger, db } = opts;
  const production = config.nodeEnv === 'production';
  const schema = opts.schema ?? (await createSchema());
  const auth = createAuthenticator(config.auth);
  const backend = await createPubSubBackend({ redisUrl: config.redisUrl, logger });
  const pubsub = backend.pubsub;
  const replyBuffer: ReplyBuffer = backend.redis ? new RedisReplyBuffer(backend.redis) : new MemoryReplyBuffer();

  let offline: OfflineResponder | undefined;
  let llmClient = opts.llmClient;
  if (!llmClient) {
    if (config.llm.offline) {
      offline = await startOfflineResponder();
      logger.warn(
        { baseURL: offline.baseURL },
        '*** OPENAI_API_KEY is not set: replies come from the OFFLINE responder (deterministic text, no model). Set OPENAI_API_KEY for real answers. ***',
      );
    }
    llmClient = createOpenAIClient({
      apiKey: config.llm.apiKey ?? 'offline',
      baseURL: offline?.baseURL ?? config.llm.baseURL,
      timeoutMs: config.llm.timeoutMs,
      maxRetries: config.llm.maxRetries,
      logger,
    });
  }
  const limits = new RateLimits({ ...config.limits, redis: backend.redis });
  const breaker = new ModelBreaker({
    threshold: config.limits.breakerThreshold,
    cooldownMs: config.limits.breakerCooldownMs,
    onStateChange: (state) => logger.warn({ state }, `model circuit breaker ${state}`),
  });
  const dialog = new DialogService({
    orm: db.orm,
    config,
    llm: { client: llmClient, model: config.llm.model, provider: config.llm.provider },
    pubsub,
    replyBuffer,
    breaker,
    limits,
    logger,
  });
  await dialog.start();

  const app = Fastify({
    logger: false,
    bodyLimit: config.limits.maxBodyBytes,
    requestTimeout: config.limits.requestTimeoutMs,
    connectionTimeout: config.limits.requestTimeoutMs,
    keepAliveTimeout: 5000,
    return503OnClosing: true,
    forceCloseConnections: 'idle',
  });

  const services: ContextServices = {
    fork: () => db.orm.em.fork(),
    createLoaders: createVisionLoaders,
    sql: poolRunner(db.orm.em),
    config,
    logger,
    dialog,
    pubsub,
    replyBuffer,
  };
  const buildContext = (user: Identity | null): GraphQLContext => new OperationContext(user, services);

  const armor = new ApolloArmor({
    maxDepth: { n: config.graphql.maxDepth, ignoreIntrospection: true },
    maxAliases: { n: config.graphql.maxAliases },
    costLimit: { maxCost: config.graphql.maxCost, ignoreIntrospection: true },
    maxTokens: { n: config.graphql.maxTokens },
    maxDirectives: { n: 20 },
    blockFieldSuggestion: { enabled: production },
  });
  const protection = armor.protect();

  const apollo = new ApolloServer<GraphQLContext>({
    // queries and mutations run as compiled operations (graphql-jit); see executor.ts
    gateway: jitGateway(schema),
    introspection: config.graphql.introspection,
    includeStacktraceInErrorResponses: !production,
    allowBatchedHttpRequests: false,
    validationRules: protection.validationRules,
    formatError: createFormatError({
      production,
      onInternal: (err) => logger.error({ err }, 'internal error in a GraphQL operation'),
      onDatabaseDown: (err) => logger.warn({ err: (err as Error).message }, 'database unavailable'),
    }),
    plugins: [
      ...protection.plugins,
      rateLimitPlugin(limits),
      // no cache hints are used; the default plugin would wrap every field resolver
      ApolloServerPluginCacheControlDisabled(),
      operationLogPlugin(logger, config.graphql.exposeSqlStats),
      ...(production ? [ApolloServerPluginLandingPageDisabled()] : []),
    ],
    logger: {
      debug: (m) => logger.debug(m),
      info: (m) => logger.info(m),
      warn: (m) => logger.warn(m),
      error: (m) => logger.error(m),
    },
  });
  await apollo.start();

  const graphqlHandler = fastifyApolloHandler(apollo, {
    context: async (request) => {
      const identity = await auth.authenticate(header(request.headers.authorization), header(request.headers['x-user-id']));
      return buildContext(identity);
    },
  });
  app.route({
    url: '/graphql',
    method: ['GET', 'POST', 'OPTIONS'],
    // every statement the request runs is counted in its own store
    handler(request, reply) {
      // async context tracking costs every promise something, so it is on only when asked for
      if (!config.graphql.exposeSqlStats) return graphqlHandler.call(this, request, reply);
      return sqlStats.run({ statements: 0 }, () => graphqlHandler.call(this, request, reply));
    },
  });

  app.get('/healthz', async () => ({ status: 'ok' }));
  app.get('/readyz', async (_req, reply) => {
    try {
      await Promise.race([
        db.orm.em.getConnection().execute('select 1'),
        new Promise((_, reject) => setTimeout(() => reject(new Error('database did not answer within 1 s')), 1000).unref()),
      ]);
      return { status: 'ready' };
    } catch (err) {
      logger.warn({ err: (err as Error).message }, 'readiness check failed');
      return reply.code(503).send({ status: 'unavailable', reason: 'database' });
    }
  });

  app.server.headersTimeout = config.limits.headersTimeoutMs;
  await app.listen({ port: config.port, host: config.host });
  const wsPerUser = new Map<string, number>();
  const wss = new WebSocketServer({ server: app.server, path: '/graphql', maxPayload: 64 * 1024 });
  // the same limits as over HTTP; documents parsed and validated once per distinct text, and
  // each event executed once per distinct operation, however many subscribers it has
  const documents = new DocumentCache({ rules: [...specifiedRules, ...protection.validationRules] });
  const wsServer = serveGraphqlWs<WsExtra & { identity?: Identity }>(
    {
      schema,
      parse: documents.parse,
      jsonMessageReviver: documents.reviver,
      validate: documents.validate as typeof import('graphql').validate,
      subscribe: createSharedSubscribe(),
      // a socket that has not sent connection_init by then is closed (4408)
      connectionInitWaitTimeout: config.limits.wsInitTimeoutMs,
      onConnect: async (ctx) => {
        const params = ctx.connectionParams ?? {};
        const str = (v: unknown) => (typeof v === 'string' ? v : undefined);
        try {
          const identity = await auth.authenticate(
            str(params.authorization) ?? str(params.Authorization),
            str(params['x-user-id']),
          );
          // the connection keeps its params for its lifetime; the token is not needed any more
          delete (params as Record<string, unknown>).authorization;
          delete (params as Record<string, unknown>).Authorization;
          if (!identity) {
            ctx.extra.socket.close(4401, 'Unauthorized');
            return false;
          }
          const open = wsPerUser.get(identity.userId) ?? 0;
          if (open >= config.limits.maxWsPerUser) {
            ctx.extra.socket.close(4429, 'Too many connections for this user');
            return false;
          }
          wsPerUser.set(identity.userId, open + 1);
          ctx.extra.socket.once('close', () => {
            const n = (wsPerUser.get(identity.userId) ?? 1) - 1;
            if (n > 0) wsPerUser.set(identity.userId, n);
            else wsPerUser.delete(identity.userId);
          });
          ctx.extra.identity = identity;
          return true;
        } catch (err) {
          if (err instanceof UnauthenticatedError) {
            ctx.extra.socket.close(4403, 'Forbidden');
            return false;
          }
          throw err;
        }
      },
      onSubscribe: async (ctx) => {
        // the request limit covers subscription starts too; a connection holds a bounded number
        if (Object.keys(ctx.subscriptions).length >= config.limits.maxSubscriptionsPerConnection) {
          return [
            new GraphQLError(`At most ${config.limits.maxSubscriptionsPerConnection} subscriptions per connection`, {
              extensions: { code: ErrorCode.RATE_LIMITED },
            }),
          ];
        }
        const userId = ctx.extra.identity?.userId;
        if (userId) {
          try {
            await limits.consumeOperation(userId);
          } catch (err) {
            if (err instanceof GraphQLError) return [err];
            throw err;
          }
        }
        return undefined;
      },
      context: (ctx) => buildContext(ctx.extra.identity ?? null),
    },
    wss,
    { logger, keepAliveMs: config.limits.wsKeepAliveMs },
  );

  const addr = app.server.address() as AddressInfo;
  const url = `http://${addr.address.includes(':') ? `[${addr.address}]` : addr.address}:${addr.port}`;
  logger.info({ url: `${url}/graphql` }, 'GraphQL server listening (HTTP and WebSocket on /graphql)');

  let stopping: Promise<void> | undefined;
  return {
    url,
    port: addr.port,
    app,
    dialog,
    pubsub,
    stop(graceMs = 0) {
      stopping ??= (async () => {
        const t0 = performance.now();
        const step = (msg: string) => logger.info({ ms: Math.round(performance.now() - t0) }, `shutdown: ${msg}`);
        await dialog.shutdown(graceMs);
        step('replies finished or stopped');
        // 1001 to every client; a socket that has not finished the close handshake within a
        // second is terminated (the HTTP server cannot close while upgraded sockets live)
        const sockets = [...wss.clients];
        const allClosed = Promise.all(sockets.map((ws) => new Promise<void>((r) => (ws.readyState === ws.CLOSED ? r() : ws.once('close', () => r())))));
        for (const ws of sockets) ws.close(1001, 'Going away');
        await Promise.race([allClosed, new Promise((r) => setTimeout(r, 1000).unref())]);
        for (const ws of sockets) if (ws.readyState !== ws.CLOSED) ws.terminate();
        await wsServer.dispose();
        await new Promise<void>((resolve) => wss.close(() => resolve()));
        step('WebSockets closed');
        // requests still running finish; keep-alive connections close as soon as they are idle,
        // and after 5 s whatever is left is cut
        const sweep = setInterval(() => app.server.closeIdleConnections(), 50);
        const cut = setTimeout(() => app.server.closeAllConnections(), 5000);
        try {
          await app.close();
          await apollo.stop();
        } finally {
          clearInterval(sweep);
          clearTimeout(cut);
        }
        step('HTTP drained');
        await offline?.close();
        breaker.shutdown();
        await backend.close();
      })();
      return stopping;
    },
  };
}
