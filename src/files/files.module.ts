import type { FastifyInstance } from 'fastify';
import type { Config } from '../config';
import type { SqlRunner } from '../db/sql';
import type { RateLimits } from '../graphql/rate-limits';
import type { JobQueue } from '../jobs/queue';
import type { Logger } from '../logger';
import type { File } from '../vision/file.entity';
import { registerDownloadRoute } from './download.route';
import { ExportGuard } from './export.service';
import { FileLinks } from './file-links';
import { scheduleOrphanSweep } from './orphan-sweep';
import { createStorage } from './storage/create-storage';
import type { FileStorage } from './storage/file-storage';

export interface FilesModule {
  config: Config['files'];
  storage: FileStorage;
  /** A fresh download link for the owner, valid for FILE_URL_TTL_SECONDS; made on every read, never stored. */
  linkFor(file: File, ownerId: string): Promise<string>;
  /** `GET /files/:id` (the local driver's signed links). */
  registerRoutes(app: FastifyInstance): void;
  /** One running export per user in this process. */
  exports: ExportGuard;
  /** Counts one export of the user (RATE_LIMIT_EXPORTS_PER_HOUR): RATE_LIMITED past it. */
  consumeExport(userId: string): Promise<void>;
  /** The address the server listens on: the base of links when PUBLIC_URL is unset. */
  setBaseUrl(url: string): void;
  /**
   * Registers the orphan-object sweep on `jobs` (call before `jobs.start()`): queued about a
   * minute after start, then hourly.
   */
  useJobs(jobs: JobQueue): void;
  close(): Promise<void>;
}

/** Storage driver, signed links and the download route, wired for one process. */
export async function createFiles(deps: {
  config: Pick<Config, 'files' | 'nodeEnv'>;
  sql: SqlRunner;
  logger: Logger;
  /** Downloads per file owner (RATE_LIMIT_DOWNLOADS_PER_MINUTE) and exports per user (RATE_LIMIT_EXPORTS_PER_HOUR); none without. */
  limits?: Pick<RateLimits, 'consumeDownload' | 'consumeExport'>;
}): Promise<FilesModule> {
  const { config, sql, logger, limits } = deps;
  const storage = await createStorage(config.files, logger);
  const links = new FileLinks(config.files, logger);
  let baseUrl = config.files.publicUrl ?? '';
  let stopSweeps: (() => void) | undefined;
  return {
    config: config.files,
    storage,
    linkFor: (file, ownerId) => links.linkFor({ file, ownerId, baseUrl, storage }),
    registerRoutes: (app) => registerDownloadRoute(app, { sql, storage, links, logger, limits }),
    exports: new ExportGuard(),
    consumeExport: async (userId) => limits?.consumeExport(userId),
    setBaseUrl(url) {
      baseUrl = config.files.publicUrl ?? url;
    },
    useJobs(jobs) {
      stopSweeps = scheduleOrphanSweep(jobs, { sql, storage, logger });
    },
    async close() {
      stopSweeps?.();
      await storage.close();
    },
  };
}
