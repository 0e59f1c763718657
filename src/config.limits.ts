import { int, type Env } from './config.env';

/** Abuse and resource limits (graphql/rate-limits.ts, the WebSocket server, HTTP, the pool, the model breaker). */
export interface LimitsConfig {
  /** sendMessage + retryReply per user and minute; 0 turns it off. @default 20 */
  sendsPerMinute: number;
  /** GraphQL operations per user and second; 0 turns it off. @default 30 */
  opsPerSecond: number;
  /** Downloads through `GET /files/:id` (local driver) per file owner and minute; 0 turns it off. @default 120 */
  downloadsPerMinute: number;
  /** `exportVision` per user and hour (each export stores a file of the whole path); 0 turns it off. @default 20 */
  exportsPerHour: number;
  /** Open WebSocket connections per user (per instance). @default 20 */
  maxWsPerUser: number;
  /** Active subscriptions per WebSocket connection. @default 50 */
  maxSubscriptionsPerConnection: number;
  /** A WebSocket that has not sent `connection_init` by then is closed (4408). @default 3000 */
  wsInitTimeoutMs: number;
  /** Ping interval; a WebSocket that did not answer the previous ping is terminated. @default 12000 */
  wsKeepAliveMs: number;
  /** Bytes a WebSocket may hold unsent (a client reading too slowly) before its next subscription event ends that subscription with an error. @default 1048576 */
  wsMaxBufferedBytes: number;
  /** Estimated bytes of valid WebSocket documents kept parsed (shared by identical texts); 0 keeps none. @default 4194304 */
  wsDocumentCacheBytes: number;
  /** Largest HTTP request body. @default 1048576 */
  maxBodyBytes: number;
  /** Time to receive the request headers. @default 10000 */
  headersTimeoutMs: number;
  /** Time for a whole HTTP request; longer than LLM_TIMEOUT_MS. @default LLM_TIMEOUT_MS + 30000 */
  requestTimeoutMs: number;
  /** Longest wait for a pooled connection, a new connection or a statement. @default 5000 */
  dbTimeoutMs: number;
  /** Failed model calls in the rolling minute before the breaker opens (at least half failing). @default 5 */
  breakerThreshold: number;
  /** How long an open breaker answers at once before probing again. @default 30000 */
  breakerCooldownMs: number;
}

export function loadLimitsConfig(env: Env, llmTimeoutMs: number): LimitsConfig {
  return {
    sendsPerMinute: int(env, 'RATE_LIMIT_SENDS_PER_MINUTE', 20, 0, 1_000_000),
    opsPerSecond: int(env, 'RATE_LIMIT_OPS_PER_SECOND', 30, 0, 1_000_000),
    downloadsPerMinute: int(env, 'RATE_LIMIT_DOWNLOADS_PER_MINUTE', 120, 0, 1_000_000),
    exportsPerHour: int(env, 'RATE_LIMIT_EXPORTS_PER_HOUR', 20, 0, 1_000_000),
    maxWsPerUser: int(env, 'MAX_WS_PER_USER', 20, 1, 100_000),
    maxSubscriptionsPerConnection: int(env, 'MAX_SUBSCRIPTIONS_PER_CONNECTION', 50, 1, 10_000),
    wsInitTimeoutMs: int(env, 'WS_INIT_TIMEOUT_MS', 3000, 100, 600_000),
    wsKeepAliveMs: int(env, 'WS_KEEPALIVE_MS', 12_000, 100, 600_000),
    wsMaxBufferedBytes: int(env, 'WS_MAX_BUFFERED_BYTES', 1024 * 1024, 16 * 1024, 1024 * 1024 * 1024),
    wsDocumentCacheBytes: int(env, 'WS_DOCUMENT_CACHE_BYTES', 4 * 1024 * 1024, 0, 1024 * 1024 * 1024),
    maxBodyBytes: int(env, 'MAX_BODY_BYTES', 1024 * 1024, 1024, 100 * 1024 * 1024),
    headersTimeoutMs: int(env, 'HTTP_HEADERS_TIMEOUT_MS', 10_000, 100, 600_000),
    requestTimeoutMs: int(env, 'HTTP_REQUEST_TIMEOUT_MS', llmTimeoutMs + 30_000, 1000, 3_600_000),
    dbTimeoutMs: int(env, 'DB_TIMEOUT_MS', 5000, 100, 600_000),
    breakerThreshold: int(env, 'LLM_BREAKER_THRESHOLD', 5, 1, 10_000),
    breakerCooldownMs: int(env, 'LLM_BREAKER_COOLDOWN_MS', 30_000, 100, 3_600_000),
  };
}
