import type { OpenAI } from 'openai';
import type { PriceTable } from '../tokenscount/prices';
import type { TokenBudgets } from '../tokenscount/budgets';
import type { Metrics } from '../metrics/metrics';
import type { Config } from '../config';
import type { SqlRunner } from '../db/sql';
import type { DocumentTool, StoredDocument } from '../files/document-tool';
import type { Logger } from '../logger';
import { BreakerOpenError, type ModelBreaker } from '../llm/breaker';
import { callModelAndLogTokens, isProviderFault, settleCallSql, settleCallWithRetry, type CallModelResult, type ModelFailureReason } from '../tokenscount/call-model';
import type { ModelContextPlan } from '../memory/context';
import { QuotaExceededError } from '../tokenscount/budgets';
import type { MemoryService } from '../memory/memory.service';
import type { SummaryAndWindow } from '../memory/memory.queries';
import { saveReplyProgress } from './dialog.queries';
import type { VisionMessage } from './message.entity';
import type { ReplyEvents } from './reply-events';
import { storeFinalReply, type ReplyFinal } from './reply-store';
import { MessageState } from './vision.enums';

/** A reply refused by a token budget stores this reason and the budget (see {@link quotaExtensions}). */
export const QUOTA_REASON = 'quota_exceeded';

function quotaExtensions(e: QuotaExceededError): Record<string, unknown> {
  const { period, limitTokens, usedTokens, resetsAt } = e.extensions as Record<string, unknown>;
  return { period, limitTokens, usedTokens, resetsAt };
}

/** Why a reply was stopped: a person, a status change, or the server going down. */
export type StopCause = 'user' | 'status' | 'shutdown';

export interface RunningReply {
  visionId: string;
  replyId: string;
  userMessageId: string;
  abort: AbortController;
  /** Settles with the stored final reply; never rejects. */
  done: Promise<VisionMessage>;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Runs replies: builds the context, calls the model through the metering wrapper, streams the
 * chunks as `replyDelta` events, saves the growing text (and a heartbeat) every REPLY_FLUSH_MS,
 * and settles every reply in a stored final state (COMPLETE, STOPPED or FAILED) followed by its
 * final events. A reply runs independently of the request that asked for it.
 */
export class ReplyRunner {
  /** By vision id: at most one reply per vision runs anywhere (a partial unique index). */
  private readonly running = new Map<string, RunningReply>();
  /** Aborted when the server shuts down: final writes then give up sooner. */
  private readonly closing = new AbortController();

  constructor(
    private readonly deps: {
      sql: SqlRunner;
      config: Pick<Config, 'dialog' | 'llm' | 'maxMessages' | 'memory'>;
      llm: { client: OpenAI; model: string; provider: string; /** Prices of the calls' tokenscount rows. */ prices?: PriceTable; /** The clients' token budgets. */ budgets?: TokenBudgets; /** Model calls are reported here (metrics/). */ metrics?: Metrics };
      breaker: ModelBreaker;
      memory: MemoryService;
      /** `create_document`: offered with every reply, carried out when the model calls it (files/). */
      documents: DocumentTool;
      events: ReplyEvents;
      logger: Logger;
    },
  ) {}

  get size(): number {
    return this.running.size;
  }

  /** The reply this process runs for the vision. */
  get(visionId: string): RunningReply | undefined {
    return this.running.get(visionId);
  }

  has(replyId: string): boolean {
    for (const r of this.running.values()) if (r.replyId === replyId) return true;
    return false;
  }

  findByUserMessage(userMessageId: string): RunningReply | undefined {
    for (const r of this.running.values()) if (r.userMessageId === userMessageId) return r;
    return undefined;
  }

  /** Aborts the reply if this process runs it (and it is `replyId`, when given); waits until it is stored. */
  async stop(visionId: string, cause: StopCause, replyId?: string): Promise<boolean> {
    const local = this.running.get(visionId);
    if (!local || (replyId && local.replyId !== replyId)) return false;
    local.abort.abort(cause);
    await local.done;
    return true;
  }

