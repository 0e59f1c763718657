import { MikroORM, type Options } from '@mikro-orm/core';
import { Migrator } from '@mikro-orm/migrations';
import { PostgreSqlDriver, type EntityManager } from '@mikro-orm/postgresql';
import { resolve } from 'node:path';
import { migrationsList } from '../../migrations/index';
import type { Logger } from '../logger';
import { TokensCount } from '../tokenscount/tokenscount.entity';
import { File } from '../vision/file.entity';
import { VisionMessage } from '../vision/message.entity';
import { Vision } from '../vision/vision.entity';
import { countStatement } from './sql-stats';

export type { EntityManager };
export type Orm = MikroORM<PostgreSqlDriver>;

export const entities = [Vision, VisionMessage, File, TokensCount];

/** MikroORM options for PostgreSQL at `url`; migrations come from `migrations/index.ts`. */
export function ormOptions(url: string, opts: { poolMax?: number; logger?: Logger } = {}): Options<PostgreSqlDriver> {
  return {
    driver: PostgreSqlDriver,
    clientUrl: url,
    entities,
    // the schema is owned by migrations, never by schema sync or discovery of the database
    discovery: { warnWhenNoEntities: true },
    pool: { min: 0, max: opts.poolMax ?? 10, idleTimeoutMillis: 30_000 },
    driverOptions: { connection: { application_name: 'vision-path' } },
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
export async function initOrm(url: string, opts: { poolMax?: number; logger?: Logger } = {}): Promise<Orm> {
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
