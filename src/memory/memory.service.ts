import type { OpenAI } from 'openai';
import type { ChatCompletionTool } from 'openai/resources/chat/completions';
import type { PriceTable } from '../tokenscount/prices';
import type { TokenBudgets } from '../tokenscount/budgets';
import type { Config } from '../config';
import type { SqlRunner } from '../db/sql';
import type { JobQueue } from '../jobs/queue';
import { tokenizerFor, type Tokenizer } from '../llm/tokenizer';
import type { Logger } from '../logger';
import type { VisionMessage } from '../vision/message.entity';
import { planContext, type ContextRules, type ModelContextPlan } from './context';
import type { SummaryAndWindow } from './memory.queries';
import type { EmbeddingService } from '../search/embedder';
import type { Recall } from '../search/recall';
import { Summarizer } from './summarizer';

/** The background task that takes one summary step for a vision. */
export const SUMMARY_TASK = 'vision-summary';

/**
 * Memory of the whole path: what each request to the model carries (token budget, rolling
 * summary, window) and the background job that keeps the summary up to date. The dialog asks
 * for a plan before each reply and reports after it; a reply never waits for a summary.
 */
export class MemoryService {
  readonly tokenizer: Tokenizer;
  readonly rules: ContextRules & { summaryMaxTokens: number };
  private readonly summarizer: Summarizer;
  private jobs?: JobQueue;
  private search?: { recall: Recall; embeddings: EmbeddingService };

  constructor(
    private readonly deps: {
      sql: SqlRunner;
      config: Pick<Config, 'memory' | 'maxMessages' | 'dialog' | 'llm'>;
      llm: { client: OpenAI; model: string; provider: string; /** Prices of the calls' tokenscount rows. */ prices?: PriceTable; /** The clients' token budgets. */ budgets?: TokenBudgets };
      logger: Logger;
      /** The tools offered with every reply: their tokens come off the messages' room. */
      tools?: ChatCompletionTool[];
    },
  ) {
    const { config } = deps;
    this.tokenizer = tokenizerFor(deps.llm.model);
    this.rules = {
      budgetTokens: config.memory.budgetTokens,
      replyReserveTokens: config.memory.replyReserveTokens,
      summaryMaxTokens: config.memory.summaryMaxTokens,
      maxMessages: config.maxMessages,
      systemPrompt: config.dialog.systemPrompt,
      toolTokens: deps.tools?.length ? this.tokenizer.count(JSON.stringify(deps.tools)) : 0,
    };
    this.summarizer = new Summarizer({
      sql: deps.sql,
      llm: deps.llm,
      tokenizer: this.tokenizer,
      rules: this.rules,
      timeoutMs: config.llm.timeoutMs,
      logger: deps.logger,
    });
  }

  /** Registers the summary task; summaries are queued from then on. */
  useJobs(jobs: JobQueue): void {
    // an instance with summaries off neither queues nor runs them
    if (!this.deps.config.memory.summaries) return;
    this.jobs = jobs;
    jobs.register<{ visionId: string }>(SUMMARY_TASK, async ({ visionId }, job) => {
      const outcome = await this.summarizer.step(visionId, job.signal);
      if (outcome !== 'nothing') this.deps.logger.info({ visionId, outcome }, 'summary step');
      if (outcome === 'more') await this.queueSummary(visionId);
    });
  }

  /** Recall of older moments (search/): plans carry them, and new messages are embedded after each turn. */
  useSearch(search: { recall: Recall; embeddings: EmbeddingService }): void {
    this.search = search;
  }

  /**
   * What the model would be sent for the vision now. With `embedFor` (the owner, before a
   * reply) the latest user message is embedded for recall if it has no embedding yet (a metered
   * call; with `latest`, the message just stored, the call starts at once, beside the reads);
   * without it, recall uses stored embeddings only and the model is never called. `read`: the
   * summary and window already read (by the dialog's turn); unset, they are read here.
   */
  plan(
    vision: { id: string; title: string },
    sql: SqlRunner = this.deps.sql,
    opts: { embedFor?: string; latest?: VisionMessage; read?: SummaryAndWindow } = {},
  ): Promise<ModelContextPlan> {
    const recall = this.search?.recall;
    if (!recall?.enabled) return planContext(sql, this.tokenizer, this.rules, vision, undefined, opts.read);
    // the store readies itself and the new message's embedding is asked for at once, while the window is read
    if (opts.embedFor) void recall.warm(sql, vision.id);
    const early = opts.embedFor && opts.latest ? { id: opts.latest.id, vector: recall.embedNew(opts.embedFor, opts.latest) } : undefined;
    const recaller = (latest: VisionMessage, beforeMessageId: string, windowIds: string[]) =>
      recall.recall(sql, {
        visionId: vision.id,
        latest,
        beforeMessageId,
        windowIds,
        embedFor: opts.embedFor,
        vector: early?.id === latest.id ? early.vector : undefined,
      });
    return planContext(sql, this.tokenizer, this.rules, vision, recaller, opts.read);
  }

  /** Tokens of a message's content, counted once when it is stored. */
  count(text: string): number {
    return this.tokenizer.count(text);
  }

  /** After a reply: the turn's messages are embedded; when messages are left outside the window, the summary takes its next step. */
  async afterReply(visionId: string, plan: ModelContextPlan): Promise<void> {
    await this.search?.embeddings.queue(visionId);
    if (plan.outside) await this.queueSummary(visionId);
  }

  /** One summary step now (tests and operators); the queue normally does this. */
  summarizeNow(visionId: string) {
    return this.summarizer.step(visionId);
  }

  private async queueSummary(visionId: string): Promise<void> {
    // keyed by vision: however many instances ask, one step waits and one runs
    await this.jobs?.send(SUMMARY_TASK, { visionId }, visionId);
  }
}