  /** Lets running replies finish for up to `graceMs`, then stops the rest (STOPPED, partial text kept). */
  async shutdown(graceMs: number): Promise<void> {
    const all = () => Promise.allSettled([...this.running.values()].map((r) => r.done));
    if (this.running.size) {
      await Promise.race([all(), sleep(graceMs)]);
      this.closing.abort();
      for (const r of this.running.values()) r.abort.abort('shutdown');
      await all();
    }
    this.closing.abort();
  }

  /**
   * Starts a reply to `user`. `newMessage`: the user message was stored by this turn (sendMessage),
   * so it has no embedding yet and recall asks for one at once; a retry answers a stored one.
   * `read`: the summary and window the turn's statement read (see insertTurn); unset, the reply reads them.
   */
  launch(
    title: string,
    userId: string,
    user: VisionMessage,
    reply: VisionMessage,
    opts: { newMessage: boolean; read?: SummaryAndWindow | null },
  ): RunningReply {
    const run: RunningReply = {
      visionId: reply.visionId,
      replyId: reply.id,
      userMessageId: user.id,
      abort: new AbortController(),
      done: undefined as unknown as Promise<VisionMessage>,
    };
    this.running.set(run.visionId, run);
    run.done = this.generate(run, title, userId, opts.newMessage ? user : undefined, reply, opts.read ?? undefined).finally(() => {
      if (this.running.get(run.visionId) === run) this.running.delete(run.visionId);
    });
    return run;
  }

