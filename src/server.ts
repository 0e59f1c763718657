import { fastifyApolloHandler } from '@as-integrations/fastify';
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import type { GraphQLSchema } from 'graphql';
import type { AddressInfo } from 'node:net';
import type { Config } from './config';
import type { Database } from './db/database';
import { poolRunner } from './db/sql';
import { sqlStats } from './db/sql-stats';
import { createApollo, createArmor, graphqlHttpErrorHandler } from './graphql/apollo';
import { createAuthenticator, type Identity } from './graphql/auth';
import { HttpQueryLane } from './graphql/http-lane';
import { OperationContext, type ContextServices, type GraphQLContext } from './graphql/context';
import { RateLimits } from './graphql/rate-limits';
import { startGraphqlWs } from './graphql/ws-server';
import { registerGraphqlSse } from './graphql/sse';
import { createTrustedDocuments } from './graphql/trusted-documents';
import { registerCors } from './graphql/cors';
import { ModelBreaker } from './llm/breaker';
import { createPubSubBackend, type AppPubSub } from './graphql/pubsub';
import { createSchema } from './graphql/schema';
import { createOpenAIClient, type OpenAI } from './llm/openai.client';
import { startOfflineResponder, type OfflineResponder } from './llm/offline-responder';
import { JobQueue } from './jobs/queue';
import { createMetrics, knexPoolUsage, type Metrics } from './metrics/metrics';
import { serveMetrics } from './metrics/metrics.route';
import { MemoryService } from './memory/memory.service';
import { createSearch, type SearchModule } from './search/search.module';
import { createFiles, type FilesModule } from './files/files.module';
import { DocumentTool } from './files/document-tool';
import { PriceTable } from './tokenscount/prices';
import { TokenBudgets } from './tokenscount/budgets';
import { DialogService } from './vision/dialog.service';
import { MemoryReplyBuffer, RedisReplyBuffer, type ReplyBuffer } from './vision/reply-buffer';
import type { Logger } from './logger';
import { createVisionLoaders } from './vision/vision.loaders';
import { createPlayground } from './playground/playground.route';

export interface AppServer {
  /** Base URL, e.g. http://127.0.0.1:4000 */
  url: string;
  port: number;
  app: FastifyInstance;
  dialog: DialogService;
  memory: MemoryService;
  search: SearchModule;
  files: FilesModule;
  budgets: TokenBudgets;
  jobs: JobQueue;
  pubsub: AppPubSub;
  /** Prometheus metrics of this server (GET /metrics); unset when METRICS=false or served nowhere. */
  metrics?: Metrics;
  /** Base URL of the METRICS_PORT listener, when there is one. */
  metricsUrl?: string;
  /**
   * Stops taking operations, lets running replies finish for up to `graceMs` (then stores them
   * STOPPED), closes WebSockets (1001), drains HTTP, stops Apollo. The database is the caller's.
   */
  stop(graceMs?: number): Promise<void>;
}

