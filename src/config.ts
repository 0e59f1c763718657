/**
 * Every environment variable the server reads, read once, validated, documented.
 * The entry point calls {@link loadConfig} with `process.env`; nothing else reads the environment.
 * README.md's configuration table mirrors this file.
 */
import { bool, ConfigError, int, str, timeZone, url, type Env } from './config.env';
import { loadFilesConfig, type FilesConfig } from './files/files.config';
import type { ModelPrice } from './tokenscount/prices';
import { loadBudgetsConfig, loadModelPrices } from './tokenscount/tokenscount.config';
import { loadSearchConfig, type SearchConfig } from './search/search.config';
import { loadMetricsConfig, type MetricsConfig } from './metrics/metrics.config';
import { loadPlaygroundConfig, type PlaygroundConfig } from './playground/playground.config';
import { loadDocumentsConfig, type DocumentsConfig } from './graphql/documents.config';
import { loadLimitsConfig, type LimitsConfig } from './config.limits';
import { loadCorsConfig, type CorsConfig } from './graphql/cors';

export { ConfigError } from './config.env';
export type { LimitsConfig } from './config.limits';

export type NodeEnv = 'production' | 'development' | 'test';

export interface AuthConfig {
  /** HS256 shared secret (AUTH_JWT_SECRET). */
  jwtSecret?: string;
  /** JWKS endpoint for RS256/ES256/... keys (AUTH_JWKS_URL). */
  jwksUrl?: string;
  /** Expected `iss` claim (AUTH_JWT_ISSUER). */
  issuer?: string;
  /** Expected `aud` claim (AUTH_JWT_AUDIENCE). */
  audience?: string;
  /** Claim that holds the user id (AUTH_USER_ID_CLAIM). @default "sub" */
  userIdClaim: string;
  /**
   * Clock skew allowed between the token issuer and this server, for `exp` and `nbf`
   * (AUTH_CLOCK_TOLERANCE_SECONDS, 0-300). @default 30
   */
  clockToleranceSeconds: number;
  /** True when neither a secret nor a JWKS URL is configured and NODE_ENV is not production. */
  devHeaderAllowed: boolean;
}

export interface Config {
  nodeEnv: NodeEnv;
  /** @default 4000 */
  port: number;
  /** @default "127.0.0.1" outside production, "0.0.0.0" in production */
  host: string;
  /** @default "info" ("warn" under NODE_ENV=test) */
  logLevel: string;
  /** Unset: embedded PostgreSQL under {@link dataDir}. */
  databaseUrl?: string;
  /** Where the embedded PostgreSQL keeps its cluster. @default ".data" */
  dataDir: string;
  /** Pool size of the PostgreSQL connection pool. @default 10 */
  dbPoolMax: number;
  /** Redis for pub/sub between instances; unset: in memory (one instance). */
  redisUrl?: string;
  /**
   * Longest wait for one Redis command (REDIS_COMMAND_TIMEOUT_MS); a connection silent this long
   * while a command waits is dropped and rebuilt. Redis is never awaited for longer. @default 1000
   */
  redisCommandTimeoutMs: number;
  /** On SIGTERM, how long running replies may finish before they are stopped. @default 10000 */
  shutdownGraceMs: number;
  auth: AuthConfig;
  /** IANA time zone for the default title "Визия от DD.MM.YYYY". @default "UTC" */
  titleTimeZone: string;
  /** History window and default page of Vision.messages. @default 50 */
  maxMessages: number;
  /** Largest `first`/`last`. @default 200 */
  maxPageSize: number;
  /** @default 200 */
  maxTitleChars: number;
  /** Serialized size limit of `meta`. @default 16384 */
  maxMetaBytes: number;
  llm: LlmConfig;
  dialog: DialogConfig;
  memory: MemoryConfig;
  search: SearchConfig;
  files: FilesConfig;
  /**
   * USER_DAILY_TOKEN_BUDGET / USER_MONTHLY_TOKEN_BUDGET: tokens a user may spend per UTC day /
   * month over every purpose (replies, summaries, embeddings); 0 turns a budget off. @default 0
   */
  budgets: { dayTokens: number; monthTokens: number };
  jobs: JobsConfig;
  limits: LimitsConfig;
  metrics: MetricsConfig;
  playground: PlaygroundConfig;
  documents: DocumentsConfig;
  cors: CorsConfig;
  graphql: {
    /** @default true */
    introspection: boolean;
    /** @default 10 */
    maxDepth: number;
    /** @default 15 */
    maxAliases: number;
    /** Values a document may ask for (fields × items of their pages). @default 150 × MAX_PAGE_SIZE */
    maxCost: number;
    /** @default 2000 */
    maxTokens: number;
    /** Adds the `x-sql-statements` response header (statements run by the request). @default false */
    exposeSqlStats: boolean;
    /** Queries over HTTP POST skip Apollo's request pipeline (src/graphql/http-lane.ts). @default true */
    queryLane: boolean;
  };
}

