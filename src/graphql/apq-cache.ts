import type { Redis } from 'ioredis';
import type { Logger } from '../logger';

/** Apollo's `KeyValueCache<string>` (`@apollo/utils.keyvaluecache`), which `persistedQueries.cache` takes. */
export interface StringKeyValueCache {
  get(key: string): Promise<string | undefined>;
  set(key: string, value: string, options?: { ttl?: number | null }): Promise<void>;
  delete(key: string): Promise<boolean | void>;
}

/** How often a Redis outage is logged at most (every failed command would otherwise log a line). */
const LOG_EVERY_MS = 60_000;

/**
 * The APQ cache in Redis, shared by every instance: a document registered through one instance is
 * found by its hash on all of them. Apollo prefixes keys with `apq:`, so they are
 * `vision-path:apq:<sha256>`, each with the TTL Apollo passes (APQ_TTL_SECONDS).
 *
 * Redis is never needed for an operation to run: a failed GET is a miss (Apollo answers
 * PERSISTED_QUERY_NOT_FOUND and the client sends the full text once more) and a failed SET is
 * forgotten (the client sends the text again next time). Commands go over the pub/sub command
 * connection, so they are bounded by REDIS_COMMAND_TIMEOUT_MS and fail at once while it is down.
 */
export class RedisApqCache implements StringKeyValueCache {
  private lastLogged = 0;

  constructor(
    private readonly redis: Redis,
    private readonly logger: Logger,
    private readonly prefix = 'vision-path:',
  ) {}

  async get(key: string): Promise<string | undefined> {
    try {
      return (await this.redis.get(this.prefix + key)) ?? undefined;
    } catch (err) {
      this.outage(err, 'get');
      return undefined;
    }
  }

  async set(key: string, value: string, options?: { ttl?: number | null }): Promise<void> {
    try {
      const ttl = options?.ttl;
      if (typeof ttl === 'number' && ttl > 0) await this.redis.set(this.prefix + key, value, 'EX', Math.ceil(ttl));
      else await this.redis.set(this.prefix + key, value);
    } catch (err) {
      this.outage(err, 'set');
    }
  }

  async delete(key: string): Promise<boolean> {
    try {
      return (await this.redis.del(this.prefix + key)) > 0;
    } catch (err) {
      this.outage(err, 'delete');
      return false;
    }
  }

  private outage(err: unknown, what: string): void {
    const now = Date.now();
    if (now - this.lastLogged < LOG_EVERY_MS) return;
    this.lastLogged = now;
    this.logger.warn({ err: err instanceof Error ? err.message : String(err), what }, 'APQ cache: redis unavailable; clients resend full documents');
  }
}
