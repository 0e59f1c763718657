import { rm } from 'node:fs/promises';
import { Client } from 'pg';
import type { EmbeddedPostgresHandle } from '../../src/db/embedded';
import { testFileDir } from './server';

export default async function globalTeardown(): Promise<void> {
  await rm(testFileDir(), { recursive: true, force: true });
  const g = globalThis as Record<string, unknown>;
  const embedded = g.__VP_EMBEDDED__ as EmbeddedPostgresHandle | undefined;
  if (embedded) {
    await embedded.stop(); // not persistent: the temporary cluster is deleted
    return;
  }
  const name = g.__VP_TEST_DB__ as string | undefined;
  const admin = process.env.VP_TEST_ADMIN_URL;
  if (!name || !admin) return;
  const c = new Client({ connectionString: admin });
  await c.connect();
  await c.query(`drop database if exists ${name} with (force)`);
  await c.end();
}
