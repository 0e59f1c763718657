import { queryRows, type SqlOn } from '../db/sql';
import { File } from '../vision/file.entity';

/** The storage key of a file: made from its id only, never from a filename. */
export const fileKey = (fileId: string): string => `files/${fileId}`;

/** Inserts a `files` row (after its object is stored) and returns it as read back. */
export async function insertFile(
  on: SqlOn,
  f: { id: string; visionId: string | null; storagePath: string; filename: string; mime: string; size: number; meta?: Record<string, unknown> | null },
): Promise<File> {
  const [row] = await queryRows(
    on,
    `insert into files (id, visionid, storagepath, filename, mime, size, meta)
     values (?, ?, ?, ?, ?, ?, ?::jsonb)
     returning id, visionid, storagepath, filename, mime, size, createdat, meta`,
    [f.id, f.visionId, f.storagePath, f.filename, f.mime, f.size, f.meta ? JSON.stringify(f.meta) : null],
  );
  return File.fromRow(row!);
}

/** A file with the user who owns it (the owner of its vision), or null. */
export async function findFileWithOwner(on: SqlOn, fileId: string): Promise<{ file: File; ownerId: string | null } | null> {
  const rows = await queryRows(
    on,
    `select f.id, f.visionid, f.storagepath, f.filename, f.mime, f.size, f.createdat, f.meta, v.userid as ownerid
       from files f left join visions v on v.id = f.visionid
      where f.id = ?`,
    [fileId],
  );
  const row = rows[0];
  return row ? { file: File.fromRow(row), ownerId: (row.ownerid as string | null) ?? null } : null;
}

/**
 * Records that an object is about to be written (committed at once, before the write): what a
 * crash leaves between the object and its `files` row, the orphan sweep finds here.
 */
export async function recordUpload(on: SqlOn, u: { fileId: string; storagePath: string }): Promise<void> {
  await queryRows(on, `insert into file_uploads (fileid, storagepath) values (?, ?) on conflict (fileid) do nothing`, [u.fileId, u.storagePath]);
}

/** The object got its row (same transaction), or was removed: nothing left to sweep. */
export async function clearUpload(on: SqlOn, fileId: string): Promise<void> {
  await queryRows(on, `delete from file_uploads where fileid = ?`, [fileId]);
}

/** Uploads older than `minAgeMs` whose object never got a row (oldest first). */
export async function findAbandonedUploads(on: SqlOn, minAgeMs: number, limit: number): Promise<{ fileid: string; storagepath: string; recorded: boolean }[]> {
  return queryRows(
    on,
    `select u.fileid, u.storagepath, exists (select 1 from files f where f.id = u.fileid) as recorded
       from file_uploads u
      where u.createdat < now() - ? * interval '1 millisecond'
      order by u.createdat limit ?`,
    [minAgeMs, limit],
  );
}

/**
 * Files whose vision was deleted for good (`visionid` set null by the foreign key; no one can
 * reach them): their rows are deleted and their objects handed to the upload log, dated so the
 * sweep's next pass removes them. One statement, so a crash never loses an object's last trace.
 */
export async function releaseOwnerlessFiles(on: SqlOn, limit: number): Promise<number> {
  const rows = await queryRows(
    on,
    `with gone as (
       delete from files where id in (select id from files where visionid is null order by createdat limit ? for update skip locked)
       returning id, storagepath)
     insert into file_uploads (fileid, storagepath, createdat)
     select id, storagepath, '-infinity'::timestamptz from gone
     on conflict (fileid) do update set createdat = excluded.createdat
     returning fileid`,
    [limit],
  );
  return rows.length;
}
