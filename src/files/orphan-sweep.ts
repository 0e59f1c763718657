import type { SqlRunner } from '../db/sql';
import type { JobQueue } from '../jobs/queue';
import type { Logger } from '../logger';
import { clearUpload, findAbandonedUploads, releaseOwnerlessFiles } from './files.queries';
import type { FileStorage } from './storage/file-storage';
import { LocalFileStorage } from './storage/local.storage';

/** The durable task that runs a sweep. */
export const ORPHAN_SWEEP_TASK = 'files-orphan-sweep';

const BATCH = 500;

export interface OrphanSweepOptions {
  /** Uploads younger than this may still get their row (a reply in progress). @default 3600000 (1 h) */
  minAgeMs?: number;
}

/**
 * Deletes stored objects that never got their `files` row. Every object write is recorded in
 * `file_uploads` first and the record is removed with the row's transaction, so what is left
 * there past `minAgeMs` is exactly what a crash (or a failed write) left behind: only those
 * objects are deleted. Objects this database never recorded (a bucket or directory shared with
 * another database) are never touched, and the bucket is never listed. With the local driver it
 * also removes temporary files of writes killed mid-way. First, the files of visions deleted for
 * good (the row lost its `visionid`) are released to that log, so their objects go in the same
 * pass. Returns what it deleted.
 */
export async function sweepOrphans(deps: { sql: SqlRunner; storage: FileStorage; logger: Logger }, opts: OrphanSweepOptions = {}): Promise<{ deleted: string[]; tempFiles: number }> {
  const { sql, storage, logger } = deps;
  const minAgeMs = opts.minAgeMs ?? 3600_000;
  const deleted: string[] = [];
  let ownerless = 0;
  for (;;) {
    const released = await releaseOwnerlessFiles(sql, BATCH);
    ownerless += released;
    if (released < BATCH) break;
  }
  for (;;) {
    const uploads = await findAbandonedUploads(sql, minAgeMs, BATCH);
    for (const u of uploads) {
      // a row exists (it cannot, the record goes with it; kept for safety): the object is live
      if (!u.recorded) {
        await storage.delete(u.storagepath);
        deleted.push(u.storagepath);
      }
      await clearUpload(sql, u.fileid);
    }
    if (uploads.length < BATCH) break;
  }
  const tempFiles = storage instanceof LocalFileStorage ? await storage.removeStaleTemp(new Date(Date.now() - minAgeMs)) : 0;
  if (ownerless) logger.info({ files: ownerless }, 'files: removed the files of visions deleted for good');
  // the released files' objects went through file_uploads in the same pass; the rest were crash leftovers
  const leftovers = deleted.length - ownerless;
  if (leftovers > 0 || tempFiles)
    logger.warn({ objects: leftovers, tempFiles }, 'files: removed stored objects without a row (left by a crash between the object write and its row)');
  return { deleted, tempFiles };
}

/**
 * Runs the sweep as a durable job: registered on `jobs` (before it starts), queued a little
 * after start and then every `intervalMs` by a timer of this process. The queue's `stately`
 * policy with one key keeps several instances from piling up sweeps. Returns a stop function.
 */
export function scheduleOrphanSweep(
  jobs: JobQueue,
  deps: { sql: SqlRunner; storage: FileStorage; logger: Logger },
  opts: { initialDelayMs?: number; intervalMs?: number } = {},
): () => void {
  jobs.register(ORPHAN_SWEEP_TASK, async () => {
    await sweepOrphans(deps);
  });
  const queue = () => void jobs.send(ORPHAN_SWEEP_TASK, {}, 'all');
  // JobQueue has no cron; a timer per process is enough for a chore whose duplicates are absorbed
  let interval: NodeJS.Timeout | undefined;
  const first = setTimeout(() => {
    queue();
    interval = setInterval(queue, opts.intervalMs ?? 3600_000);
    interval.unref();
  }, opts.initialDelayMs ?? 60_000);
  first.unref();
  return () => {
    clearTimeout(first);
    if (interval) clearInterval(interval);
  };
}
