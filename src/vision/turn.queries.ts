import { v7 as uuidv7 } from 'uuid';
import { queryRows, type SqlOn } from '../db/sql';
import { NotFoundError, VisionNotActiveError } from '../graphql/errors';
import { summaryAndWindowCtes, summaryColumns, summaryOfRow, type SummaryAndWindow } from '../memory/memory.queries';
import { STREAMING_KEY, VisionBusyError, constraintOf } from './dialog.queries';
import { VisionMessage, MESSAGE_COLUMNS } from './message.entity';
import { VisionStatus } from './vision.enums';

export interface TurnInput {
  visionId: string;
  userId: string;
  content: string;
  clientMessageId: string | null;
  tokens: number | null;
  /** MAX_MESSAGES: the window the model's context is chosen from (memory/). */
  windowSize: number;
}

export interface Turn {
  title: string;
  user: VisionMessage;
  reply: VisionMessage;
  /**
   * The summary in use and the window for the model's context, the new user message first, read in
   * the turn's own statement; null when that read may be stale (see {@link insertTurn}): the
   * reply then reads them itself.
   */
  read: SummaryAndWindow | null;
}

/**
 * The turn of `sendMessage` in one statement (no transaction around it: a statement is atomic):
 * bumps the caller's ACTIVE vision (its row lock is held to the end of the statement), inserts
 * the user message and the STREAMING reply placeholder after it (a later instant, even within
 * one clock tick), and reads the summary in use and the window after it for the reply's context
 * (one round trip less before the model call; BENCHMARKS.md, issue 16). Errors as the chain of
 * statements it replaced: NOT_FOUND when the vision is absent or someone else's,
 * VISION_NOT_ACTIVE unless ACTIVE (then nothing is written, not even the bump), VISION_BUSY when
 * a reply streams (the partial unique index) or when the vision was ACTIVE again after each of
 * three tries (reason `vision_changing`), and the `clientMessageId` unique violation for the
 * caller to resolve.
 *
 * The read sees the statement's snapshot, taken before the row lock was granted. Whatever
 * changes the window commits under that lock (a reply's final write bumps the vision) or is a
 * STREAMING reply being closed; the unique index admits the new reply only when no reply streams
 * by then. So a snapshot that still shows a STREAMING reply is stale, and only then: the read is
 * dropped (`read: null`).
 */
export async function insertTurn(on: SqlOn, t: TurnInput): Promise<Turn> {
  for (let attempt = 0; ; attempt++) {
    const rows = await turnStatement(on, t);
    const user = rows.find((r) => r._k === 'u');
    const reply = rows.find((r) => r._k === 'r');
    if (user && reply) {
      const message = VisionMessage.fromRow(user);
      let read: SummaryAndWindow | null = null;
      if (!user._busy) {
        const candidates = [message];
        for (const r of rows) if (r._k === 'w') candidates.push(VisionMessage.fromRow(r));
        read = { summary: summaryOfRow(user), candidates };
      }
      return { title: user._title as string, user: message, reply: VisionMessage.fromRow(reply), read };
    }
    // nothing was written: say why (a second statement, only on this path)
    const [row] = await queryRows<{ status: VisionStatus }>(on, 'select status from visions where id = ? and userid = ?', [t.visionId, t.userId]);
    if (!row) throw new NotFoundError();
    if (row.status !== VisionStatus.ACTIVE) throw new VisionNotActiveError(row.status);
    // ACTIVE again by now (restored between the two statements): the turn is tried again; a
    // vision that keeps changing under the send is a passing conflict, not a status to report
    if (attempt >= 2) throw new VisionBusyError('The vision kept changing while the message was being stored; send it again', { reason: 'vision_changing' });
  }
}

async function turnStatement(on: SqlOn, t: TurnInput): Promise<Record<string, unknown>[]> {
  try {
    // the window holds the new message and up to `windowSize` before it (one more than the
    // context can hold: whether anything is left outside)
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
       ), ${summaryAndWindowCtes('(select id from v)', t.windowSize)}
       select 'u' as _k, v.title as _title, exists (select 1 from vision_messages x where x.visionid = v.id and x.state = 'streaming') as _busy, ${summaryColumns('row')}, u.*
         from u cross join v left join s on true
       union all select 'r', null, null, ${summaryColumns('none')}, r.* from r
       union all select 'w', null, null, ${summaryColumns('none')}, w.* from w`,
      [t.visionId, t.userId, uuidv7(), t.content, t.clientMessageId, t.tokens, uuidv7()],
    );
  } catch (err) {
    if (constraintOf(err) === STREAMING_KEY) throw new VisionBusyError();
    throw err;
  }
}