export interface LlmConfig {
  /** OPENAI_API_KEY; unset outside production: the offline responder answers. */
  apiKey?: string;
  /** OPENAI_BASE_URL: any OpenAI-compatible server (Ollama, vLLM, LM Studio, a proxy). */
  baseURL?: string;
  /** @default "gpt-4.1" */
  model: string;
  /** Written to tokenscount.provider. @default "openai" */
  provider: string;
  /** Whole model call, first byte to last. @default 60000 */
  timeoutMs: number;
  /** SDK retries, which happen only before the first byte of a reply. @default 2 */
  maxRetries: number;
  /** True when no key is set and NODE_ENV is not production. */
  offline: boolean;
  /**
   * MODEL_PRICES: USD per million tokens by model, over the dated default table
   * (tokenscount/prices.ts); a model with no price has a null cost. @default DEFAULT_PRICES
   */
  prices: Record<string, ModelPrice>;
}

export interface MemoryConfig {
  /** The most tokens one request to the model may carry, the reply's room included. @default 16000 */
  budgetTokens: number;
  /** Room kept for the reply within the budget. @default 2000 */
  replyReserveTokens: number;
  /** Longest rolling summary, in tokens. @default 1500 */
  summaryMaxTokens: number;
  /** SUMMARIES: keep a rolling summary of what left the window (model calls, metered). @default true */
  summaries: boolean;
}

export interface JobsConfig {
  /** Background jobs this process runs at once, per task. @default 2 */
  concurrency: number;
  /** A job still active after this long belongs to a dead process and is retried elsewhere. @default LLM_TIMEOUT_MS / 1000 + 60 */
  expireSeconds: number;
  /** How often expiry and retention run (on one instance at a time). @default 30 */
  maintenanceSeconds: number;
  /** How often an idle worker looks for jobs. @default 2 */
  pollSeconds: number;
  /** The first retry back-off step; it doubles per attempt. @default 5 */
  retryDelaySeconds: number;
}

export interface DialogConfig {
  /** @default 16000 */
  maxContentChars: number;
  /** VISION_SYSTEM_PROMPT; `{title}` is replaced by the vision's title. */
  systemPrompt: string;
  /** How often a growing reply is saved (and its heartbeat renewed). @default 1000 */
  flushMs: number;
  /** A STREAMING reply without a heartbeat for this long belongs to a dead process. @default 30000 */
  staleMs: number;
}

export const DEFAULT_SYSTEM_PROMPT =
  'You are a warm, practical coach. The person you talk to is working toward their vision: "{title}". ' +
  'Help them move toward it: ask clarifying questions, reflect what you hear, and suggest one concrete next step at a time. ' +
  'Answer in the language the person writes in. Be concise.';

