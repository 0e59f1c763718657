import { ApolloServer, type ApolloServerPlugin } from '@apollo/server';
import { ApolloServerPluginCacheControlDisabled, ApolloServerPluginLandingPageDisabled } from '@apollo/server/plugin/disabled';
import { ApolloArmor } from '@escape.tech/graphql-armor';
import type { GraphQLSchema, ValidationRule } from 'graphql';
import type { Config } from '../config';
import { sqlStats } from '../db/sql-stats';
import type { Logger } from '../logger';
import type { GraphQLContext } from './context';
import { createFormatError } from './errors';
import { jitGateway } from './executor';
import type { RateLimits } from './rate-limits';

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

/** graphql-armor's limits (depth, aliases, cost, tokens, directives), shared by HTTP and WebSocket. */
export function createArmor(config: Config) {
  const armor = new ApolloArmor({
    maxDepth: { n: config.graphql.maxDepth, ignoreIntrospection: true },
    maxAliases: { n: config.graphql.maxAliases },
    costLimit: { maxCost: config.graphql.maxCost, ignoreIntrospection: true },
    maxTokens: { n: config.graphql.maxTokens },
    maxDirectives: { n: 20 },
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

/** Apollo Server 5 for queries and mutations over HTTP; started, not yet mounted. */
export async function createApollo(opts: {
  config: Config;
  logger: Logger;
  schema: GraphQLSchema;
  armor: Armor;
  limits: RateLimits;
}): Promise<ApolloServer<GraphQLContext>> {
  const { config, logger, schema, armor, limits } = opts;
  const production = config.nodeEnv === 'production';
  const apollo = new ApolloServer<GraphQLContext>({
    // queries and mutations run as compiled operations (graphql-jit); see executor.ts
    gateway: jitGateway(schema),
    introspection: config.graphql.introspection,
    includeStacktraceInErrorResponses: !production,
    allowBatchedHttpRequests: false,
    validationRules: armor.validationRules as ValidationRule[],
    formatError: createServerFormatError(config, logger),
    plugins: [
      ...armor.plugins,
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
  return apollo;
}
