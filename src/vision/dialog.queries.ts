import { v7 as uuidv7 } from 'uuid';
import { limitSql, queryRows, type SqlOn, type SqlPart } from '../db/sql';
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
  constructor(
    message = 'A reply is already being generated for this vision; wait for it or stop it',
    extensions?: Record<string, unknown>,
  ) {
    super(message, ErrorCode.VISION_BUSY, extensions);
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
    /** Written in the same statement, whether or not the reply row matched (the reply's model call settled). */
    also?: SqlPart;
  },
): Promise<VisionMessage> {
  const payload = r.payload && JSON.stringify(r.payload);
  // one statement (atomic without a transaction): the reply, its vision's updatedat and `also`
  const [row] = await queryRows(
    on,
    `with ${r.also ? `a as (${r.also.sql}), ` : ''}m as (
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
    [...(r.also?.params ?? []), r.type ?? null, r.content, r.tokens, r.state, payload, payload, r.replyId, r.visionId],
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
     order by m.createdat, m.id ${limitSql(limit)}`,
    [fromReplyId, visionId],
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
