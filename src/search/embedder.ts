import { LRUCache } from 'lru-cache';
import type { OpenAI } from 'openai';
import type { PriceTable } from '../tokenscount/prices';
import type { TokenBudgets } from '../tokenscount/budgets';
import type { Metrics } from '../metrics/metrics';
import type { SqlRunner } from '../db/sql';
import { limitSql, queryRows } from '../db/sql';
import type { JobQueue } from '../jobs/queue';
import type { Logger } from '../logger';
import { eligibleSql } from '../memory/memory.queries';
import { embedAndLogTokens, type EmbedResult } from '../tokenscount/embed';
import type { SearchConfig } from './search.config';
import { decodeFloat4Send, type VectorStore } from './vector-store';

/** The background task that embeds a vision's messages that have no embedding yet. */
export const EMBEDDING_TASK = 'message-embeddings';
/** The background task that finds visions with messages stored before embeddings (or another model) and queues them. */
export const BACKFILL_TASK = 'message-embeddings-backfill';
/** Visions queued per backfill step. */
const BACKFILL_PAGE = 500;

/** Longest text sent for one embedding (text-embedding-3-* read at most 8,191 tokens). */
const MAX_INPUT_CHARS = 16_000;
/** Characters of all inputs of one call at most (providers cap a request's tokens). */
const MAX_BATCH_CHARS = 200_000;

/** The messages that get embeddings: those a model ever sees. */
const ELIGIBLE = eligibleSql('m');

/** The model could not embed: why (the contract's reasons). */
export class EmbeddingFailedError extends Error {
  constructor(readonly result: Extract<EmbedResult, { ok: false }>) {
    super(`the embeddings call failed (${result.reason}${result.status ? `, HTTP ${result.status}` : ''})`);
  }
}

export interface EmbeddingDeps {
  sql: SqlRunner;
  config: SearchConfig;
  llm: { client: OpenAI; provider: string; /** Prices of the calls' tokenscount rows. */ prices?: PriceTable; /** The clients' token budgets. */ budgets?: TokenBudgets; /** Model calls are reported here (metrics/). */ metrics?: Metrics };
  timeoutMs: number;
  store: VectorStore;
  logger: Logger;
}

/**
 * Embeddings of messages and of search texts, every call metered through tokenscount
 * (`meta.purpose: "embedding"`). Messages are embedded by a durable job per vision (never on a
 * request path); a failed call throws, so the job is retried with back-off until the endpoint
 * answers again.
 */
export class EmbeddingService {
  private jobs?: JobQueue;
  /** A few hundred recent search texts and their vectors: the next page of a search asks the model nothing. */
  private readonly queries = new LRUCache<string, number[]>({ max: 500, ttl: 10 * 60_000 });

  constructor(private readonly deps: EmbeddingDeps) {}

  get enabled(): boolean {
    return this.deps.config.embeddings;
  }

  get model(): string {
    return this.deps.config.embeddingModel;
  }

  useJobs(jobs: JobQueue): void {
    if (!this.enabled) return;
    this.jobs = jobs;
    jobs.register<{ visionId: string }>(EMBEDDING_TASK, async ({ visionId }, job) => {
      const outcome = await this.embedPending(visionId, job.signal);
      if (outcome === 'more') await this.queue(visionId);
    });
    jobs.register<{ after?: string }>(BACKFILL_TASK, async ({ after }) => {
      const next = await this.backfill(after);
      if (next) await this.jobs?.send(BACKFILL_TASK, { after: next }, 'all');
    });
  }

  /**
   * Queues the backfill (at start): messages stored before embeddings existed, or embedded by
   * another EMBEDDING_MODEL, are embedded without waiting for their vision's next turn. One
   * backfill waits at a time however many instances start.
   */
  async queueBackfill(): Promise<void> {
    await this.jobs?.send(BACKFILL_TASK, {}, 'all');
  }

  /** One backfill step: queues the next visions (by id) that have messages without an embedding of the model. */
  async backfill(afterVisionId?: string): Promise<string | null> {
    const rows = await queryRows<{ visionid: string }>(
      this.deps.sql,
      `select distinct m.visionid from vision_messages m
       where m.visionid > ?::uuid and ${ELIGIBLE}
         and not exists (select 1 from vision_message_embeddings e where e.messageid = m.id and e.model = ?)
       order by m.visionid ${limitSql(BACKFILL_PAGE)}`,
      [afterVisionId ?? '00000000-0000-0000-0000-000000000000', this.model],
    );
    for (const r of rows) await this.queue(r.visionid);
    return rows.length === BACKFILL_PAGE ? rows[rows.length - 1]!.visionid : null;
  }

