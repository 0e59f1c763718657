import { Readable } from 'node:stream';
import { v7 as uuidv7 } from 'uuid';
import { inTransaction, limitSql, pgDate, queryRows, type SqlRunner } from '../db/sql';
import { AppError, ErrorCode, NotFoundError } from '../graphql/errors';
import type { File } from '../vision/file.entity';
import type { MessageSender, MessageState, MessageType } from '../vision/vision.enums';
import { findVisionForUser } from '../vision/vision.service';
import { ExportFormat, writerFor, type ExportedMessage, type ExportedVision, type ExportWriter } from './export.format';
import { sanitizeFilename } from './filename';
import { clearUpload, fileKey, insertFile, recordUpload } from './files.queries';
import type { FileStorage } from './storage/file-storage';

/** Rows per statement of an export. @default 1000 */
export const EXPORT_PAGE_SIZE = 1000;

/** What an export needs of the process. */
export interface ExportDeps {
  sql: SqlRunner;
  storage: FileStorage;
  /** IANA zone of the date in the file name (the zone of default titles). @default "UTC" */
  timeZone?: string;
  /** @default EXPORT_PAGE_SIZE */
  pageSize?: number;
  /** Counts one export of the user once the vision is found (RATE_LIMIT_EXPORTS_PER_HOUR); throws when over. */
  consume?: (userId: string) => Promise<void>;
}

/** Where a keyset page starts: after this (createdat, id). Times travel as PostgreSQL text, keeping microseconds. */
interface PageKey {
  at: string;
  id: string;
}
const BEFORE_ALL: PageKey = { at: '-infinity', id: '00000000-0000-0000-0000-000000000000' };

/**
 * One page of the history, oldest first (the API's history order, over the
 * `(visionid, createdat, id)` index), with the file each message points at joined in the same
 * statement. The join follows `VisionMessage.file`: the payload's `fileid` when it is a uuid, and
 * only a file of this vision (or of none). The regex guards the cast: a malformed `fileid` in an
 * old payload must not fail the whole export.
 */
const PAGE_SQL = `select m.id, m.sender, m.messagetype, m.state, m.content, m.payload,
       m.createdat, m.createdat::text as keyat,
       f.id as fid, f.filename as ffilename, f.mime as fmime, f.size as fsize
  from vision_messages m
  left join files f
    on f.id = case when m.payload->>'fileid' ~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$'
                   then (m.payload->>'fileid')::uuid end
   and (f.visionid is null or f.visionid = m.visionid)
 where m.visionid = ? and (m.createdat, m.id) > (?::timestamptz, ?::uuid)
 order by m.createdat, m.id`;

function messageOf(row: Record<string, unknown>): ExportedMessage {
  return {
    id: row.id as string,
    sender: row.sender as MessageSender,
    type: row.messagetype as MessageType,
    state: row.state as MessageState,
    content: (row.content as string | null) ?? '',
    payload: (row.payload as Record<string, unknown> | null) ?? null,
    file: row.fid
      ? { id: row.fid as string, filename: row.ffilename as string, mime: row.fmime as string, size: Number(row.fsize) }
      : null,
    createdAt: pgDate(row.createdat),
  };
}

/**
 * The document as a sequence of UTF-8 chunks: the head, one chunk per page of messages, the
 * tail. Pages are read only as the consumer pulls, so at most one page is in memory; the number
 * of messages written is reported through `counted` once the tail is out.
 */
async function* documentChunks(args: {
  sql: SqlRunner;
  vision: ExportedVision;
  writer: ExportWriter;
  exportedAt: Date;
  pageSize: number;
  counted: (n: number) => void;
}): AsyncGenerator<Buffer> {
  const { sql, vision, writer, pageSize } = args;
  // the row limit as a literal, so the plan is made for it (BENCHMARKS.md, issue 16, step 2c)
  const pageSql = `${PAGE_SQL}\n ${limitSql(pageSize)}`;
  yield Buffer.from(writer.head(vision, args.exportedAt), 'utf8');
  let key = BEFORE_ALL;
  let count = 0;
  for (;;) {
    const rows = await queryRows(sql, pageSql, [vision.id, key.at, key.id]);
    if (rows.length === 0) break;
    let text = '';
    for (const row of rows) text += writer.message(messageOf(row), count++);
    const last = rows[rows.length - 1]!;
    key = { at: last.keyat as string, id: last.id as string };
    yield Buffer.from(text, 'utf8');
    if (rows.length < pageSize) break;
  }
  yield Buffer.from(writer.tail(count), 'utf8');
  args.counted(count);
}