/** Reads and validates the configuration; throws {@link ConfigError} with a clear message. */
export function loadConfig(env: Env): Config {
  const rawEnv = str(env, 'NODE_ENV') ?? 'development';
  // a typo such as "prod" must not silently mean development (dev identity header, offline model)
  if (rawEnv !== 'production' && rawEnv !== 'development' && rawEnv !== 'test') {
    throw new ConfigError(`NODE_ENV must be production, development or test; got "${rawEnv}"`);
  }
  const nodeEnv: NodeEnv = rawEnv;
  const production = nodeEnv === 'production';

  const jwtSecret = str(env, 'AUTH_JWT_SECRET');
  const jwksUrl = url(env, 'AUTH_JWKS_URL', ['https:', 'http:']);
  if (jwtSecret !== undefined && jwtSecret.length < 32) {
    throw new ConfigError('AUTH_JWT_SECRET must be at least 32 characters (256 bits for HS256)');
  }
  const hasJwt = jwtSecret !== undefined || jwksUrl !== undefined;
  if (production && !hasJwt) {
    throw new ConfigError(
      'NODE_ENV=production needs AUTH_JWT_SECRET or AUTH_JWKS_URL: the x-user-id development header is never accepted in production',
    );
  }

  const logLevel = str(env, 'LOG_LEVEL') ?? (nodeEnv === 'test' ? 'warn' : 'info');
  if (!['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'].includes(logLevel)) {
    throw new ConfigError(`LOG_LEVEL must be one of fatal, error, warn, info, debug, trace, silent; got "${logLevel}"`);
  }

  const apiKey = str(env, 'OPENAI_API_KEY');
  if (production && !apiKey) {
    throw new ConfigError(
      'NODE_ENV=production needs OPENAI_API_KEY (use any non-empty value for a keyless OPENAI_BASE_URL server): the offline responder is for development only',
    );
  }
  const llmTimeoutMs = int(env, 'LLM_TIMEOUT_MS', 60_000, 100, 600_000);
  const maxPageSize = int(env, 'MAX_PAGE_SIZE', 200, 1, 1000);
  const flushMs = int(env, 'REPLY_FLUSH_MS', 1000, 50, 10_000);
  const staleMs = int(env, 'REPLY_STALE_MS', 30_000, 1000, 3_600_000);
  if (staleMs < flushMs * 3) throw new ConfigError('REPLY_STALE_MS must be at least three times REPLY_FLUSH_MS');

  const budgetTokens = int(env, 'CONTEXT_TOKEN_BUDGET', 16_000, 200, 2_000_000);
  const replyReserveTokens = int(env, 'REPLY_TOKEN_RESERVE', 2000, 0, 1_000_000);
  const summaryMaxTokens = int(env, 'SUMMARY_MAX_TOKENS', 1500, 16, 100_000);
  // what is left must hold the system prompt, the summary and at least the latest message
  if (budgetTokens < replyReserveTokens + summaryMaxTokens + 100) {
    throw new ConfigError('CONTEXT_TOKEN_BUDGET must be at least REPLY_TOKEN_RESERVE + SUMMARY_MAX_TOKENS + 100');
  }

  const jobsExpireSeconds = int(env, 'JOBS_EXPIRE_SECONDS', Math.ceil(llmTimeoutMs / 1000) + 60, 1, 86_400);
  // a job expired while its model call still runs would be run twice
  if (jobsExpireSeconds * 1000 <= llmTimeoutMs) throw new ConfigError('JOBS_EXPIRE_SECONDS must be longer than LLM_TIMEOUT_MS');

  return {
    nodeEnv,
    port: int(env, 'PORT', 4000, 0, 65535),
    host: str(env, 'HOST') ?? (production ? '0.0.0.0' : '127.0.0.1'),
    logLevel,
    databaseUrl: url(env, 'DATABASE_URL', ['postgres:', 'postgresql:']),
    dataDir: str(env, 'DATA_DIR') ?? '.data',
    dbPoolMax: int(env, 'DB_POOL_MAX', 10, 1, 1000),
    redisUrl: url(env, 'REDIS_URL', ['redis:', 'rediss:']),
    redisCommandTimeoutMs: int(env, 'REDIS_COMMAND_TIMEOUT_MS', 1000, 50, 60_000),
    shutdownGraceMs: int(env, 'SHUTDOWN_GRACE_MS', 10_000, 0, 600_000),
    auth: {
      jwtSecret,
      jwksUrl,
      issuer: str(env, 'AUTH_JWT_ISSUER'),
      audience: str(env, 'AUTH_JWT_AUDIENCE'),
      userIdClaim: str(env, 'AUTH_USER_ID_CLAIM') ?? 'sub',
      clockToleranceSeconds: int(env, 'AUTH_CLOCK_TOLERANCE_SECONDS', 30, 0, 300),
      devHeaderAllowed: !hasJwt && !production,
    },
    titleTimeZone: timeZone(env, 'TITLE_TIME_ZONE', 'UTC'),
    maxMessages: int(env, 'MAX_MESSAGES', 50, 1, 1000),
    maxPageSize,
    maxTitleChars: int(env, 'MAX_TITLE_CHARS', 200, 1, 10000),
    maxMetaBytes: int(env, 'MAX_META_BYTES', 16384, 2, 1048576),
    llm: {
      apiKey,
      baseURL: url(env, 'OPENAI_BASE_URL', ['http:', 'https:']),
      model: str(env, 'OPENAI_MODEL') ?? 'gpt-4.1',
      provider: str(env, 'LLM_PROVIDER') ?? 'openai',
      timeoutMs: llmTimeoutMs,
      maxRetries: int(env, 'LLM_MAX_RETRIES', 2, 0, 10),
      offline: !apiKey,
      prices: loadModelPrices(env),
    },
    dialog: {
      maxContentChars: int(env, 'MAX_CONTENT_CHARS', 16_000, 1, 1_000_000),
      systemPrompt: str(env, 'VISION_SYSTEM_PROMPT') ?? DEFAULT_SYSTEM_PROMPT,
      flushMs,
      staleMs,
    },
    memory: { budgetTokens, replyReserveTokens, summaryMaxTokens, summaries: bool(env, 'SUMMARIES', true) },
    search: loadSearchConfig(env),
    files: loadFilesConfig(env, production),
    budgets: loadBudgetsConfig(env),
    metrics: loadMetricsConfig(env),
    playground: loadPlaygroundConfig(env, production),
    documents: loadDocumentsConfig(env),
    cors: loadCorsConfig(env),
    jobs: {
      concurrency: int(env, 'JOBS_CONCURRENCY', 2, 1, 100),
      expireSeconds: jobsExpireSeconds,
      maintenanceSeconds: int(env, 'JOBS_MAINTENANCE_SECONDS', 30, 1, 3600),
      pollSeconds: int(env, 'JOBS_POLL_SECONDS', 2, 1, 600),
      retryDelaySeconds: int(env, 'JOBS_RETRY_DELAY_SECONDS', 5, 1, 3600),
    },
    limits: loadLimitsConfig(env, llmTimeoutMs),
    graphql: {
      introspection: bool(env, 'GRAPHQL_INTROSPECTION', true),
      maxDepth: int(env, 'GRAPHQL_MAX_DEPTH', 10, 1, 100),
      maxAliases: int(env, 'GRAPHQL_MAX_ALIASES', 15, 0, 1000),
      // the largest page of every connection, all fields, must pass (see createArmor)
      maxCost: int(env, 'GRAPHQL_MAX_COST', 150 * maxPageSize, 1, 100_000_000),
      maxTokens: int(env, 'GRAPHQL_MAX_TOKENS', 2000, 10, 100000),
      exposeSqlStats: bool(env, 'EXPOSE_SQL_STATS', false),
      queryLane: bool(env, 'GRAPHQL_QUERY_LANE', true),
    },
  };
}
