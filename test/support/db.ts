import { randomBytes } from 'node:crypto';
import { Client } from 'pg';

/** Admin URL of the PostgreSQL that the suite runs against (set by global-setup). */
export function adminUrl(): string {
  const url = process.env.VP_TEST_ADMIN_URL;
  if (!url) throw new Error('VP_TEST_ADMIN_URL is not set: run the tests through jest (global-setup)');
  return url;
}

/** The database of this run (fresh, migrated by the first server that starts). */
export function testDatabaseUrl(): string {
  const url = process.env.VP_TEST_DATABASE_URL;
  if (!url) throw new Error('VP_TEST_DATABASE_URL is not set: run the tests through jest (global-setup)');
  return url;
}

function withDatabase(url: string, name: string): string {
  const u = new URL(url);
  u.pathname = `/${name}`;
  return u.toString();
}

export async function adminQuery(sql: string): Promise<void> {
  const c = new Client({ connectionString: adminUrl() });
  await c.connect();
  try {
    await c.query(sql);
  } finally {
    await c.end();
  }
}

/** A new empty database on the test server; returns its URL and a function that drops it. */
export async function createScratchDatabase(prefix = 'vp_scratch'): Promise<{ url: string; name: string; drop(): Promise<void> }> {
  const name = `${prefix}_${randomBytes(5).toString('hex')}`;
  await adminQuery(`create database ${name}`);
  return {
    name,
    url: withDatabase(adminUrl(), name),
    drop: () => adminQuery(`drop database if exists ${name} with (force)`),
  };
}

export { withDatabase };
