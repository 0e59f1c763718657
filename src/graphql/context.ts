import type { EntityManager } from '@mikro-orm/postgresql';
import type { Config } from '../config';
import type { SqlRunner } from '../db/sql';
import type { Logger } from '../logger';
import type { FilesModule } from '../files/files.module';
import type { TokenBudgets } from '../tokenscount/budgets';
import type { MemoryService } from '../memory/memory.service';
import type { SearchService } from '../search/search.service';
import type { DialogService } from '../vision/dialog.service';
import type { VisionLoaders } from '../vision/vision.loaders';
import type { Identity } from './auth';
import type { AppPubSub } from './pubsub';

/** Built once per HTTP request and per subscription operation. */
export interface GraphQLContext {
  /** Null only for anonymous introspection; every root field is @Authorized. */
  user: Identity | null;
  /**
   * A fork of the global EntityManager: its own identity map, never shared between requests.
   * For code that needs the unit of work; the current resolvers and services run raw statements
   * through `sql` and never fork one.
   */
  em: EntityManager;
  /**
   * Raw statements outside any unit of work (no identity map, nothing to fork): for reads that
   * build their own read objects, e.g. the ownership check of a subscription, which would
   * otherwise keep a forked EntityManager alive for the subscription's lifetime.
   */
  sql: SqlRunner;
  loaders: VisionLoaders;
  config: Config;
  logger: Logger;
  dialog: DialogService;
  memory: MemoryService;
  search: SearchService;
  files: FilesModule;
  budgets: TokenBudgets;
  pubsub: AppPubSub;
  /** Notes for the client beside the data, sent as `extensions.warnings` (e.g. a search answered by TEXT). */
  warnings?: { code: string; message: string }[];
}

/** What every operation shares: the process's services. */
export type ContextServices = Omit<GraphQLContext, 'user' | 'em' | 'loaders' | 'warnings'> & {
  /** Forks the request's EntityManager. */
  fork(): EntityManager;
  createLoaders(sql: SqlRunner): VisionLoaders;
};

/**
 * The context of one operation. The EntityManager fork and the loaders are made on first use:
 * many operations (and every subscription event) never touch them. A class, so that the
 * thousands of contexts of idle subscriptions hold two fields each and share the rest.
 */
export class OperationContext implements GraphQLContext {
  private forked?: EntityManager;
  private made?: VisionLoaders;
  warnings?: { code: string; message: string }[];

  constructor(
    readonly user: Identity | null,
    private readonly services: ContextServices,
  ) {}

  get em(): EntityManager {
    return (this.forked ??= this.services.fork());
  }
  get loaders(): VisionLoaders {
    return (this.made ??= this.services.createLoaders(this.sql));
  }
  get sql(): SqlRunner {
    return this.services.sql;
  }
  get config(): Config {
    return this.services.config;
  }
  get logger(): Logger {
    return this.services.logger;
  }
  get dialog(): DialogService {
    return this.services.dialog;
  }
  get memory(): MemoryService {
    return this.services.memory;
  }
  get search(): SearchService {
    return this.services.search;
  }
  get files(): FilesModule {
    return this.services.files;
  }
  get budgets(): TokenBudgets {
    return this.services.budgets;
  }
  get pubsub(): AppPubSub {
    return this.services.pubsub;
  }
}
