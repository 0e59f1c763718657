import { execFileSync } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { randomBytes } from 'node:crypto';
import { Client } from 'pg';
import pino from 'pino';
import { startEmbeddedPostgres } from '../../src/db/embedded';

/**
 * One PostgreSQL for the run: DATABASE_URL when set (a fresh database is created on it and
 * dropped afterwards), otherwise an embedded PostgreSQL in a temporary directory.
 * The run's database is migrated here once, by the compiled migration CLI in a child process
 * (`npm test` builds first): loading MikroORM in jest's global-setup realm would leak its
 * metadata into the test realm.
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

  const cli = resolve(__dirname, '../../dist/src/db/migrate.cli.js');
  if (!existsSync(cli)) throw new Error(`${cli} is missing: run "npm run build" first (npm test does)`);
  execFileSync(process.execPath, [cli, 'up'], {
    env: { ...process.env, DATABASE_URL: u.toString(), LOG_LEVEL: 'warn' },
    stdio: ['ignore', 'ignore', 'inherit'],
  });
}
