import type { OpenAI } from 'openai';
import type { PriceTable } from '../tokenscount/prices';
import type { TokenBudgets } from '../tokenscount/budgets';
import type { Config } from '../config';
import type { Orm } from '../db/orm';
import { inTransaction, poolRunner, type SqlRunner } from '../db/sql';
import { AppError, BadUserInputError, ErrorCode } from '../graphql/errors';
import { Topic, type AppPubSub } from '../graphql/pubsub';
import { parseId } from '../graphql/relay';
import type { Logger } from '../logger';
import type { ModelBreaker } from '../llm/breaker';
import type { RateLimits } from '../graphql/rate-limits';
import type { DocumentTool } from '../files/document-tool';
import type { MemoryService } from '../memory/memory.service';
import { settlePendingCall, type ModelFailureReason } from '../tokenscount/call-model';
import {
  CLIENT_KEY,
  constraintOf,
  findLastUserMessage,
  findLatestReplyTo,
  findStreamingReplyId,
  findUserMessageByKey,
  insertReply,
  lockActiveVision,
  markReplyStopped,
  replyStatesOf,
  VisionBusyError,
} from './dialog.queries';
import type { VisionMessage } from './message.entity';
import { insertTurn, type Turn } from './turn.queries';
import type { ReplyBuffer } from './reply-buffer';
import { ReplyEvents } from './reply-events';
import { LlmFailedError, QuotaRefusedError } from './dialog.errors';
import { QUOTA_REASON, ReplyRunner, type RunningReply, type StopCause } from './reply-runner';
import { StaleReplySweeper } from './stale-sweeper';
import { MessageState } from './vision.enums';
import { getVisionForUser, wellFormed } from './vision.service';

export { VisionBusyError } from './dialog.queries';
export { toMessageEvent } from './reply-events';
export type { StopCause } from './reply-runner';

export interface DialogDeps {
  orm: Orm;
  config: Pick<Config, 'dialog' | 'llm' | 'maxMessages' | 'memory'>;
  llm: { client: OpenAI; model: string; provider: string; /** Prices of the calls' tokenscount rows. */ prices?: PriceTable; /** The clients' token budgets. */ budgets?: TokenBudgets };
  pubsub: AppPubSub;
  /** Holds the events of replies in progress for resuming subscribers. */
  replyBuffer: ReplyBuffer;
  /** Pauses model calls while the provider keeps failing. */
  breaker: ModelBreaker;
  /** What each request to the model carries (budget, summary, window), and the summary's next steps. */
  memory: MemoryService;
  /** The `create_document` tool (files/). */
  documents: DocumentTool;
  /** Per-user send limit; checked before anything is stored. */
  limits?: Pick<RateLimits, 'consumeSend'>;
  logger: Logger;
}

export interface DialogPair {
  userMessage: VisionMessage;
  assistantMessage: VisionMessage;
}

export { LlmFailedError, QuotaRefusedError } from './dialog.errors';

const MAX_CLIENT_MESSAGE_ID = 200;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * The dialog step (seed §3.3, §4, §5): admit (ownership, status, limits) → store the user
 * message → run the reply (`ReplyRunner`) → settle. One instance per server.
 *
 * Rules kept here, each also enforced by the database where it matters across instances:
 * - a message is stored only while its vision is ACTIVE (the vision row is locked and checked
 *   in the same transaction that inserts);
 * - one reply at a time per vision (partial unique index on STREAMING replies);
 * - `clientMessageId` is unique per vision (unique index) and a repeat returns the first result;
 * - a reply always ends COMPLETE, STOPPED or FAILED (`ReplyRunner`, `StaleReplySweeper`).
 */
export class DialogService {
  /** Raw statements only: no unit of work is needed, so none is forked. */
  readonly sql: SqlRunner;
  readonly events: ReplyEvents;
  private readonly runner: ReplyRunner;
  private readonly sweeper: StaleReplySweeper;
  private stopSignals?: AsyncIterator<unknown>;
  private closed = false;

  constructor(private readonly deps: DialogDeps) {
    this.sql = poolRunner(deps.orm.em);
    this.events = new ReplyEvents(deps);
    this.runner = new ReplyRunner({ ...deps, sql: this.sql, events: this.events });
    this.sweeper = new StaleReplySweeper({
      sql: this.sql,
      staleMs: deps.config.dialog.staleMs,
      events: this.events,
      logger: deps.logger,
      isLocal: (replyId) => this.runner.has(replyId),
      abandonedCallMs: deps.config.llm.timeoutMs + deps.config.dialog.staleMs,
      prices: deps.llm.prices,
      onClosed: async (reply) => {
        await settlePendingCall(this.sql, { meta: { module: 'vision', messageid: reply.id }, completionText: reply.content, reason: 'interrupted', prices: deps.llm.prices });
      },
    });
  }