  /** Generates one reply; never rejects: every outcome ends in a stored final state and its events. */
  private async generate(
    run: RunningReply,
    title: string,
    userId: string,
    newMessage: VisionMessage | undefined,
    reply: VisionMessage,
    read: SummaryAndWindow | undefined,
  ): Promise<VisionMessage> {
    const { config, llm, logger, events, sql } = this.deps;
    let content = '';
    let saved = '';
    let seq = 0;
    let lastBeat = Date.now();
    let saving: Promise<void> | null = null;

    // saves the growing text (and the heartbeat) at least every REPLY_FLUSH_MS
    const save = async () => {
      if (content === saved && Date.now() - lastBeat < config.dialog.staleMs / 3) return;
      const text = content;
      const open = await saveReplyProgress(sql, reply.id, text);
      saved = text;
      lastBeat = Date.now();
      // closed by someone else (stopReply on another instance, a status change): stop the upstream call
      if (!open) run.abort.abort('user');
    };
    const ticker = setInterval(() => {
      if (saving) return;
      saving = save()
        .catch((err) => logger.warn({ err, replyId: reply.id }, 'saving a reply in progress failed'))
        .finally(() => (saving = null));
    }, config.dialog.flushMs);

    let result: CallModelResult | undefined;
    let failure: ModelFailureReason | undefined;
    let plan: ModelContextPlan | undefined;
    let quota: QuotaExceededError | undefined;
    try {
      // budget, summary, recalled moments and window (memory/); the reply never waits for a summary step
      const context = (plan = await this.deps.memory.plan({ id: reply.visionId, title }, sql, { embedFor: userId, latest: newMessage, read }));
      result = await this.deps.breaker.run(
        () =>
          callModelAndLogTokens({
            em: sql,
            client: llm.client,
            clientId: userId,
            clientType: 'user',
            provider: llm.provider,
            model: llm.model,
            prices: llm.prices,
            // with budgets, a reply's reservation is its prompt and REPLY_TOKEN_RESERVE, which then caps it
            budgets: llm.budgets,
            metrics: llm.metrics,
            maxTokens: llm.budgets?.enabled ? config.memory.replyReserveTokens : undefined,
            messages: context.messages,
            tools: this.deps.documents.tools,
            // the messages and the tool definitions' estimate, as the provider counts both
            localPromptTokens: context.totalTokens + context.toolTokens,
            meta: { module: 'vision', visionid: reply.visionId, messageid: reply.id, purpose: 'reply' },
            signal: run.abort.signal,
            timeoutMs: config.llm.timeoutMs,
            closing: this.closing.signal,
            // the row's final numbers are written with the reply's final state (storeFinal)
            deferSettle: true,
            logger,
            onDelta: (delta) => {
              content += delta;
              seq++;
              events.delta({ visionId: reply.visionId, replyId: reply.id, seq, delta, done: false, state: MessageState.STREAMING });
            },
          }),
        isProviderFault,
      );
      if (result.finish === 'failed') {
        failure = result.reason;
        logger.warn({ visionId: reply.visionId, replyId: reply.id, reason: result.reason, err: String(result.error) }, 'model call failed');
      }
    } catch (err) {
      failure = 'upstream_error';
      if (err instanceof QuotaExceededError) {
        // the budget is spent: nothing was sent to the model, and no row was written
        quota = err;
        logger.info({ visionId: reply.visionId, replyId: reply.id, budget: err.extensions }, 'reply refused: token budget spent');
      } else if (err instanceof BreakerOpenError) {
        // no call was made, so no tokens were spent and no tokenscount row is written
        logger.warn({ visionId: reply.visionId, replyId: reply.id }, 'model breaker open: reply failed at once');
      } else {
        // the context read or the tokenscount write failed: the reply cannot be trusted as complete
        logger.error({ err, visionId: reply.visionId, replyId: reply.id }, 'reply generation failed');
      }
    } finally {
      clearInterval(ticker);
    }
    await saving;

    let text = result?.content ?? content;
    const textBeforeCaption = text;
    let document: StoredDocument | undefined;
    if (!failure && result?.finish === 'complete' && result.toolCalls.length) {
      // the model called create_document: the document is stored now, its row with the reply
      const made = await this.deps.documents.make(result.toolCalls);
      if (made.ok) {
        document = made.document;
        const delta = (text ? '\n\n' : '') + made.caption;
        text += delta;
        events.delta({ visionId: reply.visionId, replyId: reply.id, seq: ++seq, delta, done: false, state: MessageState.STREAMING });
      } else {
        failure = made.reason;
        logger.warn({ visionId: reply.visionId, replyId: reply.id, reason: made.reason, err: made.error.message }, 'the document tool call was not carried out');
      }
    }

    const state = failure ? MessageState.FAILED : result?.finish === 'stopped' ? MessageState.STOPPED : MessageState.COMPLETE;
    const cut = result?.finish === 'complete' && (result.finishReason === 'length' || result.finishReason === 'content_filter');
    const payload = quota
      ? { error: { reason: QUOTA_REASON, ...quotaExtensions(quota) } }
      : failure
        ? { error: { reason: failure } }
        : cut
          ? { finishReason: result!.finishReason }
          : null;
    const settlement = result?.settlement;
    const final = await this.storeFinal({ reply, state, content: text, payload, document, contentWithoutCaption: textBeforeCaption, settle: settlement && settleCallSql(settlement) });
    // the reply's write gave up (shutdown with the database away): the row is tried on its own once more
    if (!final && settlement) await settleCallWithRetry(sql, settlement.id, settlement.row, { closing: this.closing.signal, logger });
    if (final) events.ended(final, seq + 1);
    if (final && plan && final.state !== MessageState.FAILED) {
      await this.deps.memory.afterReply(reply.visionId, plan).catch((err) => logger.warn({ err, visionId: reply.visionId }, 'queueing a summary step failed'));
    }
    // not stored (the database stayed away until shutdown): the next sweep closes it and publishes its end
    return final ?? reply;
  }

  /** Writes the final state (and attaches a document); see {@link storeFinalReply}. */
  private storeFinal(f: ReplyFinal): Promise<VisionMessage | null> {
    const { sql, logger, memory, documents } = this.deps;
    return storeFinalReply({ sql, logger, count: (t) => memory.count(t), removeDocument: (doc) => documents.remove(doc), closing: this.closing.signal }, f);
  }
}
