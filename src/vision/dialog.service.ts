import type { OpenAI } from 'openai';
import { v7 as uuidv7 } from 'uuid';
import type { Config } from '../config';
import type { Orm } from '../db/orm';
import { inTransaction, poolRunner, queryRows, type SqlOn, type SqlRunner } from '../db/sql';
import { AppError, BadUserInputError, ErrorCode, NotFoundError, VisionNotActiveError } from '../graphql/errors';
import { Topic, type AppPubSub, type ReplyDeltaEvent, type StoredMessageEvent } from '../graphql/pubsub';
import { parseId } from '../graphql/relay';
import { toChatMessages, type HistoryItem } from '../llm/history';
import type { Logger } from '../logger';
import { BreakerOpenError, type ModelBreaker } from '../llm/breaker';
import type { RateLimits } from '../graphql/rate-limits';
import { callModelAndLogTokens, type CallModelResult, type ModelFailureReason } from '../tokenscount/call-model';
import { VisionMessage } from './message.entity';
import type { ReplyBuffer } from './reply-buffer';
import { MessageState, VisionStatus } from './vision.enums';
import { getVisionForUser } from './vision.service';

export interface DialogDeps {
  orm: Orm;
  config: Pick<Config, 'dialog' | 'llm' | 'maxMessages'>;
  llm: { client: OpenAI; model: string; provider: string };
  pubsub: AppPubSub;
  /** Holds the events of replies in progress for resuming subscribers. */
  replyBuffer: ReplyBuffer;
  /** Pauses model calls while the provider keeps failing. */
  breaker: ModelBreaker;
  /** Per-user send limit; checked before anything is stored. */
  limits?: Pick<RateLimits, 'consumeSend'>;
  logger: Logger;
}

export interface DialogPair {
  userMessage: VisionMessage;
  assistantMessage: VisionMessage;
}

/** Why a reply was stopped: a person, a status change, or the server going down. */
export type StopCause = 'user' | 'status' | 'shutdown';

interface RunningReply {
  visionId: string;
  replyId: string;
  userMessageId: string;
  abort: AbortController;
  done: Promise<DialogPair>;
}

const MAX_CLIENT_MESSAGE_ID = 200;
const STREAMING_KEY = 'vision_messages_one_streaming_key';
const CLIENT_KEY = 'vision_messages_visionid_clientmessageid_key';

export class VisionBusyError extends AppError {
  constructor() {
    super('A reply is already being generated for this vision; wait for it or stop it', ErrorCode.VISION_BUSY);
  }
}

export class LlmFailedError extends AppError {
  constructor(reason: ModelFailureReason | 'interrupted', userMessageId: string, replyId: string) {
    super(`The model call failed (${reason}); your message is kept and retryReply asks again`, ErrorCode.LLM_FAILED, {
      reason,
      userMessageId,
      replyId,
    });
  }
}

