import { createClient, type Client } from 'graphql-ws';
import { print } from 'graphql';
import type { TypedDocumentNode } from '@graphql-typed-document-node/core';
import WebSocket from 'ws';

export interface WsAuth {
  user?: string;
  token?: string;
}

/** A real graphql-ws client over a real WebSocket to the server's /graphql. */
export function wsClient(httpUrl: string, auth: WsAuth = {}, opts: { lazy?: boolean; retryAttempts?: number } = {}): Client {
  const url = httpUrl.replace(/^http/, 'ws') + '/graphql';
  return createClient({
    url,
    webSocketImpl: WebSocket,
    lazy: opts.lazy ?? true,
    retryAttempts: opts.retryAttempts ?? 0,
    connectionParams: () => ({
      ...(auth.user ? { 'x-user-id': auth.user } : {}),
      ...(auth.token ? { authorization: `Bearer ${auth.token}` } : {}),
    }),
  });
}

export interface Collected<T> {
  events: T[];
  errors: unknown[];
  /** Resolves once `n` events have arrived (rejects after `timeoutMs`). */
  waitFor(n: number, timeoutMs?: number): Promise<T[]>;
  /** Resolves when the subscription ends with an error or completes. */
  ended: Promise<void>;
  stop(): void;
}

/** Subscribes and collects every event. */
export function collect<T, V>(client: Client, doc: TypedDocumentNode<T, V>, variables: V): Collected<T> {
  const events: T[] = [];
  const errors: unknown[] = [];
  const waiters: { n: number; resolve: () => void }[] = [];
  let endResolve!: () => void;
  const ended = new Promise<void>((r) => (endResolve = r));
  const check = () => {
    for (const w of [...waiters]) if (events.length >= w.n) {
      waiters.splice(waiters.indexOf(w), 1);
      w.resolve();
    }
  };
  const unsubscribe = client.subscribe<T>(
    { query: print(doc), variables: variables as Record<string, unknown> },
    {
      next: (r) => {
        if (r.errors) errors.push(...r.errors);
        if (r.data) events.push(r.data as T);
        check();
      },
      error: (e) => {
        errors.push(e);
        endResolve();
      },
      complete: () => endResolve(),
    },
  );
  return {
    events,
    errors,
    ended,
    stop: unsubscribe,
    waitFor(n, timeoutMs = 10_000) {
      if (events.length >= n) return Promise.resolve(events);
      return new Promise((resolve, reject) => {
        const t = setTimeout(() => reject(new Error(`timed out waiting for ${n} events, got ${events.length}: ${JSON.stringify(errors)}`)), timeoutMs);
        waiters.push({ n, resolve: () => (clearTimeout(t), resolve(events)) });
      });
    },
  };
}
