import { GraphQLError, specifiedRules, type GraphQLSchema } from 'graphql';
import type { Server } from 'node:http';
import { WebSocketServer } from 'ws';
import type { Config } from '../config';
import type { Logger } from '../logger';
import type { Armor } from './apollo';
import type { Authenticator, Identity } from './auth';
import type { GraphQLContext } from './context';
import { ErrorCode, UnauthenticatedError } from './errors';
import type { RateLimits } from './rate-limits';
import { createSharedSubscribe, DocumentCache } from './subscriptions';
import { serveGraphqlWs, type WsExtra } from './ws-transport';

export interface GraphqlWsServer {
  wss: WebSocketServer;
  dispose(): Promise<void>;
}

/**
 * graphql-ws on `/graphql` of the HTTP server: identity when the connection opens, the same
 * limits as over HTTP, per-user connection caps.
 */
export function startGraphqlWs(opts: {
  server: Server;
  schema: GraphQLSchema;
  config: Config;
  logger: Logger;
  auth: Authenticator;
  armor: Armor;
  limits: RateLimits;
  buildContext(user: Identity | null): GraphQLContext;
}): GraphqlWsServer {
  const { config, auth, limits } = opts;
  const wsPerUser = new Map<string, number>();
  const wss = new WebSocketServer({ server: opts.server, path: '/graphql', maxPayload: 64 * 1024 });
  // the same limits as over HTTP; documents parsed and validated once per distinct text, and
  // each event executed once per distinct operation, however many subscribers it has
  const documents = new DocumentCache({ rules: [...specifiedRules, ...opts.armor.validationRules] });
  const wsServer = serveGraphqlWs<WsExtra & { identity?: Identity }>(
    {
      schema: opts.schema,
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
      context: (ctx) => opts.buildContext(ctx.extra.identity ?? null),
    },
    wss,
    { logger: opts.logger, keepAliveMs: config.limits.wsKeepAliveMs },
  );
  return { wss, dispose: () => wsServer.dispose() };
}
