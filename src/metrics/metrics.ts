import type { OperationDefinitionNode } from 'graphql';
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { Logger } from '../logger';
import { BoundedLabel } from './labels';
import type { MetricsConfig } from './metrics.config';

/** Distinct operation names with a series of their own; later names count as `other`. */
export const MAX_OPERATION_NAMES = 100;
/** Longest wait for the job queue's depth during a scrape; past it the depth is left out. */
const JOBS_TIMEOUT_MS = 1000;

/** What the scrape reads from the running server (each optional: tests build parts alone). */
export interface MetricsSources {
  /** Replies this process is generating now. */
  replies?: () => number;
  /** The PostgreSQL pool now; undefined while it has none. */
  pool?: () => PoolUsage | undefined;
  /** Jobs per task; bounded by a timeout at scrape time, concurrent scrapes share one look-up. */
  jobs?: () => Promise<{ name: string; waiting: number; active: number }[]>;
  /** WebSocket connections open now, and subscriptions running on them. */
  webSockets?: () => { connections: number; subscriptions: number };
}

export interface PoolUsage {
  used: number;
  free: number;
  /** Borrowers waiting for a connection. */
  pending: number;
  max: number;
}

/** One finished model call, as the metering wrapper reports it (tokenscount/). */
export interface ModelCallReport {
  /** `meta.purpose` of its tokenscount row: reply, summary, embedding, … */
  purpose: unknown;
  /** complete, stopped, or the failure reason (timeout, rate_limited, upstream_error, bad_response). */
  outcome: string;
  seconds: number;
  /** Until the first piece of content or tool call (streamed calls that produced one). */
  firstTokenSeconds?: number;
  promptTokens: number;
  completionTokens: number;
  /** True when the provider reported no usage and the counts are the tokenizer's. */
  estimated: boolean;
}

export type Transport = 'http' | 'ws' | 'sse';

const OPERATION_TYPES = new Set(['query', 'mutation', 'subscription']);

/**
 * Node's process metrics (CPU, memory, event loop, GC) are the process's, however many servers
 * it runs (tests start several): one registry for them per process, created on first use,
 * because their collectors (GC observer, event-loop histogram) cannot be stopped.
 */
let processRegistry: Registry | undefined;
function processMetrics(): Registry {
  if (!processRegistry) {
    processRegistry = new Registry();
    collectDefaultMetrics({ register: processRegistry });
  }
  return processRegistry;
}

/**
 * The Prometheus metrics of one server, in a registry of its own (never prom-client's global
 * one: several servers may share a process). Counters and histograms are fed by hooks
 * (operations, model calls); everything that is a state (replies in flight, sockets, the pool,
 * the job queue) is read from {@link MetricsSources} at scrape time.
 */
export class Metrics {
  readonly registry = new Registry();
  private sources: MetricsSources = {};
  private readonly names: BoundedLabel;
  private readonly codes = new BoundedLabel(30, 'OTHER', /^[A-Z][A-Z0-9_]{0,39}$/);
  private readonly purposes = new BoundedLabel(20, 'other', /^[a-z][a-z0-9_]{0,31}$/);
  private readonly outcomes = new BoundedLabel(20, 'other', /^[a-z][a-z0-9_]{0,31}$/);
  private readonly queues = new BoundedLabel(50, 'other', /^[\w.:/-]{1,64}$/);
  private jobsLookup?: Promise<{ name: string; waiting: number; active: number }[]>;

  private readonly operations: Counter<'operation' | 'type' | 'code' | 'transport'>;
  private readonly operationSeconds: Histogram<'operation' | 'type' | 'transport'>;
  private readonly modelCalls: Counter<'purpose' | 'outcome'>;
  private readonly modelSeconds: Histogram<'purpose' | 'outcome'>;
  private readonly firstTokenSeconds: Histogram<'purpose'>;
  private readonly tokens: Counter<'purpose' | 'kind' | 'source'>;
  private readonly collectErrors: Counter<'source'>;
  private readonly httpResponses: Counter<'route' | 'status'>;
  private readonly routes = new BoundedLabel(30, 'other', /^\/[\w/:.*-]{0,63}$/);
  private readonly statuses = new BoundedLabel(40, 'other', /^[1-5]\d\d$/);

