import { print } from 'graphql';
import type { TypedDocumentNode } from '@graphql-typed-document-node/core';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { loadConfig } from '../../src/config';
import { openDatabaseFor, type Database } from '../../src/db/database';
import { startServer, type AppServer } from '../../src/server';
import { testDatabaseUrl } from './db';

export interface GqlResult<T> {
  status: number;
  headers: Headers;
  data?: T | null;
  errors?: { message: string; path?: string[]; extensions?: Record<string, any> }[];
}

export interface Auth {
  /** Development identity header. */
  user?: string;
  /** Bearer token. */
  token?: string;
  headers?: Record<string, string>;
}

export interface TestServer {
  url: string;
  graphqlUrl: string;
  db: Database;
  server: AppServer;
  gql<T, V>(doc: TypedDocumentNode<T, V> | string, variables?: V, auth?: Auth): Promise<GqlResult<T>>;
  /** SQL against the run's database through the server's own pool. */
  sql<R = Record<string, any>>(query: string, params?: unknown[]): Promise<R[]>;
  stop(): Promise<void>;
}

/**
 * Starts the real server in this process on a free port, against the run's PostgreSQL.
 * `env` is what the server would read from the environment.
 */
export async function startTestServer(env: Record<string, string> = {}, opts: { onLog?: (entry: Record<string, any>) => void } = {}): Promise<TestServer> {
  const config = loadConfig({
    NODE_ENV: 'test',
    PORT: '0',
    HOST: '127.0.0.1',
    DATABASE_URL: testDatabaseUrl(),
    DB_POOL_MAX: '5',
    EXPOSE_SQL_STATS: 'true',
    // limits are tested on purpose (test/abuse.test.ts); elsewhere fast loops must not trip them
    RATE_LIMIT_OPS_PER_SECOND: '0',
    RATE_LIMIT_SENDS_PER_MINUTE: '0',
    RATE_LIMIT_DOWNLOADS_PER_MINUTE: '0',
    RATE_LIMIT_EXPORTS_PER_HOUR: '0',
    // embedding jobs add metered rows in the background; tests of search and recall turn them on
    EMBEDDINGS: 'false',
    // files of test servers stay out of the developer's .data/files
    FILE_DIR: testFileDir(),
    // NODE_ENV=production (some suites) needs one with local files
    FILE_URL_SECRET: 'test-file-url-secret-0123456789abcdef',
    ...env,
  });
  // onLog: the server's log lines (info and above) as objects, for tests that check what was logged
  const logger = opts.onLog
    ? pino({ level: 'info' }, { write: (line: string) => opts.onLog!(JSON.parse(line)) })
    : pino({ level: process.env.VP_TEST_LOG_LEVEL ?? 'silent' });
  const db = await openDatabaseFor(config, logger);
  const server = await startServer({ config, logger, db });
  const graphqlUrl = `${server.url}/graphql`;
  return {
    url: server.url,
    graphqlUrl,
    db,
    server,
    gql: (doc, variables, auth) => postGraphQL(graphqlUrl, typeof doc === 'string' ? doc : print(doc), variables, auth),
    sql: (query, params = []) => db.orm.em.getConnection().execute(query, params as any[]),
    async stop() {
      await server.stop();
      await db.close();
    },
  };
}

/** One directory for the files of this run's test servers (removed by the global teardown). */
export function testFileDir(): string {
  return join(tmpdir(), `vp-test-files-${process.pid}`);
}

export async function postGraphQL<T>(url: string, query: string, variables?: unknown, auth: Auth = {}): Promise<GqlResult<T>> {
  const headers: Record<string, string> = { 'content-type': 'application/json', ...auth.headers };
  if (auth.user) headers['x-user-id'] = auth.user;
  if (auth.token) headers.authorization = `Bearer ${auth.token}`;
  const res = await fetch(url, { method: 'POST', headers, body: JSON.stringify({ query, variables }) });
  const text = await res.text();
  let body: { data?: T; errors?: GqlResult<T>['errors'] };
  try {
    body = JSON.parse(text);
  } catch {
    throw new Error(`non-JSON response ${res.status}: ${text.slice(0, 200)}`);
  }
  return { status: res.status, headers: res.headers, data: body.data, errors: body.errors };
}

/** The single error code of a response (fails loudly when there is none). */
export function errorCode(r: GqlResult<unknown>): string {
  if (!r.errors?.length) throw new Error(`expected an error, got ${JSON.stringify(r.data)}`);
  return String(r.errors[0]!.extensions?.code);
}

let counter = 0;
/** A user id unique to this test run. */
export function newUser(label = 'user'): string {
  counter++;
  return `${label}-${process.pid}-${Date.now().toString(36)}-${counter}`;
}
