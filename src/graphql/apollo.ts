import { ApolloServer, type ApolloServerPlugin } from '@apollo/server';
import { ApolloServerPluginCacheControlDisabled, ApolloServerPluginLandingPageDisabled } from '@apollo/server/plugin/disabled';
import { ApolloServerPluginLandingPageLocalDefault } from '@apollo/server/plugin/landingPage/default';
import { ApolloArmor } from '@escape.tech/graphql-armor';
import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify';
import {
  GraphQLError,
  NoSchemaIntrospectionCustomRule,
  specifiedRules,
  type GraphQLSchema,
  type ValidationContext,
  type ValidationRule,
} from 'graphql';
import type { Config } from '../config';
import { sqlStats } from '../db/sql-stats';
import type { Logger } from '../logger';
import type { GraphQLContext } from './context';
import { createFormatError, ErrorCode } from './errors';
import { jitGateway } from './executor';
import { logOperation } from './operation-log';
import type { RateLimits } from './rate-limits';
import { DocumentCache } from './subscriptions';
import { metricsPlugin } from '../metrics/apollo-plugin';
import type { Metrics } from '../metrics/metrics';
import type { TrustedDocuments } from './trusted-documents';

/**
 * The rules every document is validated with, on every transport, as Apollo validates: graphql-js's,
 * graphql-armor's, and no introspection when it is off (Apollo's NoIntrospection refuses the same
 * two fields as graphql-js's rule).
 */
export function documentRules(config: Config, armor: Armor): ValidationRule[] {
  const rules: ValidationRule[] = [...specifiedRules, ...(armor.validationRules as ValidationRule[])];
  if (!config.graphql.introspection) rules.push(NoSchemaIntrospectionCustomRule);
  return rules;
}

/** A {@link DocumentCache} validating with {@link documentRules}, within GRAPHQL_MAX_TOKENS and WS_DOCUMENT_CACHE_BYTES. */
export function createDocumentCache(opts: { schema: GraphQLSchema; config: Config; armor: Armor; locations?: boolean }): DocumentCache {
  const { config } = opts;
  return new DocumentCache({
    schema: opts.schema,
    rules: documentRules(config, opts.armor),
    maxTokens: config.graphql.maxTokens,
    maxBytes: config.limits.wsDocumentCacheBytes,
    locations: opts.locations,
  });
}