  /** Closes replies left STREAMING by dead processes, now and periodically; listens for stop signals. */
  async start(): Promise<void> {
    await this.sweeper.start();
    // stop signals from other instances (stopReply or a status change handled elsewhere); a
    // signal names its reply, so a late one cannot stop the next reply of the vision
    const signals = this.deps.pubsub.subscribe(Topic.REPLY_STOP)[Symbol.asyncIterator]();
    this.stopSignals = signals;
    void (async () => {
      for (let r = await signals.next(); !r.done; r = await signals.next()) {
        const local = this.runner.get(r.value.visionId);
        if (local && local.replyId === r.value.replyId) local.abort.abort(r.value.cause);
      }
    })().catch((err) => this.deps.logger.error({ err }, 'stop signal listener failed'));
  }

  /** Lets running replies finish for up to `graceMs`, then stops the rest. Nothing is left STREAMING by this process. */
  async shutdown(graceMs: number): Promise<void> {
    this.closed = true;
    this.sweeper.stop();
    await this.stopSignals?.return?.();
    await this.runner.shutdown(graceMs);
  }

  /** Number of replies this process is generating. */
  get activeReplies(): number {
    return this.runner.size;
  }

  /** Closes stale replies of dead processes (of one vision, or all) and publishes their end. */
  closeStaleReplies(visionId?: string): Promise<number> {
    return this.sweeper.sweep(visionId);
  }

  async sendMessage(userId: string, input: { visionId: string; content: string; clientMessageId?: string | null }): Promise<DialogPair> {
    const visionId = parseId(input.visionId, 'visionId');
    const content = this.validateContent(input.content);
    const key = this.validateClientMessageId(input.clientMessageId);
    this.assertOpen();
    await this.deps.limits?.consumeSend(userId);
    if (key) {
      const existing = await findUserMessageByKey(this.sql, { visionId, userId, key });
      if (existing) return this.resultOf(existing);
    }

    let turn: Turn;
    try {
      // ownership, status, the row lock, both inserts and the context's read are one statement (NOT_FOUND, VISION_NOT_ACTIVE, VISION_BUSY)
      turn = await this.withStaleRecovery(visionId, () =>
        insertTurn(this.sql, { visionId, userId, content, clientMessageId: key, tokens: this.deps.memory.count(content), windowSize: this.deps.memory.rules.maxMessages }),
      );
    } catch (err) {
      if (key && constraintOf(err) === CLIENT_KEY) {
        // the same key arrived at the same moment: the first request owns the turn
        const existing = await findUserMessageByKey(this.sql, { visionId, userId, key });
        if (existing) return this.resultOf(existing);
      }
      throw err;
    }
    this.events.message(turn.user);
    return this.finish(turn.user, this.runner.launch(turn.title, userId, turn.user, turn.reply, { newMessage: true, read: turn.read }));
  }

  async retryReply(userId: string, visionIdRaw: string): Promise<DialogPair> {
    const visionId = parseId(visionIdRaw, 'visionId');
    this.assertOpen();
    await this.deps.limits?.consumeSend(userId);
    const turn = await this.withStaleRecovery(visionId, () =>
      inTransaction(this.sql, async (tx) => {
        const { title } = await lockActiveVision(tx, visionId, userId);
        const user = await findLastUserMessage(tx, visionId);
        if (!user) throw new AppError('This vision has no message to answer', ErrorCode.NOTHING_TO_RETRY);
        const states = await replyStatesOf(tx, visionId, user.id);
        if (states.includes(MessageState.STREAMING)) throw new VisionBusyError();
        if (states.includes(MessageState.COMPLETE) || states.includes(MessageState.STOPPED)) {
          throw new AppError('The latest message already has a reply', ErrorCode.NOTHING_TO_RETRY);
        }
        const reply = await insertReply(tx, visionId, user.id);
        return { title, user, reply };
      }),
    );
    return this.finish(turn.user, this.runner.launch(turn.title, userId, turn.user, turn.reply, { newMessage: false }));
  }

