import type { Redis } from 'ioredis';
import { RateLimiterMemory, RateLimiterRedis, RateLimiterRes, type RateLimiterAbstract } from 'rate-limiter-flexible';
import { AppError, ErrorCode } from './errors';

export class RateLimitedError extends AppError {
  constructor(what: string, retryAfterSeconds: number) {
    super(`Too many ${what}; retry in ${retryAfterSeconds} s`, ErrorCode.RATE_LIMITED, { retryAfterSeconds }, 429);
  }
}

/**
 * Per-user limits with `rate-limiter-flexible`: in Redis when there is one (shared by every
 * instance), in memory otherwise. A limit of 0 is off.
 *
 * A Redis outage never fails or holds an operation: the in-memory insurance limiter counts
 * instead (per instance) when a Redis command fails, which the connection bounds by its command
 * timeout, and at once while the connection is not ready (a dropped or hung Redis), so only the
 * operations caught in the first timeout of an outage wait for it.
 */
export class RateLimits {
  private readonly sends?: RateLimiterAbstract;
  private readonly ops?: RateLimiterAbstract;
  private readonly downloads?: RateLimiterAbstract;
  private readonly exports?: RateLimiterAbstract;

  constructor(opts: { sendsPerMinute: number; opsPerSecond: number; downloadsPerMinute?: number; exportsPerHour?: number; redis?: Redis }) {
    const make = (keyPrefix: string, points: number, duration: number): RateLimiterAbstract | undefined => {
      if (points <= 0) return undefined;
      if (!opts.redis) return new RateLimiterMemory({ keyPrefix, points, duration });
      return new RateLimiterRedis({
        storeClient: opts.redis,
        keyPrefix: `vision-path:rl:${keyPrefix}`,
        points,
        duration,
        rejectIfRedisNotReady: true,
        insuranceLimiter: new RateLimiterMemory({ keyPrefix, points, duration }),
      });
    };
    this.sends = make('sends', opts.sendsPerMinute, 60);
    this.ops = make('ops', opts.opsPerSecond, 1);
    this.downloads = make('downloads', opts.downloadsPerMinute ?? 0, 60);
    this.exports = make('exports', opts.exportsPerHour ?? 0, 3600);
  }

  /** One GraphQL operation (query, mutation or subscription start) of the user. */
  consumeOperation(userId: string): Promise<void> {
    return this.consume(this.ops, userId, 'requests');
  }

  /** One sendMessage or retryReply of the user. */
  consumeSend(userId: string): Promise<void> {
    return this.consume(this.sends, userId, 'messages');
  }

  /** One download of a file of the user (a genuine signed link, whoever holds it). */
  consumeDownload(ownerId: string): Promise<void> {
    return this.consume(this.downloads, ownerId, 'downloads');
  }

  /** One export of a vision of the user (exportVision that found the vision). */
  consumeExport(userId: string): Promise<void> {
    return this.consume(this.exports, userId, 'exports');
  }

  private async consume(limiter: RateLimiterAbstract | undefined, userId: string, what: string): Promise<void> {
    if (!limiter) return;
    try {
      await limiter.consume(userId);
    } catch (res) {
      if (res instanceof RateLimiterRes) throw new RateLimitedError(what, Math.max(1, Math.ceil(res.msBeforeNext / 1000)));
      throw res;
    }
  }
}
