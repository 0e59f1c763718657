/**
 * `npm run migrate` (up), `npm run migrate:down` (one step down, or `-- --to 0` for all),
 * `npm run migration:create` (a new empty migration under migrations/).
 * Uses DATABASE_URL, or the embedded PostgreSQL in DATA_DIR (default .data) when it is unset.
 */
import { loadConfig } from '../config';
import { createLogger } from '../logger';
import { openDatabase } from './database';
import { migrateDown, migrateUp } from './orm';

async function main(): Promise<void> {
  const config = loadConfig(process.env);
  const logger = createLogger(config.logLevel);
  const [cmd = 'up', ...rest] = process.argv.slice(2);
  const db = await openDatabase({ ...config, poolMax: 2, logger, migrate: false });
  try {
    if (cmd === 'up') {
      const applied = await migrateUp(db.orm);
      console.log(applied.length ? `applied: ${applied.join(', ')}` : 'no pending migrations');
    } else if (cmd === 'down') {
      const toIdx = rest.indexOf('--to');
      const to = toIdx >= 0 ? rest[toIdx + 1] : undefined;
      const reverted = await migrateDown(db.orm, { to: to === '0' ? 0 : to });
      console.log(reverted.length ? `reverted: ${reverted.join(', ')}` : 'nothing to revert');
    } else if (cmd === 'create') {
      const res = await db.orm.getMigrator().createMigration(undefined, true);
      console.log(`created ${res.fileName}; add it to migrations/index.ts`);
    } else {
      throw new Error(`unknown command "${cmd}" (up | down [--to NAME|0] | create)`);
    }
  } finally {
    await db.close();
  }
}

main().catch((err: unknown) => {
  console.error(err instanceof Error ? err.message : err);
  process.exit(1);
});