/** One log line per GraphQL operation ({@link logOperation}); also puts the context's warnings into `extensions.warnings`. */
function operationLogPlugin(logger: Logger, exposeSqlStats: boolean): ApolloServerPlugin<GraphQLContext> {
  return {
    async requestDidStart({ contextValue }) {
      const started = performance.now();
      return {
        async willSendResponse({ operationName, operation, errors, response }) {
          if (contextValue.warnings?.length && response.body.kind === 'single') {
            const result = response.body.singleResult;
            result.extensions = { ...result.extensions, warnings: contextValue.warnings };
          }
          const stats = sqlStats.getStore();
          if (exposeSqlStats && stats) response.http.headers.set('x-sql-statements', String(stats.statements));
          logOperation(logger, {
            op: operationName ?? null,
            type: operation?.operation ?? null,
            userId: contextValue.user?.userId ?? null,
            ms: performance.now() - started,
            sql: stats?.statements,
            errors,
          });
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
 * graphql-armor words every refusal "Syntax Error: …"; a limit is not a syntax error. Reported to
 * the validation context, so Apollo answers it like any invalid document (HTTP 400) and so does
 * the WebSocket (BAD_USER_INPUT, reason GRAPHQL_VALIDATION_FAILED).
 */
const refuse = () => [
  (ctx: ValidationContext | null, err: GraphQLError) =>
    ctx?.reportError(new GraphQLError(err.message.replace(/^Syntax Error: /, ''), { extensions: { code: 'BAD_USER_INPUT' } })),
];

/**
 * graphql-armor's limits (depth, aliases, cost, directives), shared by HTTP and WebSocket.
 *
 * Cost: armor counts `scalarCost` for a leaf, and for a field with a selection `objectCost` plus
 * each child's cost times `depthCostFactor`, all multiplied by the field's literal `first`/`last`.
 * Its defaults (2, 1, 1.5) weigh a field at depth d by 1.5^d, so the Relay wrappers alone
 * (connection > edges > node > file) made the documented page messages(last: 200) cost ~25 000,
 * five times its limit. With 1, 1, 1 a document costs about the number of values its response
 * can hold: each selected field once per item of every page around it (a fragment spread adds 2).
 * Depth has its own limit (GRAPHQL_MAX_DEPTH) and width is bounded by GRAPHQL_MAX_TOKENS (without
 * pages a document costs about its field count; fragment bombs are counted in full), so what the
 * cost limit adds is a bound on pages, and its default follows MAX_PAGE_SIZE: 150 per page item
 * (src/config.ts). One screen asking for everything (visions(first: MAX) and vision {
 * messages(last: MAX) } with every field, through fragments, with Apollo Client's __typename
 * everywhere) costs ~88 per item; a page inside a page (the messages of each of MAX visions)
 * costs at least 2 × MAX² and is refused whenever MAX > 75. A `first`/`last` given as a variable,
 * or left to its default, counts 1: validation runs once per document, before variables exist.
 */
export function createArmor(config: Config) {
  const armor = new ApolloArmor({
    // depth in fields: a fragment spread is no level (Apollo Client documents are made of them)
    maxDepth: { n: config.graphql.maxDepth, flattenFragments: true, ignoreIntrospection: true, propagateOnRejection: false, onReject: refuse() },
    maxAliases: { n: config.graphql.maxAliases, propagateOnRejection: false, onReject: refuse() },
    costLimit: {
      maxCost: config.graphql.maxCost,
      objectCost: 1,
      scalarCost: 1,
      depthCostFactor: 1,
      ignoreIntrospection: true,
      propagateOnRejection: false,
      onReject: refuse(),
    },
    // counted by graphql-js's parser instead (parseOptions below; the WebSocket's DocumentCache):
    // armor's Apollo plugin parses again in parsingDidStart, and what it throws there (any syntax
    // error, the token limit) reaches Apollo as an unexpected error, HTTP 500
    maxTokens: { enabled: false },
    maxDirectives: { n: 20, propagateOnRejection: false, onReject: refuse() },
    blockFieldSuggestion: { enabled: config.nodeEnv === 'production' },
  });
  return armor.protect();
}

export type Armor = ReturnType<typeof createArmor>;

/** The formatter every error leaving the server goes through (HTTP and WebSocket). */
export function createServerFormatError(config: Config, logger: Logger) {
  return createFormatError({
    production: config.nodeEnv === 'production',
    onInternal: (err) => logger.error({ err }, 'internal error in a GraphQL operation'),
    onDatabaseDown: (err) => logger.warn({ err: (err as Error).message }, 'database unavailable'),
  });
}

const GRAPHQL_RESPONSE_JSON = 'application/graphql-response+json';

/**
 * The `errorHandler` of the /graphql route: what Fastify refuses before Apollo sees the request
 * (a body that is not JSON, an empty JSON body, an unsupported content-type, a body over
 * MAX_BODY_BYTES) keeps its 4xx status and gets the contract's shape, BAD_USER_INPUT with reason
 * BAD_REQUEST, as Apollo answers a body without a query. Anything else goes on to Fastify's handler.
 */
export function graphqlHttpErrorHandler(error: FastifyError, request: FastifyRequest, reply: FastifyReply) {
  const status = error.statusCode ?? 500;
  if (status < 400 || status >= 500) throw error;
  const accept = String(request.headers.accept ?? '');
  const message = status === 415 ? 'Unsupported Media Type: send a POST body as application/json, or use GET' : error.message;
  return reply
    .code(status)
    .type(`${accept.includes(GRAPHQL_RESPONSE_JSON) ? GRAPHQL_RESPONSE_JSON : 'application/json'}; charset=utf-8`)
    .send({ errors: [{ message, extensions: { code: ErrorCode.BAD_USER_INPUT, reason: 'BAD_REQUEST' } }] });
}

/** Apollo Server 5 for queries and mutations over HTTP; started, not yet mounted. */
export async function createApollo(opts: {
  config: Config;
  logger: Logger;
  schema: GraphQLSchema;
  armor: Armor;
  limits: RateLimits;
  /** Which documents run (safelist, APQ); unset: Apollo's defaults. */
  trusted?: TrustedDocuments;
  /** Operations are counted and timed here (GET /metrics). */
  metrics?: Metrics;
}): Promise<ApolloServer<GraphQLContext>> {
  const { config, logger, schema, armor, limits } = opts;
  const production = config.nodeEnv === 'production';
  const apollo = new ApolloServer<GraphQLContext>({
    // queries and mutations run as compiled operations (graphql-jit); see executor.ts
    gateway: jitGateway(schema),
    introspection: config.graphql.introspection,
    includeStacktraceInErrorResponses: !production,
    allowBatchedHttpRequests: false,
    // automatic persisted queries (in Redis when REDIS_URL is set), off under a safelist
    ...(opts.trusted ? { persistedQueries: opts.trusted.persistedQueries } : {}),
    // the entry point owns SIGTERM/SIGINT and shuts down in order (replies, WebSockets, HTTP, database)
    stopOnTerminationSignals: false,
    // a document over the limit is a syntax error (GRAPHQL_PARSE_FAILED, HTTP 400), as over WebSocket
    parseOptions: { maxTokens: config.graphql.maxTokens },
    validationRules: armor.validationRules as ValidationRule[],
    formatError: createServerFormatError(config, logger),
    plugins: [
      // first: it decides which text the request runs before any other plugin sees it
      ...(opts.trusted ? [opts.trusted.apolloPlugin<GraphQLContext>()] : []),
      ...armor.plugins,
      rateLimitPlugin(limits),
      // no cache hints are used; the default plugin would wrap every field resolver
      ApolloServerPluginCacheControlDisabled(),
      operationLogPlugin(logger, config.graphql.exposeSqlStats),
      ...(opts.metrics ? [metricsPlugin<GraphQLContext>(opts.metrics)] : []),
      // the browser page at GET /graphql: the bundled GraphiQL (src/playground, served before Apollo
      // sees the request), or with PLAYGROUND_UI=apollo Apollo's own landing page (loaded from its CDN)
      config.playground.enabled && config.playground.ui === 'apollo'
        ? ApolloServerPluginLandingPageLocalDefault({ embed: true })
        : ApolloServerPluginLandingPageDisabled(),
    ],
    logger: {
      debug: (m) => logger.debug(m),
      info: (m) => logger.info(m),
      warn: (m) => logger.warn(m),
      error: (m) => logger.error(m),
    },
  });
  await apollo.start();
  return apollo;
}
