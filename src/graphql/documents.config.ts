import { bool, int, str, type Env } from '../config.env';
import { readPersistedManifest, type PersistedManifest } from './persisted-manifest';

/** Which documents the server accepts and how (graphql/trusted-documents.ts, graphql/sse.ts). */
export interface DocumentsConfig {
  /** APQ: automatic persisted queries (Apollo Client's persisted-queries link); the cache is Redis when REDIS_URL is set. @default true */
  apq: boolean;
  /** APQ_TTL_SECONDS: how long a registered document is kept. @default 86400 */
  apqTtlSeconds: number;
  /**
   * PERSISTED_DOCUMENTS: path of a manifest (GraphQL Codegen client preset's
   * `persisted-documents.json` or an Apollo persisted query manifest); when set, only its documents
   * run, over HTTP, WebSocket and SSE; any other is refused (BAD_USER_INPUT, reason PERSISTED_QUERY_NOT_IN_LIST).
   */
  persistedDocuments?: string;
  /** The manifest at `persistedDocuments`, read and checked at start (a bad file stops the start). */
  persistedManifest?: PersistedManifest;
  /** SSE: subscriptions over Server-Sent Events (graphql-sse) at `/graphql/stream`. @default true */
  sse: boolean;
}

export function loadDocumentsConfig(env: Env): DocumentsConfig {
  const persistedDocuments = str(env, 'PERSISTED_DOCUMENTS');
  return {
    apq: bool(env, 'APQ', true),
    apqTtlSeconds: int(env, 'APQ_TTL_SECONDS', 86_400, 1, 365 * 86_400),
    persistedDocuments,
    persistedManifest: persistedDocuments ? readPersistedManifest(persistedDocuments) : undefined,
    sse: bool(env, 'SSE', true),
  };
}
