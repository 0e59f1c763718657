import { v7 as uuidv7 } from 'uuid';
import { queryRows, type SqlOn } from '../db/sql';
import { AppError, ErrorCode, NotFoundError, VisionNotActiveError } from '../graphql/errors';
import { VisionMessage, MESSAGE_COLUMNS, messageColumns } from './message.entity';
import { MessageState, MessageType, VisionStatus } from './vision.enums';

/**
 * The statements of the dialog step, each a named function over raw SQL. Every time comes from
 * the database's clock (`clock_timestamp()`), so that the order of messages written by several
 * instances does not depend on how well their clocks agree.
 */

export const STREAMING_KEY = 'vision_messages_one_streaming_key';
export const CLIENT_KEY = 'vision_messages_visionid_clientmessageid_key';

export class VisionBusyError extends AppError {
  constructor() {
    super('A reply is already being generated for this vision; wait for it or stop it', ErrorCode.VISION_BUSY);
  }
}

export function constraintOf(err: unknown): string | undefined {
  return (err as { constraint?: string } | null)?.constraint;
}

/**
 * Locks the caller's vision row for this transaction and bumps updatedat: NOT_FOUND when it
 * is absent or someone else's, VISION_NOT_ACTIVE unless ACTIVE (the transaction then rolls back).
 */
export async function lockActiveVision(on: SqlOn, visionId: string, userId: string): Promise<{ title: string }> {
  const [row] = await queryRows<{ status: VisionStatus; title: string }>(
    on,
    `update visions set updatedat = greatest(now(), updatedat) where id = ? and userid = ? returning status, title`,
    [visionId, userId],
  );
  if (!row) throw new NotFoundError();
  if (row.status !== VisionStatus.ACTIVE) throw new VisionNotActiveError(row.status);
  return { title: row.title };
}

export async function insertMessage(
  on: SqlOn,
  m: {
    visionId: string;
    sender: string;
    content: string;
    state: MessageState;
    clientMessageId?: string | null;
    replyTo?: string;
    /** Tokens of the content with the model's tokenizer (memory/), counted once here. */
    tokens?: number | null;
  },
): Promise<VisionMessage> {
  const [row] = await queryRows(
    on,
    `insert into vision_messages (id, visionid, sender, messagetype, content, state, clientmessageid, replyto, tokens, heartbeatat, createdat)
     values (?, ?, ?, 'text', ?, ?, ?, ?, ?, case when ? then clock_timestamp() end, clock_timestamp()) returning ${MESSAGE_COLUMNS}`,
    [uuidv7(), m.visionId, m.sender, m.content, m.state, m.clientMessageId ?? null, m.replyTo ?? null, m.tokens ?? null, m.state === MessageState.STREAMING],
  );
  return VisionMessage.fromRow(row!);
}

/**
 * The turn of `sendMessage` in one statement (no transaction around it: a statement is atomic):
 * bumps the caller's ACTIVE vision (its row lock is held to the end of the statement), inserts
 * the user message and the STREAMING reply placeholder after it (a later instant, even within
 * one clock tick). Errors as the chain of statements it replaced (BENCHMARKS.md, issue 16):
 * NOT_FOUND when the vision is absent or someone else's, VISION_NOT_ACTIVE unless ACTIVE (then
 * nothing is written, not even the bump), VISION_BUSY when a reply streams (the partial unique
 * index), and the `clientMessageId` unique violation for the caller to resolve.
 */
export async function insertTurn(
  on: SqlOn,
  t: { visionId: string; userId: string; content: string; clientMessageId: string | null; tokens: number | null },
): Promise<{ title: string; user: VisionMessage; reply: VisionMessage }> {
  for (let attempt = 0; ; attempt++) {
    const rows = await turnStatement(on, t);
    if (rows.length === 2) {
      const user = rows.find((r) => r.sender === 'user')!;
      const reply = rows.find((r) => r.sender === 'assistant')!;
      return { title: user._title as string, user: VisionMessage.fromRow(user), reply: VisionMessage.fromRow(reply) };
    }
    // nothing was written: say why (a second statement, only on this path)
    const [row] = await queryRows<{ status: VisionStatus }>(on, 'select status from visions where id = ? and userid = ?', [t.visionId, t.userId]);
    if (!row) throw new NotFoundError();
    // ACTIVE again by now (restored between the two statements): the turn is tried again
    if (row.status !== VisionStatus.ACTIVE || attempt >= 2) throw new VisionNotActiveError(row.status === VisionStatus.ACTIVE ? VisionStatus.FROZEN : row.status);
  }
}

