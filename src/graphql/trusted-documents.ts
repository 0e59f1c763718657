import type { ApolloServerPlugin, BaseContext, GraphQLRequest } from '@apollo/server';
import type { Redis } from 'ioredis';
import type { Logger } from '../logger';
import { RedisApqCache, type StringKeyValueCache } from './apq-cache';
import type { DocumentsConfig } from './documents.config';
import { AppError, ErrorCode } from './errors';
import { sha256Hex, type PersistedManifest } from './persisted-manifest';

/** `extensions.reason` of a document refused by the safelist (PERSISTED_DOCUMENTS). */
export const NOT_IN_LIST = 'PERSISTED_QUERY_NOT_IN_LIST';

/**
 * A document the server will not run: BAD_USER_INPUT with `extensions.reason` saying why
 * ({@link NOT_IN_LIST}, PERSISTED_QUERY_HASH_MISMATCH, …), HTTP 400. Nothing of it was parsed or
 * executed.
 */
export class DocumentRefusedError extends AppError {
  constructor(message: string, reason: string) {
    super(message, ErrorCode.BAD_USER_INPUT, { reason }, 400);
  }
}

/**
 * What a refused HTTP request runs through Apollo's pipeline instead of the client's document, so
 * that the refusal is answered in `didResolveOperation` (a plugin error thrown any earlier becomes
 * a masked 500): it is never executed, and its name marks the request in the operation log.
 */
const REFUSED_DOCUMENT = 'query RefusedDocument { __typename }';

interface PersistedQueryExtension {
  version?: unknown;
  sha256Hash?: unknown;
}

/**
 * Which documents run, for every transport (HTTP, WebSocket, SSE):
 * - default: any valid document; over HTTP also automatic persisted queries (APQ: Apollo Client's
 *   persisted-queries link sends a SHA-256 hash, and the text only when the server answers
 *   PERSISTED_QUERY_NOT_FOUND), with the cache in Redis when REDIS_URL is set;
 * - safelist (PERSISTED_DOCUMENTS): only the manifest's documents, named by id
 *   (`extensions.persistedQuery.sha256Hash` or GraphQL Codegen's `documentId`) or sent as their
 *   exact text; anything else, introspection included, is refused with BAD_USER_INPUT, reason
 *   {@link NOT_IN_LIST}, before it is parsed. APQ registration is off: a client cannot add documents.
 */
export class TrustedDocuments {
  constructor(
    private readonly opts: {
      /** The safelist; unset: any document. */
      manifest?: PersistedManifest;
      /** Automatic persisted queries over HTTP (ignored with a safelist). */
      apq: boolean;
      /** Seconds a registered APQ document is kept. */
      apqTtlSeconds: number;
      /** Where APQ documents are kept; unset: Apollo's in-process cache (one instance). */
      apqCache?: StringKeyValueCache;
    },
  ) {}

  /** True when only the manifest's documents run. */
  get safelist(): boolean {
    return this.opts.manifest !== undefined;
  }

  /** Documents in the safelist (0 without one). */
  get size(): number {
    return this.opts.manifest?.byId.size ?? 0;
  }

  /** Apollo Server's `persistedQueries` option: APQ on, unless it is turned off or a safelist is in force. */
  get persistedQueries(): { cache?: StringKeyValueCache; ttl: number } | false {
    if (this.safelist || !this.opts.apq) return false;
    return { ...(this.opts.apqCache ? { cache: this.opts.apqCache } : {}), ttl: this.opts.apqTtlSeconds };
  }

  /**
   * The text to run for an operation of a transport that has no APQ step (WebSocket, SSE), from
   * what the client sent: `query` (graphql-ws demands a string: "" with a hash means "by hash"),
   * `extensions` (`persistedQuery: { version: 1, sha256Hash }`) and `documentId` (GraphQL Codegen).
   * Throws a {@link DocumentRefusedError} for a document that must not run. Without a safelist
   * the text comes back as sent ("" when there is none: a syntax error, as before).
   */
  resolve(query: string | undefined, extensions: unknown, documentId?: unknown): string {
    const text = this.check(query, extensions, documentId);
    if (text !== undefined) return text;
    if (persistedQueryOf(extensions)) {
      throw new DocumentRefusedError(
        'A persisted query hash without its document is accepted over HTTP only (automatic persisted queries); send the document',
        'PERSISTED_QUERY_NOT_SUPPORTED',
      );
    }
    return query ?? '';
  }

  /**
   * The text an HTTP POST body runs when no asynchronous step or refusal is involved, for the
   * query lane (http-lane.ts); `undefined` leaves the request to Apollo: a refusal, and without a
   * safelist any `persistedQuery` extension (APQ looks a hash up and registers texts).
   */
  plainText(query: unknown, extensions: unknown, documentId: unknown): string | undefined {
    if (query !== undefined && typeof query !== 'string') return undefined;
    if (!this.safelist) return persistedQueryOf(extensions) || !query ? undefined : query;
    try {
      return this.check(query, extensions, documentId);
    } catch (err) {
      if (err instanceof DocumentRefusedError) return undefined;
      throw err;
    }
  }