/** `2026-11-25` in the given zone (en-CA formats dates as ISO). */
function isoDate(at: Date, timeZone: string): string {
  return new Intl.DateTimeFormat('en-CA', { timeZone, year: 'numeric', month: '2-digit', day: '2-digit' }).format(at);
}

/**
 * `<title> — 2026-11-25.md`. A slash in a title is a word separator for the person, not a path:
 * it becomes a dash before the name is sanitised (which would otherwise keep only what follows it).
 */
export function exportFilename(title: string, at: Date, format: ExportFormat, timeZone = 'UTC'): string {
  const mime = writerFor(format).mime;
  return sanitizeFilename(`${title.replace(/[/\\]+/g, '-')} — ${isoDate(at, timeZone)}`, mime);
}

/**
 * Writes the whole path of one of the caller's visions (any status: the owner may take their
 * data out of a FROZEN or DELETED one) to storage and records it as a `files` row of the
 * vision. The file is not added to the dialog.
 *
 * The messages are streamed from the database in keyset pages into `storage.put`, so memory
 * stays at one page whatever the length of the path. Messages committed while the export runs
 * are included when their time sorts after the page being read (no snapshot is held: that would
 * pin a pooled connection for the whole upload).
 *
 * The object is stored first, then its row: a crash in between leaves an object without a row,
 * which the orphan sweep removes; never a row without bytes.
 *
 * @throws NotFoundError when the vision is absent or someone else's; what `deps.consume` throws
 * (RATE_LIMITED) before anything is written.
 */
export async function exportVision(
  deps: ExportDeps,
  opts: { userId: string; visionId: string; format: ExportFormat; now?: Date },
): Promise<File> {
  const found = await findVisionForUser(deps.sql, { id: opts.visionId, userId: opts.userId });
  if (!found) throw new NotFoundError();
  // only an export that will write a file counts
  await deps.consume?.(opts.userId);
  const vision: ExportedVision = {
    id: found.id,
    title: found.title,
    status: found.status,
    createdAt: found.createdAt,
    updatedAt: found.updatedAt,
  };
  const writer = writerFor(opts.format);
  const exportedAt = opts.now ?? new Date();
  const id = uuidv7();
  const storagePath = fileKey(id);
  let messages = -1;
  const body = Readable.from(
    documentChunks({
      sql: deps.sql,
      vision,
      writer,
      exportedAt,
      pageSize: deps.pageSize ?? EXPORT_PAGE_SIZE,
      counted: (n) => (messages = n),
    }),
    // byte mode: drivers see Buffers, and back-pressure counts bytes, not pages
    { objectMode: false },
  );
  // the upload is recorded first: a crash before the row leaves a record the orphan sweep follows
  await recordUpload(deps.sql, { fileId: id, storagePath });
  const { size } = await deps.storage.put(storagePath, body, { mime: writer.mime });
  // a driver that stopped reading early would have stored a truncated document
  if (messages < 0) {
    await deps.storage.delete(storagePath).catch(() => undefined);
    throw new Error('the storage driver did not consume the whole export');
  }
  return inTransaction(deps.sql, async (tx) => {
    await clearUpload(tx, id);
    return insertFile(tx, {
      id,
      visionId: vision.id,
      storagePath,
      filename: exportFilename(vision.title, exportedAt, opts.format, deps.timeZone),
      mime: writer.mime,
      size,
      meta: { kind: 'export', format: opts.format, messages },
    });
  });
}

/** A second export of a user while one runs: RATE_LIMITED (HTTP 429), as other per-user limits. */
export class ExportRunningError extends AppError {
  constructor() {
    super('An export of yours is already running; try again when it is done', ErrorCode.RATE_LIMITED, { reason: 'export_running' }, 429);
  }
}

/**
 * At most one running export per user in this process. An export reads the whole path and
 * writes it out, which costs far more than any other operation; a user who starts many at
 * once (or a client retrying in a loop) would otherwise hold database connections and upload
 * bandwidth that everyone shares. Per process, not global: with several instances a user may
 * run one on each, which still bounds the load.
 */
export class ExportGuard {
  private readonly running = new Set<string>();

  /** Runs `fn` as the user's one export; {@link ExportRunningError} when another is running. */
  async run<T>(userId: string, fn: () => Promise<T>): Promise<T> {
    if (this.running.has(userId)) throw new ExportRunningError();
    this.running.add(userId);
    try {
      return await fn();
    } finally {
      this.running.delete(userId);
    }
  }
}
