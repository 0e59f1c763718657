import { chmodSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { Client } from 'pg';
import pino from 'pino';
import { startEmbeddedPostgres } from '../../src/db/embedded';
import { initOrm, migrateUp } from '../../src/db/orm';

/**
 * One PostgreSQL for the run: DATABASE_URL when set (a fresh database is created on it and
 * dropped afterwards), otherwise an embedded PostgreSQL in a temporary directory.
 * The run's database is migrated here once.
 */
export default async function globalSetup(): Promise<void> {
  let admin = process.env.DATABASE_URL;
  if (!admin) {
    const dir = mkdtempSync(join(tmpdir(), 'vision-path-test-'));
    // as root, PostgreSQL runs as the unprivileged postgres user, which must reach the directory
    chmodSync(dir, 0o755);
    const pg = await startEmbeddedPostgres({ dataDir: join(dir, 'pg'), logger: pino({ level: 'warn' }), persistent: false });
    (globalThis as Record<string, unknown>).__VP_EMBEDDED__ = pg;
    admin = pg.url;
  }
  const name = `vp_test_${Date.now()}_${randomBytes(3).toString('hex')}`;
  const c = new Client({ connectionString: admin });
  await c.connect();
  await c.query(`create database ${name}`);
  await c.end();
  const u = new URL(admin);
  u.pathname = `/${name}`;
  process.env.VP_TEST_ADMIN_URL = admin;
  process.env.VP_TEST_DATABASE_URL = u.toString();
  (globalThis as Record<string, unknown>).__VP_TEST_DB__ = name;

  const orm = await initOrm(u.toString(), { poolMax: 2 });
  await migrateUp(orm);
  await orm.close(true);
}