async function turnStatement(
  on: SqlOn,
  t: { visionId: string; userId: string; content: string; clientMessageId: string | null; tokens: number | null },
): Promise<Record<string, unknown>[]> {
  try {
    return await queryRows(
      on,
      `with v as (
         update visions set updatedat = greatest(now(), updatedat) where id = ? and userid = ? and status = 'active' returning id, title
       ), u as (
         insert into vision_messages (id, visionid, sender, messagetype, content, state, clientmessageid, tokens, createdat)
         select ?, v.id, 'user', 'text', ?, 'complete', ?, ?, clock_timestamp() from v
         returning ${MESSAGE_COLUMNS}
       ), r as (
         insert into vision_messages (id, visionid, sender, messagetype, content, state, replyto, heartbeatat, createdat)
         select ?, u.visionid, 'assistant', 'text', '', 'streaming', u.id, clock_timestamp(), greatest(clock_timestamp(), u.createdat + interval '1 microsecond') from u
         returning ${MESSAGE_COLUMNS}
       )
       select (select title from v) as _title, u.* from u union all select null, r.* from r`,
      [t.visionId, t.userId, uuidv7(), t.content, t.clientMessageId, t.tokens, uuidv7()],
    );
  } catch (err) {
    if (constraintOf(err) === STREAMING_KEY) throw new VisionBusyError();
    throw err;
  }
}

/** A STREAMING assistant placeholder answering `userMessageId`; VISION_BUSY when one already streams. */
export async function insertReply(on: SqlOn, visionId: string, userMessageId: string): Promise<VisionMessage> {
  try {
    return await insertMessage(on, { visionId, sender: 'assistant', content: '', state: MessageState.STREAMING, replyTo: userMessageId });
  } catch (err) {
    if (constraintOf(err) === STREAMING_KEY) throw new VisionBusyError();
    throw err;
  }
}

/** The caller's earlier message with this idempotency key (someone else's vision finds nothing). */
export async function findUserMessageByKey(on: SqlOn, k: { visionId: string; userId: string; key: string }): Promise<VisionMessage | null> {
  const [row] = await queryRows(
    on,
    `select ${messageColumns('m')} from vision_messages m join visions v on v.id = m.visionid
     where m.visionid = ? and m.clientmessageid = ? and v.userid = ?`,
    [k.visionId, k.key, k.userId],
  );
  return row ? VisionMessage.fromRow(row) : null;
}

/** The newest user message of the vision, or null. */
export async function findLastUserMessage(on: SqlOn, visionId: string): Promise<VisionMessage | null> {
  const [row] = await queryRows(
    on,
    `select ${MESSAGE_COLUMNS} from vision_messages where visionid = ? and sender = 'user' order by createdat desc, id desc limit 1`,
    [visionId],
  );
  return row ? VisionMessage.fromRow(row) : null;
}

/** States of the replies to a user message. */
export async function replyStatesOf(on: SqlOn, visionId: string, userMessageId: string): Promise<MessageState[]> {
  const rows = await queryRows<{ state: MessageState }>(on, 'select state from vision_messages where replyto = ? and visionid = ?', [userMessageId, visionId]);
  return rows.map((r) => r.state);
}

/** The latest reply to a user message, or null. */
export async function findLatestReplyTo(on: SqlOn, userMessageId: string): Promise<VisionMessage | null> {
  const [row] = await queryRows(on, `select ${MESSAGE_COLUMNS} from vision_messages where replyto = ? order by createdat desc, id desc limit 1`, [userMessageId]);
  return row ? VisionMessage.fromRow(row) : null;
}

/** The id of the reply streaming in the vision now (at most one: a partial unique index), or null. */
export async function findStreamingReplyId(on: SqlOn, visionId: string): Promise<string | null> {
  const [row] = await queryRows<{ id: string }>(on, `select id from vision_messages where visionid = ? and state = 'streaming'`, [visionId]);
  return row?.id ?? null;
}

/** Saves the growing text of a reply and renews its heartbeat; false when someone else closed it. */
export async function saveReplyProgress(on: SqlOn, replyId: string, content: string): Promise<boolean> {
  const rows = await queryRows(on, `update vision_messages set content = ?, heartbeatat = clock_timestamp() where id = ? and state = 'streaming' returning id`, [
    content,
    replyId,
  ]);
  return rows.length > 0;
}

/**
 * Writes the final state of a reply. A reply someone else marked STOPPED keeps that state but
 * gets the fuller text this process holds; `payload` is merged only into a reply still STREAMING.
 */