  constructor(opts: { maxOperationNames?: number; logger?: Logger } = {}) {
    const maxNames = opts.maxOperationNames ?? MAX_OPERATION_NAMES;
    this.names = new BoundedLabel(maxNames);
    const registers = [this.registry];
    this.operations = new Counter({
      name: 'visionpath_graphql_operations_total',
      help: `GraphQL operations by name (the first ${maxNames} distinct, then "other"; "anonymous"; "unknown" when the document did not resolve), type, error code ("OK" without errors) and transport`,
      labelNames: ['operation', 'type', 'code', 'transport'],
      registers,
    });
    this.operationSeconds = new Histogram({
      name: 'visionpath_graphql_operation_duration_seconds',
      help: 'Time from receiving a GraphQL operation to its response (a subscription: to its start)',
      labelNames: ['operation', 'type', 'transport'],
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60],
      registers,
    });
    this.modelCalls = new Counter({
      name: 'visionpath_model_calls_total',
      help: 'Model calls (chat and embeddings) by purpose and outcome: complete, stopped, or the failure reason',
      labelNames: ['purpose', 'outcome'],
      registers,
    });
    this.modelSeconds = new Histogram({
      name: 'visionpath_model_call_duration_seconds',
      help: 'Whole model calls, from the request to the last chunk',
      labelNames: ['purpose', 'outcome'],
      buckets: [0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120],
      registers,
    });
    this.firstTokenSeconds = new Histogram({
      name: 'visionpath_model_time_to_first_token_seconds',
      help: 'From the request to the first streamed content (or tool call) of a chat call',
      labelNames: ['purpose'],
      buckets: [0.05, 0.1, 0.25, 0.5, 1, 2, 3, 5, 10, 20, 30],
      registers,
    });
    this.tokens = new Counter({
      name: 'visionpath_model_tokens_total',
      help: 'Tokens of model calls by purpose, kind (prompt, completion) and source (provider: the usage the model reported; estimate: the tokenizer, when it reported none)',
      labelNames: ['purpose', 'kind', 'source'],
      registers,
    });
    this.collectErrors = new Counter({
      name: 'visionpath_metrics_collect_errors_total',
      help: 'Scrape-time readings that failed or timed out (their series are left out of that scrape)',
      labelNames: ['source'],
      registers,
    });
    this.httpResponses = new Counter({
      name: 'visionpath_http_responses_total',
      help: 'HTTP responses of the server by route pattern ("unmatched" when no route took the request) and status, including requests refused before any handler (bad JSON, 413, 415, 404); streams answered with SSE are not counted here',
      labelNames: ['route', 'status'],
      registers,
    });
    const sources = () => this.sources;
    new Gauge({
      name: 'visionpath_replies_in_flight',
      help: 'Replies this instance is generating now',
      registers,
      collect() {
        this.set(sources().replies?.() ?? 0);
      },
    });
    new Gauge({
      name: 'visionpath_ws_connections',
      help: 'Open WebSocket connections (including those not yet initialised)',
      registers,
      collect() {
        this.set(sources().webSockets?.().connections ?? 0);
      },
    });
    new Gauge({
      name: 'visionpath_ws_subscriptions',
      help: 'Subscriptions running on the open WebSocket connections',
      registers,
      collect() {
        this.set(sources().webSockets?.().subscriptions ?? 0);
      },
    });
    new Gauge({
      name: 'visionpath_db_pool_connections',
      help: 'PostgreSQL pool of the application: connections used, free, borrowers pending, and its maximum',
      labelNames: ['state'],
      registers,
      collect() {
        const pool = sources().pool?.();
        if (!pool) return;
        this.set({ state: 'used' }, pool.used);
        this.set({ state: 'free' }, pool.free);
        this.set({ state: 'pending' }, pool.pending);
        this.set({ state: 'max' }, pool.max);
      },
    });
    const jobs = new Gauge({
      name: 'visionpath_job_queue_depth',
      help: 'Background jobs per queue: waiting (created or retrying) and active',
      labelNames: ['queue', 'state'],
      registers,
      collect: async () => {
        const source = this.sources.jobs;
        if (!source) return;
        try {
          this.jobsLookup ??= withTimeout(source(), JOBS_TIMEOUT_MS).finally(() => (this.jobsLookup = undefined));
          const sizes = await this.jobsLookup;
          // queues that are gone (or a reading that failed) must not linger with old values
          jobs.reset();
          for (const q of sizes) {
            const queue = this.queues.of(q.name);
            jobs.set({ queue, state: 'waiting' }, q.waiting);
            jobs.set({ queue, state: 'active' }, q.active);
          }
        } catch (err) {
          jobs.reset();
          this.collectErrors.inc({ source: 'jobs' });
          opts.logger?.warn({ err: (err as Error).message }, 'metrics: the job queue depth could not be read');
        }
      },
    });
  }

  /** What the scrape reads; merged with what was given before. */
  watch(sources: MetricsSources): void {
    this.sources = { ...this.sources, ...sources };
  }

  /**
   * One GraphQL operation that got its answer (or, a subscription, its start). `operation`:
   * the resolved operation, undefined when the document did not parse, validate or resolve.
   * `code`: the first error's `extensions.code` as the client saw it; none for a clean result.
   */
  operation(o: { operation: OperationDefinitionNode | null | undefined; code?: unknown; transport: Transport; seconds: number }): void {
    const op = o.operation;
    const operation = !op ? 'unknown' : op.name ? this.names.of(op.name.value) : 'anonymous';
    const type = op && OPERATION_TYPES.has(op.operation) ? op.operation : 'unknown';
    const code = o.code === undefined || o.code === null ? 'OK' : this.codes.of(String(o.code));
    this.operations.inc({ operation, type, code, transport: o.transport });
    this.operationSeconds.observe({ operation, type, transport: o.transport }, o.seconds);
  }

  /** One HTTP response; `route`: the matched route's pattern (e.g. `/files/:id`), undefined when none matched. */
  httpResponse(route: string | undefined, status: number): void {
    this.httpResponses.inc({ route: route === undefined ? 'unmatched' : this.routes.of(route), status: this.statuses.of(String(status)) });
  }

  /** One model call that ended (a call refused before it was made, by a budget or the breaker, is none). */
  modelCall(r: ModelCallReport): void {
    const purpose = typeof r.purpose === 'string' ? this.purposes.of(r.purpose) : 'none';
    const outcome = this.outcomes.of(r.outcome);
    this.modelCalls.inc({ purpose, outcome });
    this.modelSeconds.observe({ purpose, outcome }, r.seconds);
    if (r.firstTokenSeconds !== undefined) this.firstTokenSeconds.observe({ purpose }, r.firstTokenSeconds);
    const source = r.estimated ? 'estimate' : 'provider';
    if (r.promptTokens > 0) this.tokens.inc({ purpose, kind: 'prompt', source }, r.promptTokens);
    if (r.completionTokens > 0) this.tokens.inc({ purpose, kind: 'completion', source }, r.completionTokens);
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  /** The exposition text: this server's metrics and the process's. */
  async render(): Promise<string> {
    const [own, proc] = await Promise.all([this.registry.metrics(), processMetrics().metrics()]);
    return own.endsWith('\n') ? own + proc : `${own}\n${proc}`;
  }
}

/**
 * The server's metrics, or undefined when they would be served nowhere: METRICS=false, or
 * production without METRICS_TOKEN and without METRICS_PORT (then a warning says so).
 */
export function createMetrics(opts: { config: MetricsConfig; production: boolean; logger: Logger }): Metrics | undefined {
  const { config, production, logger } = opts;
  if (!config.enabled) return undefined;
  if (production && config.port === undefined && !config.token) {
    logger.warn('metrics are not served: in production /metrics needs METRICS_TOKEN on the public port, or METRICS_PORT for a listener of its own');
    return undefined;
  }
  return new Metrics({ logger });
}

/** The pool of a knex client (MikroORM's), read at scrape time. */
export function knexPoolUsage(knex: { client: unknown }): PoolUsage | undefined {
  const pool = (knex.client as { pool?: TarnPool }).pool;
  if (!pool) return undefined;
  return { used: pool.numUsed(), free: pool.numFree(), pending: pool.numPendingAcquires(), max: pool.max };
}

interface TarnPool {
  numUsed(): number;
  numFree(): number;
  numPendingAcquires(): number;
  max: number;
}

function withTimeout<T>(p: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms);
    timer.unref();
  });
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
}
