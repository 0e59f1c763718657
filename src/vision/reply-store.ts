import { inTransaction, queryRows, type SqlOn, type SqlPart, type SqlRunner, type SqlTx } from '../db/sql';
import type { StoredDocument } from '../files/document-tool';
import { clearUpload, insertFile } from '../files/files.queries';
import type { Logger } from '../logger';
import { storeReplyFinal } from './dialog.queries';
import type { VisionMessage } from './message.entity';
import { MessageState, MessageType } from './vision.enums';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The final state of one reply, as the runner settled it. */
export interface ReplyFinal {
  reply: VisionMessage;
  state: MessageState;
  content: string;
  payload: Record<string, unknown> | null;
  /** A document the reply made; its object is stored, its `files` row is written here. */
  document?: StoredDocument;
  /** The content without the document's caption, kept when the document cannot be attached. */
  contentWithoutCaption?: string;
  /** Written with the reply, in its statement: the settlement of the reply's model call (tokenscount/). */
  settle?: SqlPart;
}

/**
 * Attaches a stored document to its reply: the `files` row and the message (`file_result`,
 * payload `fileid` and `filename`) in the caller's transaction. Only while the reply still
 * streams in an ACTIVE vision: a reply stopped meanwhile, or a vision frozen or deleted
 * meanwhile, gets no new file (false).
 */
async function attachDocument(tx: SqlTx, f: ReplyFinal & { document: StoredDocument }, tokens: number): Promise<VisionMessage | null> {
  const [cur] = await queryRows<{ state: string; status: string }>(
    tx,
    `select m.state, v.status from vision_messages m join visions v on v.id = m.visionid where m.id = ? for update of m`,
    [f.reply.id],
  );
  if (!cur || cur.state !== MessageState.STREAMING || cur.status !== 'active') return null;
  const d = f.document;
  await clearUpload(tx, d.id);
  await insertFile(tx, { id: d.id, visionId: f.reply.visionId, storagePath: d.storagePath, filename: d.filename, mime: d.mime, size: d.size, meta: { kind: 'document', messageid: f.reply.id } });
  return storeReplyFinal(tx, {
    replyId: f.reply.id,
    visionId: f.reply.visionId,
    state: f.state,
    content: f.content,
    tokens,
    payload: { ...f.payload, fileid: d.id, filename: d.filename },
    type: MessageType.FILE_RESULT,
    also: f.settle,
  });
}

/**
 * Writes a reply's final state, retrying while the database is unreachable, so a live process
 * never leaves a reply STREAMING, with `settle` in the same statement. Gives up (null) only when
 * `closing` is aborted: the next start's sweeper closes the reply then. A document that could not be attached is removed from
 * storage (what a crash leaves behind, the orphan sweep removes).
 */
export async function storeFinalReply(
  deps: { sql: SqlRunner; logger: Logger; count: (text: string) => number; removeDocument: (doc: StoredDocument) => Promise<void>; closing: AbortSignal },
  f: ReplyFinal,
): Promise<VisionMessage | null> {
  let dropped = false;
  for (let attempt = 0; ; attempt++) {
    try {
      // a document's row and message in one transaction; a text reply is one statement
      const write = (fn: (on: SqlOn) => Promise<VisionMessage>) => (f.document ? inTransaction(deps.sql, fn) : fn(deps.sql));
      const stored = await write(async (on) => {
        dropped = false;
        if (f.document) {
          const attached = await attachDocument(on as SqlTx, { ...f, document: f.document }, deps.count(f.content));
          if (attached) return attached;
          dropped = true;
        }
        const content = dropped ? (f.contentWithoutCaption ?? f.content) : f.content;
        return storeReplyFinal(on, {
          replyId: f.reply.id,
          visionId: f.reply.visionId,
          // a document the vision may no longer get: the reply ends as stopped by the status change
          state: dropped ? MessageState.STOPPED : f.state,
          content,
          tokens: deps.count(content),
          payload: dropped ? { stop: 'status' } : f.payload,
          also: f.settle,
        });
      });
      if (dropped && f.document) {
        await deps.removeDocument(f.document).catch((err) => deps.logger.warn({ err, key: f.document!.storagePath }, 'removing an unattached document failed; the orphan sweep removes it'));
      }
      return stored;
    } catch (err) {
      if (deps.closing.aborted && attempt >= 3) {
        deps.logger.error({ err, replyId: f.reply.id }, 'storing the final reply failed; the next start closes it');
        return null;
      }
      deps.logger.warn({ err, replyId: f.reply.id, attempt }, 'storing the final reply failed; retrying');
      await sleep(Math.min(5000, 100 * 2 ** attempt));
    }
  }
}