  /** Stops the reply being generated for the caller's vision; false when none was running. */
  async stopReply(userId: string, visionIdRaw: string): Promise<boolean> {
    const visionId = parseId(visionIdRaw, 'visionId');
    await getVisionForUser(this.sql, { id: visionId, userId });
    return this.stopVisionReply(visionId, 'user');
  }

  /**
   * Stops whatever reply streams in the vision now. Locally: abort and wait until the partial
   * text is stored STOPPED. A reply of another process gets a stop signal naming it, and is
   * marked STOPPED in the database, which that process also sees at its next save.
   */
  async stopVisionReply(visionId: string, cause: StopCause): Promise<boolean> {
    const local = this.runner.get(visionId);
    if (local) return this.runner.stop(visionId, cause, local.replyId);
    const replyId = await findStreamingReplyId(this.sql, visionId);
    if (!replyId) return false;
    this.deps.pubsub.publish(Topic.REPLY_STOP, { visionId, replyId, cause });
    return markReplyStopped(this.sql, replyId, cause);
  }

  // ---------------------------------------------------------------- internals

  private assertOpen(): void {
    if (this.closed) throw new AppError('The server is shutting down; try again', ErrorCode.INTERNAL_SERVER_ERROR, { reason: 'shutting_down' }, 503);
  }

  private validateContent(raw: string): string {
    const content = raw.trim();
    const max = this.deps.config.dialog.maxContentChars;
    const len = [...content].length;
    if (len === 0) throw new BadUserInputError('content must not be empty', 'content');
    if (len > max) throw new BadUserInputError(`content must be at most ${max} characters`, 'content');
    if (content.includes('\u0000')) throw new BadUserInputError('content must not contain NUL characters', 'content');
    if (!wellFormed(content)) throw new BadUserInputError('content must be valid Unicode (no lone surrogates)', 'content');
    return content;
  }

  private validateClientMessageId(raw: string | null | undefined): string | null {
    if (raw === undefined || raw === null) return null;
    const key = raw.trim();
    if (!key || key.length > MAX_CLIENT_MESSAGE_ID || key.includes('\u0000') || !wellFormed(key)) {
      throw new BadUserInputError(`clientMessageId must be 1-${MAX_CLIENT_MESSAGE_ID} characters of valid Unicode`, 'clientMessageId');
    }
    return key;
  }

  /** Runs `fn`; when it finds the vision busy with a reply of a dead process, closes that reply and runs it once more. */
  private async withStaleRecovery<T>(visionId: string, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      if (!(err instanceof VisionBusyError) || this.runner.get(visionId)) throw err;
      const closed = await this.sweeper.sweep(visionId);
      if (!closed) throw err;
      return fn();
    }
  }

  /** The result of an earlier send: its user message and latest reply, once that reply is final. */
  private async resultOf(user: VisionMessage): Promise<DialogPair> {
    const deadline = Date.now() + this.deps.config.llm.timeoutMs + 2 * this.deps.config.dialog.staleMs;
    for (;;) {
      const local = this.runner.findByUserMessage(user.id);
      if (local) return this.finish(user, local);
      const reply = await findLatestReplyTo(this.sql, user.id);
      if (reply && reply.state !== MessageState.STREAMING) return this.pairOrError({ userMessage: user, assistantMessage: reply });
      if (!reply || Date.now() > deadline) throw new VisionBusyError();
      await sleep(200);
    }
  }

  private pairOrError(pair: DialogPair): DialogPair {
    if (pair.assistantMessage.state === MessageState.FAILED) {
      const error = pair.assistantMessage.payload?.error as Record<string, unknown> | undefined;
      // the budget was spent: nothing reached the model; the message is kept, retryReply works after the reset
      if (error?.reason === QUOTA_REASON) throw new QuotaRefusedError(error, pair.userMessage.id, pair.assistantMessage.id);
      const reason = (error as { reason?: ModelFailureReason } | undefined)?.reason ?? 'upstream_error';
      throw new LlmFailedError(reason, pair.userMessage.id, pair.assistantMessage.id);
    }
    return pair;
  }

  private async finish(user: VisionMessage, run: RunningReply): Promise<DialogPair> {
    const reply = await run.done;
    if (reply.state === MessageState.STREAMING) {
      // its final write failed until shutdown; the next start closes it (interrupted)
      throw new LlmFailedError('interrupted', user.id, reply.id);
    }
    return this.pairOrError({ userMessage: user, assistantMessage: reply });
  }
}