function constraintOf(err: unknown): string | undefined {
  return (err as { constraint?: string } | null)?.constraint;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export function toMessageEvent(m: VisionMessage): StoredMessageEvent {
  return {
    id: m.id,
    visionId: m.visionId,
    sender: m.sender,
    type: m.type,
    content: m.content,
    state: m.state,
    payload: m.payload ?? null,
    createdAt: m.createdAt.toISOString(),
  };
}

/**
 * The dialog step (seed §3.3, §4, §5) and the lifecycle of replies. One instance per server.
 *
 * Rules kept here, each also enforced by the database where it matters across instances:
 * - a message is stored only while its vision is ACTIVE (the vision row is locked and checked
 *   in the same transaction that inserts);
 * - one reply at a time per vision (partial unique index on STREAMING replies);
 * - `clientMessageId` is unique per vision (unique index) and a repeat returns the first result;
 * - a reply is generated independently of the request that asked for it, saved as it grows,
 *   and always ends COMPLETE, STOPPED or FAILED; a STREAMING reply whose heartbeat is older than
 *   REPLY_STALE_MS belongs to a dead process and is closed (FAILED, reason interrupted).
 */
export class DialogService {
  private readonly running = new Map<string, RunningReply>();
  private sweeper?: NodeJS.Timeout;
  private stopSignals?: AsyncIterator<unknown>;
  private closed = false;

  /**
   * The dialog runs raw statements only (it builds its own read objects), so it needs no unit of
   * work: statements go to the pool, transactions through `inTransaction`.
   */
  private readonly sql: SqlRunner;

  constructor(private readonly deps: DialogDeps) {
    this.sql = poolRunner(deps.orm.em);
  }

  /** Closes replies left STREAMING by dead processes now and every REPLY_STALE_MS / 2. */
  async start(): Promise<void> {
    await this.closeStaleReplies();
    this.sweeper = setInterval(() => {
      this.closeStaleReplies().catch((err) => this.deps.logger.warn({ err }, 'closing stale replies failed'));
    }, Math.max(500, this.deps.config.dialog.staleMs / 2));
    this.sweeper.unref();
    // stop signals from other instances (stopReply or a status change handled elsewhere)
    const signals = this.deps.pubsub.subscribe(Topic.REPLY_STOP)[Symbol.asyncIterator]();
    this.stopSignals = signals;
    void (async () => {
      for (let r = await signals.next(); !r.done; r = await signals.next()) {
        const local = this.running.get(r.value.visionId);
        if (local) local.abort.abort(r.value.cause);
      }
    })().catch((err) => this.deps.logger.error({ err }, 'stop signal listener failed'));
  }

  /**
   * Lets running replies finish for up to `graceMs`, then stops the rest (STOPPED, partial text
   * kept). Nothing is left STREAMING by this process.
   */
  async shutdown(graceMs: number): Promise<void> {
    this.closed = true;
    if (this.sweeper) clearInterval(this.sweeper);
    await this.stopSignals?.return?.();
    const all = () => Promise.allSettled([...this.running.values()].map((r) => r.done));
    if (this.running.size) {
      await Promise.race([all(), sleep(graceMs)]);
      for (const r of this.running.values()) r.abort.abort('shutdown');
      await all();
    }
  }

  /** Number of replies this process is generating. */
  get activeReplies(): number {
    return this.running.size;
  }

  async sendMessage(userId: string, input: { visionId: string; content: string; clientMessageId?: string | null }): Promise<DialogPair> {
    const visionId = parseId(input.visionId, 'visionId');
    const content = this.validateContent(input.content);
    const key = this.validateClientMessageId(input.clientMessageId);
    this.assertOpen();
    await this.deps.limits?.consumeSend(userId);
    if (key) {
      const existing = await this.findUserMessageByKey(this.sql, { visionId, userId, key });
      if (existing) return this.resultOf(existing);
    }

    let turn: { title: string; user: VisionMessage; reply: VisionMessage };
    try {
      // ownership, status and the row lock are one statement (NOT_FOUND, VISION_NOT_ACTIVE)
      turn = await this.withStaleRecovery(visionId, () =>
        inTransaction(this.sql, async (tem) => {
          const { title } = await this.lockActiveVision(tem, visionId, userId);
          const user = await this.insertMessage(tem, { visionId, sender: 'user', content, state: MessageState.COMPLETE, clientMessageId: key });
          const reply = await this.insertReply(tem, visionId, user.id);
          return { title, user, reply };
        }),
      );
    } catch (err) {
      if (key && constraintOf(err) === CLIENT_KEY) {
        // the same key arrived at the same moment: the first request owns the turn
        const existing = await this.findUserMessageByKey(this.sql, { visionId, userId, key });
        if (existing) return this.resultOf(existing);
      }
      throw err;
    }
    await this.publishMessage(turn.user);
    return this.finish(this.launch(turn.title, userId, turn.user, turn.reply));
  }

  async retryReply(userId: string, visionIdRaw: string): Promise<DialogPair> {
    const visionId = parseId(visionIdRaw, 'visionId');
    this.assertOpen();
    await this.deps.limits?.consumeSend(userId);
    const turn = await this.withStaleRecovery(visionId, () =>
      inTransaction(this.sql, async (tem) => {
        const { title } = await this.lockActiveVision(tem, visionId, userId);
        const [last] = await this.exec<Record<string, unknown>>(
          tem,
          `select * from vision_messages where visionid = ? and sender = 'user' order by createdat desc, id desc limit 1`,
          [visionId],
        );
        if (!last) throw new AppError('This vision has no message to answer', ErrorCode.NOTHING_TO_RETRY);
        const user = VisionMessage.fromRow(last);
        const replies = await this.exec<{ state: string }>(tem, 'select state from vision_messages where replyto = ? and visionid = ?', [user.id, visionId]);
        if (replies.some((r) => r.state === MessageState.STREAMING)) throw new VisionBusyError();
        if (replies.some((r) => r.state === MessageState.COMPLETE || r.state === MessageState.STOPPED)) {
          throw new AppError('The latest message already has a reply', ErrorCode.NOTHING_TO_RETRY);
        }
        const reply = await this.insertReply(tem, visionId, user.id);
        return { title, user, reply };
      }),
    );
    return this.finish(this.launch(turn.title, userId, turn.user, turn.reply));
  }

  /** Stops the reply being generated for the caller's vision; false when none was running. */
  async stopReply(userId: string, visionIdRaw: string): Promise<boolean> {
    const visionId = parseId(visionIdRaw, 'visionId');
    await getVisionForUser(this.sql, { id: visionId, userId });
    return this.stopVisionReply(visionId, 'user');
  }

  /**
   * Stops whatever reply runs for the vision. Locally: abort and wait until the partial text is
   * stored STOPPED. A reply of another process is marked STOPPED in the database; that process
   * sees it at its next save and aborts its upstream call.
   */
  async stopVisionReply(visionId: string, cause: StopCause): Promise<boolean> {
    const local = this.running.get(visionId);
    if (local) {
      local.abort.abort(cause);
      await local.done.catch(() => undefined);
      return true;
    }
    // the instance generating it aborts at once; the database update below also covers an
    // instance that missed the signal (it sees the row closed at its next save)
    await this.deps.pubsub.publish(Topic.REPLY_STOP, { visionId, cause });
    const rows = await this.exec(
      this.sql,
      `update vision_messages set state = 'stopped', heartbeatat = null, payload = coalesce(payload, '{}'::jsonb) || ?::jsonb
       where visionid = ? and state = 'streaming' returning id`,
      [JSON.stringify({ stop: cause }), visionId],
    );
    return rows.length > 0;
  }

  // ---------------------------------------------------------------- internals

  private assertOpen(): void {
    if (this.closed) throw new AppError('The server is shutting down; try again', ErrorCode.INTERNAL_SERVER_ERROR);
  }

  private validateContent(raw: string): string {
    const content = raw.trim();
    const max = this.deps.config.dialog.maxContentChars;
    const len = [...content].length;
    if (len === 0) throw new BadUserInputError('content must not be empty', 'content');
    if (len > max) throw new BadUserInputError(`content must be at most ${max} characters`, 'content');
    if (content.includes('\u0000')) throw new BadUserInputError('content must not contain NUL characters', 'content');
    return content;
  }

  private validateClientMessageId(raw: string | null | undefined): string | null {
    if (raw === undefined || raw === null) return null;
    const key = raw.trim();
    if (!key || key.length > MAX_CLIENT_MESSAGE_ID || key.includes('\u0000')) {
      throw new BadUserInputError(`clientMessageId must be 1-${MAX_CLIENT_MESSAGE_ID} characters`, 'clientMessageId');
    }
    return key;
  }

  private exec<R = Record<string, unknown>>(on: SqlOn, sql: string, params: unknown[]): Promise<R[]> {
    return queryRows<R>(on, sql, params);
  }

  /**
   * Locks the caller's vision row for this transaction and bumps updatedat: NOT_FOUND when it
   * is absent or someone else's, VISION_NOT_ACTIVE unless ACTIVE (the transaction then rolls back).
   */
  private async lockActiveVision(em: SqlOn, visionId: string, userId: string): Promise<{ title: string }> {
    const [row] = await this.exec<{ status: VisionStatus; title: string }>(
      em,
      `update visions set updatedat = greatest(now(), updatedat) where id = ? and userid = ? returning status, title`,
      [visionId, userId],
    );
    if (!row) throw new NotFoundError();
    if (row.status !== VisionStatus.ACTIVE) throw new VisionNotActiveError(row.status);
    return { title: row.title };
  }

  private async insertMessage(
    em: SqlOn,
    m: { visionId: string; sender: string; content: string; state: MessageState; clientMessageId?: string | null; replyTo?: string },
  ): Promise<VisionMessage> {
    const now = new Date();
    const [row] = await this.exec(
      em,
      `insert into vision_messages (id, visionid, sender, messagetype, content, state, clientmessageid, replyto, heartbeatat, createdat)
       values (?, ?, ?, 'text', ?, ?, ?, ?, ?, ?) returning *`,
      [
        uuidv7(),
        m.visionId,
        m.sender,
        m.content,
        m.state,
        m.clientMessageId ?? null,
        m.replyTo ?? null,
        m.state === MessageState.STREAMING ? now : null,
        now,
      ],
    );
    return VisionMessage.fromRow(row!);
  }

  private async insertReply(em: SqlOn, visionId: string, userMessageId: string): Promise<VisionMessage> {
    try {
      return await this.insertMessage(em, { visionId, sender: 'assistant', content: '', state: MessageState.STREAMING, replyTo: userMessageId });
    } catch (err) {
      if (constraintOf(err) === STREAMING_KEY) throw new VisionBusyError();
      throw err;
    }
  }

  /** Runs `fn`; when it finds the vision busy with a reply of a dead process, closes that reply and runs it once more. */
  private async withStaleRecovery<T>(visionId: string, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      if (!(err instanceof VisionBusyError) || this.running.has(visionId)) throw err;
      const closed = await this.closeStaleReplies(visionId);
      if (!closed) throw err;
      return fn();
    }
  }

  /** FAILED (reason interrupted) for STREAMING replies whose heartbeat is older than REPLY_STALE_MS. */
  async closeStaleReplies(visionId?: string): Promise<number> {
    const params: unknown[] = [JSON.stringify({ error: { reason: 'interrupted' } }), this.deps.config.dialog.staleMs];
    if (visionId) params.push(visionId);
    const rows = await this.exec<{ id: string; visionid: string }>(
      this.sql,
      `update vision_messages set state = 'failed', heartbeatat = null, payload = coalesce(payload, '{}'::jsonb) || ?::jsonb
       where state = 'streaming' and (heartbeatat is null or heartbeatat < now() - make_interval(secs => ? / 1000.0))
       ${visionId ? 'and visionid = ?' : ''}
       returning id, visionid`,
      params,
    );
    if (rows.length) this.deps.logger.warn({ replies: rows.map((r) => r.id) }, 'closed replies left STREAMING by a stopped process');
    return rows.length;
  }

  /** The caller's earlier message with this idempotency key (someone else's vision finds nothing). */
  private async findUserMessageByKey(em: SqlOn, k: { visionId: string; userId: string; key: string }): Promise<VisionMessage | null> {
    const [row] = await this.exec(
      em,
      `select m.* from vision_messages m join visions v on v.id = m.visionid
       where m.visionid = ? and m.clientmessageid = ? and v.userid = ?`,
      [k.visionId, k.key, k.userId],
    );
    return row ? VisionMessage.fromRow(row) : null;
  }

  /** The result of an earlier send: its user message and latest reply, once that reply is final. */
  private async resultOf(user: VisionMessage): Promise<DialogPair> {
    const deadline = Date.now() + this.deps.config.llm.timeoutMs + 2 * this.deps.config.dialog.staleMs;
    for (;;) {
      const local = [...this.running.values()].find((r) => r.userMessageId === user.id);
      if (local) return this.finish(local);
      const em = this.sql;
      const [row] = await this.exec(em, `select * from vision_messages where replyto = ? order by createdat desc, id desc limit 1`, [user.id]);
      const reply = row ? VisionMessage.fromRow(row) : null;
      if (reply && reply.state !== MessageState.STREAMING) return this.pairOrError({ userMessage: user, assistantMessage: reply });
      if (!reply || Date.now() > deadline) throw new VisionBusyError();
      await sleep(200);
    }
  }

  private pairOrError(pair: DialogPair): DialogPair {
    if (pair.assistantMessage.state === MessageState.FAILED) {
      const reason = (pair.assistantMessage.payload?.error as { reason?: ModelFailureReason } | undefined)?.reason ?? 'upstream_error';
      throw new LlmFailedError(reason, pair.userMessage.id, pair.assistantMessage.id);
    }
    return pair;
  }

  private async finish(run: RunningReply): Promise<DialogPair> {
    return this.pairOrError(await run.done);
  }

  private launch(title: string, userId: string, user: VisionMessage, reply: VisionMessage): RunningReply {
    const abort = new AbortController();
    const run: RunningReply = {
      visionId: reply.visionId,
      replyId: reply.id,
      userMessageId: user.id,
      abort,
      done: undefined as unknown as Promise<DialogPair>,
    };
    run.done = this.deps.replyBuffer
      .begin(reply.visionId, reply.id)
      .catch((err) => this.deps.logger.warn({ err }, 'reply buffer unavailable; resume will miss this reply'))
      .then(() => this.generate(run, title, userId, user, reply))
      .finally(() => {
      if (this.running.get(run.visionId) === run) this.running.delete(run.visionId);
    });
    this.running.set(run.visionId, run);
    return run;
  }

  /** Reads the history window: the last MAX_MESSAGES eligible messages, oldest first, one indexed query. */
  async loadHistory(em: SqlOn, visionId: string): Promise<HistoryItem[]> {
    const rows = await this.exec<HistoryItem>(
      em,
      `select sender, content from vision_messages
       where visionid = ? and sender in ('user', 'assistant') and messagetype <> 'info'
         and state in ('complete', 'stopped') and content <> ''
       order by createdat desc, id desc limit ?`,
      [visionId, this.deps.config.maxMessages],
    );
    return rows.reverse();
  }

  /** Generates one reply; never rejects: every outcome ends in a stored final state. */
  private async generate(run: RunningReply, title: string, userId: string, user: VisionMessage, reply: VisionMessage): Promise<DialogPair> {
    const { config, llm, logger } = this.deps;
    let content = '';
    let saved = '';
    let seq = 0;
    let lastBeat = Date.now();
    let saving: Promise<void> | null = null;

    // saves the growing text (and the heartbeat) at least every REPLY_FLUSH_MS
    const save = async () => {
      const changed = content !== saved;
      if (!changed && Date.now() - lastBeat < config.dialog.staleMs / 3) return;
      const text = content;
      const rows = await this.exec(this.sql, `update vision_messages set content = ?, heartbeatat = now() where id = ? and state = 'streaming' returning id`, [
        text,
        reply.id,
      ]);
      saved = text;
      lastBeat = Date.now();
      // closed by someone else (stopReply on another instance, a status change): stop the upstream call
      if (rows.length === 0) run.abort.abort('user');
    };
    const ticker = setInterval(() => {
      if (saving) return;
      saving = save()
        .catch((err) => logger.warn({ err, replyId: reply.id }, 'saving a reply in progress failed'))
        .finally(() => (saving = null));
    }, config.dialog.flushMs);

    let result: CallModelResult | undefined;
    let failure: ModelFailureReason | undefined;
    try {
      const history = await this.loadHistory(this.sql, reply.visionId);
      result = await this.deps.breaker.run(() => callModelAndLogTokens({
        em: this.sql,
        client: llm.client,
        clientId: userId,
        clientType: 'user',
        provider: llm.provider,
        model: llm.model,
        messages: toChatMessages({ systemPrompt: config.dialog.systemPrompt, title, history }),
        meta: { module: 'vision', visionid: reply.visionId, messageid: reply.id },
        signal: run.abort.signal,
        timeoutMs: config.llm.timeoutMs,
        onDelta: (delta) => {
          content += delta;
          seq++;
          return this.emitDelta({ visionId: reply.visionId, replyId: reply.id, seq, delta, done: false, state: MessageState.STREAMING });
        },
      }), (r) => r.finish === 'failed');
      if (result.finish === 'failed') {
        failure = result.reason;
        logger.warn({ visionId: reply.visionId, replyId: reply.id, reason: result.reason, err: String(result.error) }, 'model call failed');
      }
    } catch (err) {
      failure = 'upstream_error';
      if (err instanceof BreakerOpenError) {
        // no call was made, so no tokens were spent and no tokenscount row is written
        logger.warn({ visionId: reply.visionId, replyId: reply.id }, 'model breaker open: reply failed at once');
      } else {
        // the history read or the tokenscount write failed: the reply cannot be trusted as complete
        logger.error({ err, visionId: reply.visionId, replyId: reply.id }, 'reply generation failed');
      }
    } finally {
      clearInterval(ticker);
    }
    await saving;

    const state = failure ? MessageState.FAILED : result?.finish === 'stopped' ? MessageState.STOPPED : MessageState.COMPLETE;
    const text = result?.content ?? content;
    const final = await this.storeFinal(reply, state, text, failure);
    await this.emitDelta({ visionId: reply.visionId, replyId: reply.id, seq: seq + 1, delta: '', done: true, state: final.state });
    await this.publishMessage(final);
    return { userMessage: user, assistantMessage: final };
  }

  /**
   * Writes the final state. A reply someone else marked STOPPED keeps that state but gets the
   * fuller text this process holds. Retries while the database is unreachable, so a reply is
   * never left STREAMING by a live process.
   */
  private async storeFinal(reply: VisionMessage, state: MessageState, content: string, reason?: ModelFailureReason): Promise<VisionMessage> {
    const payload = reason ? { error: { reason } } : null;
    for (let attempt = 0; ; attempt++) {
      try {
        return await inTransaction(this.sql, async (em) => {
          const [row] = await this.exec(
            em,
            `update vision_messages set
               content = ?,
               state = case when state = 'streaming' then ? else state end,
               payload = case when state = 'streaming' and ?::jsonb is not null then coalesce(payload, '{}'::jsonb) || ?::jsonb else payload end,
               heartbeatat = null
             where id = ? and state in ('streaming', 'stopped')
             returning *`,
            [content, state, payload && JSON.stringify(payload), payload && JSON.stringify(payload), reply.id],
          );
          await this.exec(em, `update visions set updatedat = greatest(now(), updatedat) where id = ?`, [reply.visionId]);
          if (row) return VisionMessage.fromRow(row);
          const [current] = await this.exec(em, `select * from vision_messages where id = ?`, [reply.id]);
          return VisionMessage.fromRow(current!);
        });
      } catch (err) {
        // while shutting down, give up sooner: the next start closes the reply (interrupted)
        if (attempt >= (this.closed ? 3 : 20)) throw err;
        this.deps.logger.warn({ err, replyId: reply.id, attempt }, 'storing the final reply failed; retrying');
        await sleep(Math.min(5000, 100 * 2 ** attempt));
      }
    }
  }

  /** Buffered first, then published: a resuming subscriber finds every event in one of the two. */
  private async emitDelta(event: ReplyDeltaEvent): Promise<void> {
    try {
      await this.deps.replyBuffer.append(event);
    } catch (err) {
      this.deps.logger.warn({ err, replyId: event.replyId }, 'reply buffer append failed');
    }
    await this.deps.pubsub.publish(Topic.REPLY_DELTA, event.visionId, event);
  }

  private async publishMessage(m: VisionMessage): Promise<void> {
    await this.deps.pubsub.publish(Topic.MESSAGE_ADDED, m.visionId, toMessageEvent(m));
  }
}