export async function storeReplyFinal(
  on: SqlOn,
  r: {
    replyId: string;
    visionId: string;
    state: MessageState;
    content: string;
    tokens: number;
    payload: Record<string, unknown> | null;
    /** Set for a reply that became another type (`file_result`); unset: the type stays. */
    type?: MessageType;
  },
): Promise<VisionMessage> {
  const payload = r.payload && JSON.stringify(r.payload);
  // one statement (atomic without a transaction): the reply and its vision's updatedat
  const [row] = await queryRows(
    on,
    `with m as (
       update vision_messages set
         messagetype = coalesce(?, messagetype),
         content = ?,
         tokens = ?,
         state = case when state = 'streaming' then ? else state end,
         payload = case when state = 'streaming' and ?::jsonb is not null then coalesce(payload, '{}'::jsonb) || ?::jsonb else payload end,
         heartbeatat = null
       where id = ? and state in ('streaming', 'stopped')
       returning ${MESSAGE_COLUMNS}
     ), v as (
       update visions set updatedat = greatest(now(), updatedat) where id = ?
     )
     select * from m`,
    [r.type ?? null, r.content, r.tokens, r.state, payload, payload, r.replyId, r.visionId],
  );
  if (row) return VisionMessage.fromRow(row);
  const [current] = await queryRows(on, `select ${MESSAGE_COLUMNS} from vision_messages where id = ?`, [r.replyId]);
  return VisionMessage.fromRow(current!);
}

/** Marks a reply of another process STOPPED (that process notices at its next save); false when it was not streaming. */
export async function markReplyStopped(on: SqlOn, replyId: string, cause: string): Promise<boolean> {
  const rows = await queryRows(
    on,
    `update vision_messages set state = 'stopped', heartbeatat = null, payload = coalesce(payload, '{}'::jsonb) || ?::jsonb
     where id = ? and state = 'streaming' returning id`,
    [JSON.stringify({ stop: cause }), replyId],
  );
  return rows.length > 0;
}

/** A reply as the resume of `replyDelta` needs it. */
export interface ReplyRecord {
  id: string;
  state: MessageState;
  content: string;
}

/**
 * Replies of the vision in order, starting at `fromReplyId` (inclusive) or, without it, only the
 * newest one; at most `limit`. An unknown `fromReplyId` gives an empty list.
 */
export async function findRepliesFrom(on: SqlOn, visionId: string, fromReplyId: string | null, limit: number): Promise<ReplyRecord[]> {
  if (!fromReplyId) {
    return queryRows<ReplyRecord>(
      on,
      `select id, state, content from vision_messages where visionid = ? and sender = 'assistant' and replyto is not null
       order by createdat desc, id desc limit 1`,
      [visionId],
    );
  }
  return queryRows<ReplyRecord>(
    on,
    `select m.id, m.state, m.content from vision_messages m, vision_messages f
     where f.id = ? and f.visionid = ? and f.sender = 'assistant'
       and m.visionid = f.visionid and m.sender = 'assistant' and m.replyto is not null
       and (m.createdat, m.id) >= (f.createdat, f.id)
     order by m.createdat, m.id limit ?`,
    [fromReplyId, visionId, limit],
  );
}

/** A STREAMING reply whose heartbeat is older than the stale limit. */
export interface StaleReply {
  id: string;
  visionid: string;
  content: string;
}

/** STREAMING replies whose heartbeat is older than `staleMs` (of one vision, or all). */
export async function findStaleReplies(on: SqlOn, staleMs: number, visionId?: string): Promise<StaleReply[]> {
  const params: unknown[] = [staleMs];
  if (visionId) params.push(visionId);
  return queryRows<StaleReply>(
    on,
    `select id, visionid, content from vision_messages
     where state = 'streaming' and (heartbeatat is null or heartbeatat < clock_timestamp() - make_interval(secs => ? / 1000.0))
     ${visionId ? 'and visionid = ?' : ''} limit 1000`,
    params,
  );
}

/**
 * Closes a stale reply FAILED (reason interrupted) with `content`, unless it came back to life
 * or was closed meanwhile; the closed message, or null.
 */
export async function closeStaleReply(on: SqlOn, r: { id: string; content: string; staleMs: number }): Promise<VisionMessage | null> {
  const [row] = await queryRows(
    on,
    `update vision_messages set state = 'failed', heartbeatat = null, content = ?,
       payload = coalesce(payload, '{}'::jsonb) || '{"error":{"reason":"interrupted"}}'::jsonb
     where id = ? and state = 'streaming' and (heartbeatat is null or heartbeatat < clock_timestamp() - make_interval(secs => ? / 1000.0))
     returning ${MESSAGE_COLUMNS}`,
    [r.content, r.id, r.staleMs],
  );
  return row ? VisionMessage.fromRow(row) : null;
}
