import type { EntityManager } from '@mikro-orm/postgresql';
import type { Config } from '../config';
import type { SqlRunner } from '../db/sql';
import type { Logger } from '../logger';
import type { DialogService } from '../vision/dialog.service';
import type { ReplyBuffer } from '../vision/reply-buffer';
import type { VisionLoaders } from '../vision/vision.loaders';
import type { Identity } from './auth';
import type { AppPubSub } from './pubsub';

/** Built once per HTTP request and per subscription operation. */
export interface GraphQLContext {
  /** Null only for anonymous introspection; every root field is @Authorized. */
  user: Identity | null;
  /** A fork of the global EntityManager: its own identity map, never shared between requests. */
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
  pubsub: AppPubSub;
  replyBuffer: ReplyBuffer;
}
