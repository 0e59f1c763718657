import type { Config } from '../config';
import type { Logger } from '../logger';
import { startEmbeddedPostgres, type EmbeddedPostgresHandle } from './embedded';
import { initOrm, migrateUp, type Orm } from './orm';

export interface Database {
  orm: Orm;
  /** The connection URL (of the embedded cluster when DATABASE_URL was unset). */
  url: string;
  /** The embedded cluster when DATABASE_URL was unset. */
  embedded?: EmbeddedPostgresHandle;
  /** Closes the pool, then stops the embedded cluster if this process started it. */
  close(): Promise<void>;
}

/** {@link openDatabase} with the server's configuration. */
export function openDatabaseFor(config: Config, logger: Logger): Promise<Database> {
  return openDatabase({
    databaseUrl: config.databaseUrl,
    dataDir: config.dataDir,
    poolMax: config.dbPoolMax,
    timeoutMs: config.limits.dbTimeoutMs,
    logger,
  });
}

/**
 * Connects to `databaseUrl`, or starts the embedded PostgreSQL in `dataDir` when it is unset,
 * and applies pending migrations.
 */
export async function openDatabase(opts: {
  databaseUrl?: string;
  dataDir: string;
  poolMax: number;
  logger: Logger;
  migrate?: boolean;
  timeoutMs?: number;
}): Promise<Database> {
  let embedded: EmbeddedPostgresHandle | undefined;
  let url = opts.databaseUrl;
  if (!url) {
    embedded = await startEmbeddedPostgres({ dataDir: opts.dataDir, logger: opts.logger });
    url = embedded.url;
  }
  let orm: Orm | undefined;
  try {
    orm = await initOrm(url, { poolMax: opts.poolMax, logger: opts.logger, timeoutMs: opts.timeoutMs });
    if (opts.migrate !== false) {
      const applied = await migrateUp(orm);
      if (applied.length) opts.logger.info({ applied }, 'migrations applied');
    }
  } catch (err) {
    await orm?.close(true).catch(() => undefined);
    await embedded?.stop().catch(() => undefined);
    throw err;
  }
  const theOrm = orm;
  return {
    orm: theOrm,
    url,
    embedded,
    async close() {
      await theOrm.close(true);
      await embedded?.stop();
    },
  };
}
