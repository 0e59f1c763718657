import { CloseCode, handleProtocols, makeServer, type ServerOptions } from 'graphql-ws';
import type { WebSocket, WebSocketServer } from 'ws';
import type { Logger } from '../logger';

/** What each graphql-ws connection context carries in `extra`. */
export interface WsExtra {
  socket: WebSocket;
}

/**
 * graphql-ws (`makeServer`, its transport-neutral core) on a `ws` server. It does what
 * `graphql-ws/use/ws` does, with less kept per connection, because a subscription fleet is
 * thousands of idle connections:
 * - the HTTP upgrade request is not kept for the connection's lifetime (`extra` holds only the
 *   socket; identity comes from `connectionParams`);
 * - one keep-alive timer pings every socket and terminates those that did not answer the last
 *   ping, instead of a timer (and a pong listener per ping) per socket.
 */
export function serveGraphqlWs<E extends WsExtra>(
  options: ServerOptions<Record<string, unknown> | undefined, E>,
  wss: WebSocketServer,
  opts: { logger: Logger; keepAliveMs?: number; extra?: (socket: WebSocket) => Omit<E, 'socket'> },
): { dispose(): Promise<void> } {
  const server = makeServer<Record<string, unknown> | undefined, E>(options);
  const { logger } = opts;
  wss.options.handleProtocols = handleProtocols;

  const internalError = (socket: WebSocket, err: unknown, what: string) => {
    logger.error({ err }, `internal error ${what}`);
    if (socket.readyState === socket.OPEN || socket.readyState === socket.CONNECTING) {
      socket.close(CloseCode.InternalServerError, 'Internal server error');
    }
  };

  // sockets that answered the last ping; `this` is the socket (no closure per socket)
  const alive = new WeakSet<WebSocket>();
  function onPong(this: WebSocket) {
    alive.add(this);
  }
  const keepAliveMs = opts.keepAliveMs ?? 12_000;
  const pinger =
    keepAliveMs > 0
      ? setInterval(() => {
          for (const socket of wss.clients) {
            if (socket.readyState !== socket.OPEN) continue;
            if (!alive.has(socket)) {
              socket.terminate();
              continue;
            }
            alive.delete(socket);
            socket.ping();
          }
        }, keepAliveMs)
      : undefined;
  pinger?.unref();

  wss.on('error', (err) => logger.error({ err }, 'WebSocket server error'));
  wss.on('connection', (socket) => {
    alive.add(socket);
    socket.on('pong', onPong);
    socket.once('error', (err) => internalError(socket, err, 'on a WebSocket'));
    const closed = server.opened(
      {
        protocol: socket.protocol,
        send: (data) =>
          new Promise<void>((resolve, reject) => {
            if (socket.readyState !== socket.OPEN) return resolve();
            socket.send(data, (err) => (err ? reject(err) : resolve()));
          }),
        close: (code, reason) => socket.close(code, reason),
        onMessage: (cb) =>
          socket.on('message', (data) => {
            cb(String(data)).catch((err) => internalError(socket, err, 'handling a WebSocket message'));
          }),
      },
      { socket, ...opts.extra?.(socket) } as E,
    );
    socket.once('close', (code, reason) => {
      void closed(code, String(reason)).catch((err) => logger.error({ err }, 'internal error closing a WebSocket'));
    });
  });

  return {
    async dispose() {
      if (pinger) clearInterval(pinger);
      for (const socket of wss.clients) socket.close(1001, 'Going away');
      wss.removeAllListeners('connection');
    },
  };
}