function header(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
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
  const schema = opts.schema ?? (await createSchema());
  const auth = createAuthenticator(config.auth, { logger });
  const backend = await createPubSubBackend({ redisUrl: config.redisUrl, commandTimeoutMs: config.redisCommandTimeoutMs, logger });
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
  // prices in force for this process's rows (the dated default table and MODEL_PRICES)
  const budgets = new TokenBudgets(config.budgets);
  const metrics = createMetrics({ config: config.metrics, production: config.nodeEnv === 'production', logger });
  const llm = { client: llmClient, model: config.llm.model, provider: config.llm.provider, prices: new PriceTable(config.llm.prices), budgets, metrics };
  // durable background jobs (summaries, embeddings) on the same PostgreSQL; any instance runs any job
  const jobs = new JobQueue({ connectionString: db.url, logger, ...config.jobs });
  // embeddings (jobs), recall into the context, search
  const search = await createSearch({ sql: poolRunner(db.orm.em), config, llm, jobs, logger });
  // storage driver (local directory or S3), signed download links
  const files = await createFiles({ sql: poolRunner(db.orm.em), config, logger, limits });
  files.useJobs(jobs);
  const documents = new DocumentTool({ sql: poolRunner(db.orm.em), storage: files.storage, maxBytes: config.files.maxFileBytes, enabled: config.files.documentTool });
  // the context of each reply (budget, summary, recall); the tools' tokens come off its room
  const memory = new MemoryService({ sql: poolRunner(db.orm.em), config, llm, logger, tools: documents.tools });
  memory.useJobs(jobs);
  memory.useSearch(search);
  const dialog = new DialogService({ orm: db.orm, config, llm, pubsub, replyBuffer, breaker, limits, memory, documents, logger });
  await dialog.start();
  await jobs.start();
  // messages stored before embeddings existed (or under another EMBEDDING_MODEL) are embedded in the background
  await search.embeddings.queueBackfill();

  const app = Fastify({
    logger: false,
    bodyLimit: config.limits.maxBodyBytes,
    requestTimeout: config.limits.requestTimeoutMs,
    connectionTimeout: config.limits.requestTimeoutMs,
    keepAliveTimeout: 5000,
    return503OnClosing: true,
    forceCloseConnections: 'idle',
  });
  // every response by route and status, also those Fastify gives before a handler runs
  if (metrics) {
    app.addHook('onResponse', (request, reply, done) => {
      metrics.httpResponse(request.routeOptions.url, reply.statusCode);
      done();
    });
  }
  // pages of other origins (CORS_ORIGINS) may call the API; unset: same origin only
  await registerCors(app, config.cors);

  const services: ContextServices = {
    fork: () => db.orm.em.fork(),
    createLoaders: createVisionLoaders,
    sql: poolRunner(db.orm.em),
    config,
    logger,
    dialog,
    memory,
    search: search.service,
    files,
    budgets,
    pubsub,
  };
  const buildContext = (user: Identity | null): GraphQLContext => new OperationContext(user, services);

  const armor = createArmor(config);
  // which documents run, over every transport: the PERSISTED_DOCUMENTS safelist; APQ (in Redis when set)
  const trusted = createTrustedDocuments({ config: config.documents, redis: backend.redis, logger });
  const apollo = await createApollo({ config, logger, schema, armor, limits, trusted, metrics });

  const requestContext = async (request: FastifyRequest): Promise<GraphQLContext> =>
    buildContext(await auth.authenticate(header(request.headers.authorization), header(request.headers['x-user-id'])));
  // a context the query lane could not build is Apollo's to answer, without authenticating again
  const handedOver = new WeakMap<FastifyRequest, Promise<GraphQLContext>>();
  const graphqlHandler = fastifyApolloHandler(apollo, { context: (request) => handedOver.get(request) ?? requestContext(request) });
  // most queries skip Apollo's request pipeline, answered alike (GRAPHQL_QUERY_LANE)
  const lane = config.graphql.queryLane ? new HttpQueryLane({ schema, config, logger, armor, limits, trusted, metrics }) : undefined;
  async function graphqlOverHttp(this: FastifyInstance, request: FastifyRequest, reply: FastifyReply) {
    if (lane && (await lane.serve(request, reply, () => requestContext(request), (c) => handedOver.set(request, c)))) return reply;
    return graphqlHandler.call(this, request, reply);
  }
  // GraphiQL for browsers at GET /graphql, its files under /graphql/playground/ (PLAYGROUND, PLAYGROUND_UI)
  const playground = createPlayground({ config, logger });
  playground.registerRoutes(app);
  app.route({
    url: '/graphql',
    method: ['GET', 'POST', 'OPTIONS'],
    // bodies Fastify refuses before Apollo sees them (bad JSON, 413, 415) answer in the contract's shape
    errorHandler: graphqlHttpErrorHandler,
    // every statement the request runs is counted in its own store
    handler(request, reply) {
      // a browser's GET without a query gets the playground (GraphiQL), before Apollo sees it
      if (playground.wants(request)) return playground.serve(request, reply);
      // async context tracking costs every promise something, so it is on only when asked for
      if (!config.graphql.exposeSqlStats) return graphqlOverHttp.call(this, request, reply);
      return sqlStats.run({ statements: 0 }, () => graphqlOverHttp.call(this, request, reply));
    },
  });

  // subscriptions (and queries) over Server-Sent Events on /graphql/stream, for proxies without WebSockets
  const sse = config.documents.sse ? registerGraphqlSse(app, { schema, config, logger, auth, armor, limits, trusted, buildContext, metrics }) : undefined;

  files.registerRoutes(app);
  app.get('/healthz', async () => ({ status: 'ok' }));
  let stopping: Promise<void> | undefined;
  app.get('/readyz', async (_req, reply) => {
    // a load balancer must stop sending work as soon as the shutdown grace begins
    if (stopping) return reply.code(503).send({ status: 'unavailable', reason: 'shutting_down' });
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

  // GET /metrics (Prometheus): on this port (with METRICS_TOKEN in production) or on METRICS_PORT
  metrics?.watch({ replies: () => dialog.activeReplies, pool: () => knexPoolUsage(db.orm.em.getConnection().getKnex()), jobs: () => jobs.sizes() });
  const metricsEndpoint = metrics && (await serveMetrics({ app, metrics, config: config.metrics, logger }));

  app.server.headersTimeout = config.limits.headersTimeoutMs;
  await app.listen({ port: config.port, host: config.host });
  const { wss, dispose: disposeWs } = startGraphqlWs({ server: app.server, schema, config, logger, auth, armor, limits, buildContext, trusted, metrics });

  const addr = app.server.address() as AddressInfo;
  const url = `http://${addr.address.includes(':') ? `[${addr.address}]` : addr.address}:${addr.port}`;
  files.setBaseUrl(url);
  logger.info({ url: `${url}/graphql` }, 'GraphQL server listening (HTTP and WebSocket on /graphql)');

  return {
    url,
    port: addr.port,
    app,
    dialog,
    memory,
    search,
    files,
    budgets,
    jobs,
    pubsub,
    metrics,
    metricsUrl: metricsEndpoint?.url,
    stop(graceMs = 0) {
      stopping ??= (async () => {
        const t0 = performance.now();
        const step = (msg: string) => logger.info({ ms: Math.round(performance.now() - t0) }, `shutdown: ${msg}`);
        await dialog.shutdown(graceMs);
        step('replies finished or stopped');
        // a job still running after this is expired and retried by another instance (or the next start)
        await jobs.stop(Math.max(1000, Math.min(graceMs, 10_000)));
        step('background jobs stopped');
        // 1001 to every client; a socket that has not finished the close handshake within a
        // second is terminated (the HTTP server cannot close while upgraded sockets live)
        const sockets = [...wss.clients];
        const allClosed = Promise.all(sockets.map((ws) => new Promise<void>((r) => (ws.readyState === ws.CLOSED ? r() : ws.once('close', () => r())))));
        for (const ws of sockets) ws.close(1001, 'Going away');
        await Promise.race([allClosed, new Promise((r) => setTimeout(r, 1000).unref())]);
        for (const ws of sockets) if (ws.readyState !== ws.CLOSED) ws.terminate();
        await disposeWs();
        await new Promise<void>((resolve) => wss.close(() => resolve()));
        step('WebSockets closed');
        // open event streams end (graphql-sse clients reconnect): the HTTP server cannot drain while they last
        await sse?.close();
        step('event streams ended');
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
        await metricsEndpoint?.close();
        await offline?.close();
        await files.close();
        breaker.shutdown();
        await backend.close();
      })();
      return stopping;
    },
  };
}
