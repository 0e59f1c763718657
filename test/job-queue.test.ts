import { Client } from 'pg';
import pino from 'pino';
import { JobQueue } from '../src/jobs/queue';
import { createScratchDatabase } from './support/db';

/**
 * The durable queue's stop against a real PostgreSQL: nothing of the queue may run after stop()
 * returns (a job handler running then uses pools that are closed, and pg-boss keeps polling
 * timers alive until it ends: CI saw "a file required after the Jest environment was torn down").
 */
describe('JobQueue.stop', () => {
  let scratch: Awaited<ReturnType<typeof createScratchDatabase>>;
  const logger = pino({ level: 'silent' });

  beforeAll(async () => {
    scratch = await createScratchDatabase('vp_jobs');
  });
  afterAll(async () => {
    await scratch?.drop();
  });

  test('a job whose fetch was in flight when stop began is not run after the stop: it stays in the queue for a later run', async () => {
    // the task's queue exists (made by a first start) and holds one job, sent by a queue that runs no task
    const maker = new JobQueue({ connectionString: scratch.url, logger });
    maker.register('stop-test', async () => undefined);
    await maker.start();
    await maker.stop(1000);
    const sender = new JobQueue({ connectionString: scratch.url, logger });
    await sender.start();

    const lock = new Client({ connectionString: scratch.url });
    await lock.connect();
    const runs: number[] = [];
    const queue = new JobQueue({ connectionString: scratch.url, logger, pollSeconds: 0.5, concurrency: 1 });
    queue.register('stop-test', async () => {
      runs.push(Date.now());
    });
    try {
      await sender.send('stop-test', { n: 1 });
      // the worker's fetch (an UPDATE of pgboss.job) waits on this lock: stop begins while it is in flight
      await lock.query('begin');
      await lock.query('lock table pgboss.job in share mode');
      await queue.start();
      await waitFor(async () => {
        // a transaction keeps one snapshot of pg_stat_activity unless it is cleared
        await lock.query('select pg_stat_clear_snapshot()');
        const { rows } = await lock.query(
          `select count(*)::int as n from pg_stat_activity where datname = current_database() and wait_event_type = 'Lock' and application_name = 'vision-path-jobs'`,
        );
        return rows[0].n >= 1;
      });

      const stopping = queue.stop(1000);
      await new Promise((r) => setTimeout(r, 300));
      await lock.query('commit');
      await stopping;
      // the fetch returned the job once the lock went; its handler must not run, now or later
      await new Promise((r) => setTimeout(r, 1500));
      expect(runs).toEqual([]);
      // the job is not lost: it is not completed (it expires and runs again, or was failed back for a retry)
      const { rows } = await lock.query(`select state from pgboss.job where name = 'stop-test'`);
      expect(rows).toHaveLength(1);
      expect(['created', 'retry', 'active']).toContain(rows[0].state);
    } finally {
      await lock.query('rollback').catch(() => undefined);
      await lock.end();
      await queue.stop(1000);
      await sender.stop(1000);
    }
  }, 30_000);
});

async function waitFor(cond: () => Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > until) throw new Error('timed out waiting');
    await new Promise((r) => setTimeout(r, 50));
  }
}