  /** Asks for the vision's new messages to be embedded; one job per vision waits at a time. */
  async queue(visionId: string): Promise<void> {
    await this.jobs?.send(EMBEDDING_TASK, { visionId }, visionId);
  }

  /** Embeds one batch of the vision's messages that have no embedding of the model, newest first. */
  async embedPending(visionId: string, signal?: AbortSignal): Promise<'none' | 'done' | 'more'> {
    const { config } = this.deps;
    const rows = await queryRows<{ id: string; content: string; userid: string }>(
      this.deps.sql,
      `select m.id, m.content, v.userid from vision_messages m join visions v on v.id = m.visionid
       where m.visionid = ? and ${ELIGIBLE}
         and not exists (select 1 from vision_message_embeddings e where e.messageid = m.id and e.model = ?)
       order by m.createdat desc, m.id desc ${limitSql(config.embeddingBatch + 1)}`,
      [visionId, this.model],
    );
    if (!rows.length) return 'none';
    const batch: typeof rows = [];
    let chars = 0;
    for (const r of rows.slice(0, config.embeddingBatch)) {
      const len = Math.min(r.content.length, MAX_INPUT_CHARS);
      if (batch.length && chars + len > MAX_BATCH_CHARS) break;
      batch.push(r);
      chars += len;
    }
    const vectors = await this.embed(
      batch.map((r) => r.content),
      { clientId: batch[0]!.userid, meta: { module: 'search', visionid: visionId, purpose: 'embedding', for: 'messages' } },
      false,
      signal,
    );
    await this.deps.store.store(this.deps.sql, this.model, batch.map((r, i) => ({ messageId: r.id, vector: vectors[i]! })));
    return rows.length > batch.length ? 'more' : 'done';
  }

  /**
   * Embeds one message now (recall, before a reply) and stores it; the job skips it then. With
   * `background`, the vector is returned as soon as the model answers, and the tokenscount row's
   * final write and the vector's row follow without holding the caller (a failure is logged; the
   * job embeds the message again, the sweeper settles the row).
   */
  async embedMessage(userId: string, m: { id: string; visionId: string; content: string }, opts: { background?: boolean } = {}): Promise<number[]> {
    const [v] = await this.embed(
      [m.content],
      { clientId: userId, meta: { module: 'search', visionid: m.visionId, messageid: m.id, purpose: 'embedding', for: 'recall' } },
      opts.background,
    );
    const stored = this.deps.store.store(this.deps.sql, this.model, [{ messageId: m.id, vector: v! }]);
    if (!opts.background) await stored;
    else stored.catch((err: unknown) => this.deps.logger.warn({ err, messageId: m.id }, 'storing an embedding failed; the job embeds the message again'));
    return v!;
  }

  /** The stored embedding of a message with the current model, or null. */
  async storedVector(messageId: string): Promise<number[] | null> {
    const [row] = await queryRows<{ v: Buffer }>(
      this.deps.sql,
      `select array_send(v.embedding) as v from vision_message_embeddings e join vision_message_vectors v on v.messageid = e.messageid
       where e.messageid = ? and e.model = ?`,
      [messageId, this.model],
    );
    return row ? Array.from(decodeFloat4Send(row.v)) : null;
  }

  /** The vector of a search text: one metered call, unless the same text was searched lately. */
  async embedQuery(userId: string, text: string): Promise<number[]> {
    const key = `${this.model}\u0000${this.deps.config.embeddingDimensions}\u0000${text}`;
    const cached = this.queries.get(key);
    if (cached) return cached;
    const [v] = await this.embed([text], { clientId: userId, meta: { module: 'search', purpose: 'embedding', for: 'search' } });
    this.queries.set(key, v!);
    return v!;
  }

  private async embed(
    texts: string[],
    who: { clientId: string; meta: Record<string, unknown> },
    settleInBackground = false,
    signal?: AbortSignal,
  ): Promise<number[][]> {
    const { config, llm } = this.deps;
    const result = await embedAndLogTokens({
      em: this.deps.sql,
      client: llm.client,
      clientId: who.clientId,
      clientType: 'user',
      provider: llm.provider,
      prices: llm.prices,
      budgets: llm.budgets,
      metrics: llm.metrics,
      model: this.model,
      input: texts.map((t) => t.slice(0, MAX_INPUT_CHARS)),
      dimensions: config.embeddingDimensions || undefined,
      meta: who.meta,
      timeoutMs: this.deps.timeoutMs,
      logger: this.deps.logger,
      settleInBackground,
      signal,
    });
    if (!result.ok) throw new EmbeddingFailedError(result);
    return result.vectors;
  }
}
