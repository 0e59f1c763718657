import { Redis } from 'ioredis';

export const TEST_REDIS_URL = process.env.VP_TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';

/** True when a Redis answers at TEST_REDIS_URL (the team machines and CI run one). */
export async function redisAvailable(): Promise<boolean> {
  const r = new Redis(TEST_REDIS_URL, { lazyConnect: true, maxRetriesPerRequest: 0, connectTimeout: 1000, retryStrategy: () => null });
  r.on('error', () => undefined);
  try {
    await r.connect();
    return (await r.ping()) === 'PONG';
  } catch {
    return false;
  } finally {
    r.disconnect();
  }
}
