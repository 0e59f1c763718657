import { MikroORM, type Options } from '@mikro-orm/core';
import { Migrator } from '@mikro-orm/migrations';
import { PostgreSqlDriver, type EntityManager } from '@mikro-orm/postgresql';
import { resolve } from 'node:path';
import { migrationsList } from '../../migrations/index';
import type { Logger } from '../logger';
import { VisionSummary } from '../memory/summary.entity';
import { TokensCount } from '../tokenscount/tokenscount.entity';
import { File } from '../vision/file.entity';
import { VisionMessage } from '../vision/message.entity';
import { Vision } from '../vision/vision.entity';
import { countStatement } from './sql-stats';

export type { EntityManager };
export type Orm = MikroORM<PostgreSqlDriver>;

export const entities = [Vision, VisionMessage, File, TokensCount, VisionSummary];

/** MikroORM options for PostgreSQL at `url`; migrations come from `migrations/index.ts`. */
export interface OrmOpts {
  poolMax?: number;
  logger?: Logger;
  /** Longest wait for a pooled connection, a new connection or one statement. @default 5000 */
  timeoutMs?: number;
}

export function ormOptions(url: string, opts: OrmOpts = {}): Options<PostgreSqlDriver> {
  const timeout = opts.timeoutMs ?? 5000;
  return {
    driver: PostgreSqlDriver,
    clientUrl: url,
    entities,
    // the schema is owned by migrations, never by schema sync or discovery of the database
    discovery: { warnWhenNoEntities: true },
    pool: { min: 0, max: opts.poolMax ?? 10, idleTimeoutMillis: 30_000, acquireTimeoutMillis: timeout },
    // fail fast while PostgreSQL is unreachable: no request waits longer than DB_TIMEOUT_MS
    driverOptions: {
      acquireConnectionTimeout: timeout,
      // knex reports lost connections through its own logger (console by default)
      log: {
        warn: (m: unknown) => opts.logger?.warn({ component: 'knex' }, String(m)),
        error: (m: unknown) => opts.logger?.warn({ component: 'knex' }, String(m)),
        deprecate: (m: unknown) => opts.logger?.debug({ component: 'knex' }, String(m)),
        debug: (m: unknown) => opts.logger?.debug({ component: 'knex' }, String(m)),
      },
      connection: { application_name: 'vision-path', connectionTimeoutMillis: timeout, query_timeout: timeout },
    },
    allowGlobalContext: false,
    forceUtcTimezone: true,
    debug: false,
    logger: (message: string) => opts.logger?.debug({ component: 'orm' }, message),
    extensions: [Migrator],
    migrations: {
      tableName: 'mikro_orm_migrations',
      migrationsList,
      // where `npm run migration:create` writes new migrations
      path: resolve('migrations'),
      pathTs: resolve('migrations'),
      transactional: true,
      allOrNothing: true,
      snapshot: false,
      emit: 'ts',
    },
  };
}

/** Connects to PostgreSQL; every statement is counted for the request that runs it. */
export async function initOrm(url: string, opts: OrmOpts = {}): Promise<Orm> {
  const orm = await MikroORM.init<PostgreSqlDriver>(ormOptions(url, opts));
  orm.em.getConnection().getKnex().on('query', countStatement);
  return orm;
}

export async function migrateUp(orm: Orm): Promise<string[]> {
  const done = await orm.getMigrator().up();
  return done.map((m) => m.name);
}

export async function migrateDown(orm: Orm, opts: { to?: string | 0 } = {}): Promise<string[]> {
  const done = await orm.getMigrator().down(opts.to === undefined ? undefined : { to: opts.to });
  return done.map((m) => m.name);
}
