import { GraphQLError, type GraphQLSchema } from 'graphql';
import type { Server } from 'node:http';
import { WebSocketServer } from 'ws';
import type { Config } from '../config';
import type { Logger } from '../logger';
import type { Armor } from './apollo';
import { atExpiry, identityExpired, type Authenticator, type Identity } from './auth';
import type { GraphQLContext } from './context';
import { AuthUnavailableError, ErrorCode, UnauthenticatedError } from './errors';
import type { RateLimits } from './rate-limits';
import { createSharedSubscribe } from './subscriptions';
import type { TrustedDocuments } from './trusted-documents';
import { WsOperations } from './ws-operations';
import type { Metrics } from '../metrics/metrics';
import { WsMeter } from '../metrics/ws-meter';
import { operationReporter } from './operation-log';
import { deliverDirectly } from './ws-direct';
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
  /** Which documents run (PERSISTED_DOCUMENTS); unset: any. */
  trusted?: TrustedDocuments;
  /** Connections, subscriptions and operations are reported here (GET /metrics). */
  metrics?: Metrics;
}): GraphqlWsServer {
  const { config, auth, limits } = opts;
  const wsPerUser = new Map<string, number>();
  const wss = new WebSocketServer({ server: opts.server, path: '/graphql', maxPayload: 64 * 1024 });
  // the same limits and error formatting as over HTTP; valid documents parsed once per distinct
  // text, and each event executed once per distinct operation, however many subscribers it has
  const operations = new WsOperations({ schema: opts.schema, config, logger: opts.logger, armor: opts.armor, trusted: opts.trusted });
  // each operation: a log line, and the metrics when they are on
  const meter = new WsMeter(operationReporter(opts.logger, opts.metrics), wss, opts.metrics);
  const wsServer = serveGraphqlWs<WsExtra & { identity?: Identity }>(
    {
      schema: opts.schema,
      jsonMessageReviver: operations.documents.reviver,
      onNext: meter.wrapNext(operations.onNext),
      onError: meter.wrapError(operations.onError),
      // subscriptions over the pub/sub are written to their sockets directly (ws-direct.ts)
      onOperation: (ctx, id, payload, args, result) => {
        meter.onOperation(ctx, id, payload, args, result);
        return deliverDirectly(result, ctx.extra.socket, id, {
          format: (r) => operations.formatEvent(r),
          maxBufferedBytes: config.limits.wsMaxBufferedBytes,
        });
      },
      subscribe: createSharedSubscribe(),
      // queries and mutations compiled by graphql-jit, as over HTTP
      execute: operations.execute,
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
          const { socket } = ctx.extra;
          // closed (or closing) while the token was verified, e.g. during a slow JWKS fetch: its
          // 'close' may have fired already, so counting it now could hold a slot forever
          if (socket.readyState !== socket.OPEN) return false;
          if (!identity) {
            socket.close(4401, 'Unauthorized');
            return false;
          }
          // counted only here, with the close listener attached in the same tick: nothing can
          // close the socket between the check above and the listener
          const open = wsPerUser.get(identity.userId) ?? 0;
          if (open >= config.limits.maxWsPerUser) {
            socket.close(4429, 'Too many connections for this user');
            return false;
          }
          wsPerUser.set(identity.userId, open + 1);
          socket.once('close', () => {
            const n = (wsPerUser.get(identity.userId) ?? 1) - 1;
            if (n > 0) wsPerUser.set(identity.userId, n);
            else wsPerUser.delete(identity.userId);
          });
          ctx.extra.identity = identity;
          // the connection lives as long as its token: closed at its expiry, which ends its
          // subscriptions; graphql-ws clients reconnect (4403), calling connectionParams again
          socket.once('close', atExpiry(identity, () => socket.close(4403, 'Forbidden: token expired')));
          meter.connected(ctx);
          return true;
        } catch (err) {
          if (err instanceof UnauthenticatedError) {
            ctx.extra.socket.close(4403, 'Forbidden');
            return false;
          }
          // the identity provider is down, not the token bad: 1013 (Try Again Later) is a code
          // graphql-ws clients retry, where 4500 would be fatal for them
          if (err instanceof AuthUnavailableError) {
            ctx.extra.socket.close(1013, 'Try again later: identity cannot be verified right now');
            return false;
          }
          throw err;
        }
      },
      onSubscribe: async (ctx, _id, payload) => {
        meter.start(payload, ctx.extra.identity?.userId);
        // a token that expired since connection_init starts nothing new; the client reconnects
        // with a fresh one (graphql-ws clients retry 4403, calling connectionParams again)
        if (identityExpired(ctx.extra.identity, Date.now())) {
          ctx.extra.socket.close(4403, 'Forbidden: token expired');
          return [new UnauthenticatedError('The token has expired')];
        }
        // the request limit covers subscription starts too; a connection holds a bounded number
        // (graphql-ws registers the operation being started before it calls onSubscribe)
        if (Object.keys(ctx.subscriptions).length - 1 >= config.limits.maxSubscriptionsPerConnection) {
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
            // as over HTTP: a failing check is this operation's error, not the connection's
            return [err instanceof GraphQLError ? err : new GraphQLError(String((err as Error)?.message), { originalError: err as Error })];
          }
        }
        return operations.prepare(payload);
      },
      context: (ctx) => opts.buildContext(ctx.extra.identity ?? null),
    },
    wss,
    { logger: opts.logger, keepAliveMs: config.limits.wsKeepAliveMs },
  );
  return { wss, dispose: () => wsServer.dispose() };
}
