import { getOperationAST, type ExecutionArgs, type GraphQLError, type OperationDefinitionNode } from 'graphql';
import type { WebSocket, WebSocketServer } from 'ws';
import type { OperationReport } from '../graphql/operation-log';
import type { Metrics } from './metrics';

/** The part of a graphql-ws connection context the meter reads. */
interface WsSession {
  extra: { socket: WebSocket };
  /** graphql-ws's operations of the connection: `null` while one starts, its iterator while a subscription runs. */
  subscriptions: Record<string, unknown>;
}

interface Pending {
  started: number;
  userId?: string;
  operation?: OperationDefinitionNode | null;
}

// graphql-ws's hook signatures, whatever its connection context type
type OnNext = (ctx: any, id: string, payload: any, args: any, result: any) => unknown;
type OnError = (ctx: any, id: string, payload: any, errors: readonly GraphQLError[]) => unknown;

const isAsyncIterable = (v: unknown): boolean => typeof v === 'object' && v !== null && Symbol.asyncIterator in v;

/**
 * Operations over graphql-ws, each reported once (a log line, and the metrics when they are on),
 * as over HTTP: a query or mutation with its result's first error code, a subscription when it
 * starts (or is refused). With metrics, connections and running subscriptions are read from the
 * server at scrape time. Operations are
 * known by their subscribe payload (graphql-ws passes the same object to every hook), in a
 * WeakMap, so nothing needs cleaning when a client goes away mid-operation.
 */
export class WsMeter {
  private readonly sessions = new WeakMap<WebSocket, WsSession>();
  private readonly pending = new WeakMap<object, Pending>();

  constructor(
    private readonly report: (o: OperationReport) => void,
    wss: WebSocketServer,
    metrics?: Metrics,
  ) {
    metrics?.watch({
      webSockets: () => {
        let subscriptions = 0;
        for (const socket of wss.clients) {
          const session = this.sessions.get(socket);
          if (session) for (const op of Object.values(session.subscriptions)) if (isAsyncIterable(op)) subscriptions++;
        }
        return { connections: wss.clients.size, subscriptions };
      },
    });
  }

  /** graphql-ws `onConnect` accepted the connection. */
  connected(ctx: WsSession): void {
    this.sessions.set(ctx.extra.socket, ctx);
  }

  /** First thing in graphql-ws `onSubscribe`; `userId`: the connection's user. */
  start(payload: object, userId: string | undefined): void {
    this.pending.set(payload, { started: performance.now(), userId });
  }

  /** graphql-ws `onOperation`: a subscription counts as it starts; a result waits for its formatted errors. */
  readonly onOperation = (_ctx: unknown, _id: string, payload: object, args: ExecutionArgs, result: unknown): undefined => {
    const p = this.pending.get(payload);
    if (!p) return undefined;
    p.operation = getOperationAST(args.document, args.operationName);
    if (isAsyncIterable(result)) this.count(payload, p, undefined);
    return undefined;
  };

  /** Wraps graphql-ws `onNext`: counts the first result of a query or mutation. */
  wrapNext<F extends OnNext>(onNext: F): F {
    return ((ctx, id, payload, args, result) => {
      const out = onNext(ctx, id, payload, args, result);
      const p = this.pending.get(payload);
      // events of running subscriptions were counted when they started: one lookup, nothing else
      if (p) this.count(payload, p, firstCode(out ?? result));
      return out;
    }) as F;
  }

  /** Wraps graphql-ws `onError`: counts refused operations (limits, documents, identity). */
  wrapError<F extends OnError>(onError: F): F {
    return ((ctx, id, payload, errors) => {
      const out = onError(ctx, id, payload, errors);
      const p = this.pending.get(payload);
      const shown = (Array.isArray(out) ? out : errors) as readonly { extensions?: Record<string, unknown> }[];
      if (p) this.count(payload, p, shown[0]?.extensions?.code ?? 'INTERNAL_SERVER_ERROR');
      return out;
    }) as F;
  }

  private count(payload: object, p: Pending, code: unknown): void {
    this.pending.delete(payload);
    this.report({ operation: p.operation, code, transport: 'ws', seconds: (performance.now() - p.started) / 1000, userId: p.userId });
  }
}

function firstCode(result: unknown): unknown {
  const errors = (result as { errors?: readonly { extensions?: Record<string, unknown> }[] } | undefined)?.errors;
  if (!errors?.length) return undefined;
  return errors[0]!.extensions?.code ?? 'INTERNAL_SERVER_ERROR';
}