  /**
   * {@link resolve} for HTTP: `undefined` leaves the request to Apollo (its APQ step looks a hash
   * up, and a request with neither text nor hash gets its BAD_REQUEST).
   */
  check(query: string | undefined, extensions: unknown, documentId?: unknown): string | undefined {
    const text = query === '' ? undefined : query;
    const pq = persistedQueryOf(extensions);
    const manifest = this.opts.manifest;
    if (!manifest) {
      // Apollo's own answers to these carry no code (an INTERNAL_SERVER_ERROR for the contract)
      if (pq && this.opts.apq) {
        if (pq.version !== 1) throw new DocumentRefusedError('Unsupported persisted query version', 'PERSISTED_QUERY_VERSION_NOT_SUPPORTED');
        if (typeof pq.sha256Hash !== 'string') throw new DocumentRefusedError('persistedQuery.sha256Hash must be a string', 'PERSISTED_QUERY_BAD_HASH');
        if (text !== undefined && sha256Hex(text) !== pq.sha256Hash) {
          throw new DocumentRefusedError('provided sha does not match query', 'PERSISTED_QUERY_HASH_MISMATCH');
        }
      }
      return text;
    }
    if (text !== undefined) {
      if (manifest.byTextHash.has(sha256Hex(text))) return text;
      throw new DocumentRefusedError('This document is not in the list of persisted documents this server runs', NOT_IN_LIST);
    }
    const id = typeof pq?.sha256Hash === 'string' ? pq.sha256Hash : typeof documentId === 'string' ? documentId : undefined;
    if (id === undefined) {
      throw new DocumentRefusedError('No document: send the id of a persisted document (or its text)', NOT_IN_LIST);
    }
    // ids are usually the SHA-256 of the body, but a manifest may use its own (codegen can hash with
    // SHA-1 or a function); GraphQL over HTTP's persisted documents appendix writes "sha256:<hex>"
    const body = manifest.byId.get(id) ?? manifest.byTextHash.get(id.startsWith('sha256:') ? id.slice(7) : id);
    if (body === undefined) throw new DocumentRefusedError('No persisted document has this id', NOT_IN_LIST);
    return body;
  }

  /**
   * The Apollo Server plugin: its `requestDidStart` runs before Apollo reads the request's text
   * and before its APQ step (requestPipeline.ts), so a safelisted id becomes the document's text
   * there, and a refused request never reaches parsing, APQ registration or execution. Install it
   * first, so that no other plugin sees the request before it.
   */
  apolloPlugin<T extends BaseContext>(): ApolloServerPlugin<T> {
    return {
      requestDidStart: async ({ request }) => {
        try {
          const text = this.check(request.query, request.extensions, this.safelist ? documentIdOf(request) : undefined);
          if (this.safelist) {
            request.query = text;
            request.extensions = withoutPersistedQuery(request.extensions);
          }
          return undefined;
        } catch (err) {
          if (!(err instanceof DocumentRefusedError)) throw err;
          request.query = REFUSED_DOCUMENT;
          request.operationName = undefined;
          request.variables = undefined;
          request.extensions = withoutPersistedQuery(request.extensions);
          return {
            didResolveOperation: async () => {
              throw err;
            },
          };
        }
      },
    };
  }
}

/** The server's {@link TrustedDocuments}: the safelist when PERSISTED_DOCUMENTS is set, APQ in Redis when REDIS_URL is. */
export function createTrustedDocuments(opts: { config: DocumentsConfig; redis?: Redis; logger: Logger }): TrustedDocuments {
  const { config, redis, logger } = opts;
  const manifest = config.persistedManifest;
  const trusted = new TrustedDocuments({
    manifest,
    apq: config.apq,
    apqTtlSeconds: config.apqTtlSeconds,
    apqCache: redis ? new RedisApqCache(redis, logger) : undefined,
  });
  if (manifest) {
    logger.info(
      { file: config.persistedDocuments, format: manifest.format, documents: trusted.size },
      'safelist: only the persisted documents of PERSISTED_DOCUMENTS run (APQ registration off)',
    );
  } else if (config.apq) {
    logger.info({ cache: redis ? 'redis' : 'memory', ttlSeconds: config.apqTtlSeconds }, 'automatic persisted queries on');
  }
  return trusted;
}

function persistedQueryOf(extensions: unknown): PersistedQueryExtension | undefined {
  if (extensions === null || typeof extensions !== 'object') return undefined;
  const pq = (extensions as { persistedQuery?: unknown }).persistedQuery;
  return pq !== null && typeof pq === 'object' ? (pq as PersistedQueryExtension) : undefined;
}

function withoutPersistedQuery(extensions: Record<string, unknown> | undefined): Record<string, unknown> | undefined {
  if (!extensions || !('persistedQuery' in extensions)) return extensions;
  const { persistedQuery: _pq, ...rest } = extensions;
  return rest;
}

/** GraphQL Codegen's `documentId`: a POST body field or a GET search parameter (Apollo keeps neither). */
function documentIdOf(request: GraphQLRequest): unknown {
  const http = request.http;
  if (!http) return undefined;
  if (http.method === 'GET') return new URLSearchParams(http.search).get('documentId') ?? undefined;
  const body = http.body as Record<string, unknown> | null | undefined;
  return body && typeof body === 'object' ? body.documentId : undefined;
}
