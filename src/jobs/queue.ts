import PgBoss from 'pg-boss';
import type { Logger } from '../logger';

/** What a task gets besides its payload. */
export interface JobInfo {
  id: string;
  /** 0 on the first run, then 1, 2, ... on retries. */
  retryCount: number;
  /** Aborted when the queue stops while the job still runs (pass it to model calls). */
  signal: AbortSignal;
}

export type JobHandler<T> = (data: T, job: JobInfo) => Promise<void>;

export interface JobQueueOptions {
  /** The PostgreSQL the jobs live in (pg-boss keeps them in its own schema, `pgboss`). */
  connectionString: string;
  logger: Logger;
  /** Jobs this process runs at once, per task. @default 2 */
  concurrency?: number;
  /**
   * A job still active after this long belongs to a dead process (SIGKILL, lost machine): it is
   * failed and retried by whichever instance's maintenance sees it first. Longer than any task
   * can legitimately run. @default 180
   */
  expireSeconds?: number;
  /** How often maintenance (expiry, retention) runs on some instance. @default 30 */
  maintenanceSeconds?: number;
  /** How often an idle worker looks for jobs. @default 2 */
  pollSeconds?: number;
  /** Retries after the first failure, with exponential back-off. @default 5 */
  retryLimit?: number;
  /** The first back-off step. @default 5 */
  retryDelaySeconds?: number;
}

interface Registered {
  name: string;
  handler: JobHandler<unknown>;
}

/**
 * The durable background queue: pg-boss on the application's PostgreSQL. Any instance may run
 * any job (`SKIP LOCKED`); a job that fails is retried with back-off and logged; a job whose
 * process died is expired and retried elsewhere; each task's queue is `stately`, so per key
 * (e.g. a vision) at most one job waits and one runs, however many instances send it.
 *
 * Why pg-boss and not graphile-worker (both run on Node 20 here): graphile-worker 0.17 returns
 * the jobs of a crashed worker to the queue only after a fixed 4 hours, while pg-boss expires an
 * active job after `expireSeconds` and retries it.
 */
export class JobQueue {
  private readonly boss: PgBoss;
  private readonly tasks: Registered[] = [];
  private started = false;
  private stopped = false;
  /** Jobs of this process that run now: their abort controllers and their ends. */
  private readonly running = new Map<AbortController, Promise<unknown>>();

  constructor(private readonly opts: JobQueueOptions) {
    this.boss = new PgBoss({
      connectionString: opts.connectionString,
      max: 3,
      application_name: 'vision-path-jobs',
      maintenanceIntervalSeconds: opts.maintenanceSeconds ?? 30,
      // queue-size metrics are not used
      monitorStateIntervalSeconds: 3600,
    });
    this.boss.on('error', (err) => opts.logger.warn({ err }, 'job queue error'));
  }

  /** Registers a task before `start`. */
  register<T>(name: string, handler: JobHandler<T>): void {
    if (this.started) throw new Error('register tasks before the queue starts');
    this.tasks.push({ name, handler: handler as JobHandler<unknown> });
  }

  async start(): Promise<void> {
    const { opts } = this;
    await this.boss.start();
    this.started = true;
    for (const task of this.tasks) {
      const queue = {
        name: task.name,
        policy: 'stately' as const,
        retryLimit: opts.retryLimit ?? 5,
        retryDelay: opts.retryDelaySeconds ?? 5,
        retryBackoff: true,
        expireInSeconds: opts.expireSeconds ?? 180,
      };
      await this.ensureQueue(queue);
      const concurrency = opts.concurrency ?? 2;
      for (let i = 0; i < concurrency; i++) {
        await this.boss.work<unknown>(task.name, { pollingIntervalSeconds: opts.pollSeconds ?? 2, batchSize: 1, includeMetadata: true }, async ([job]) => {
          if (!job) return;
          // a job fetched while the queue was stopping (the fetch was in flight when stop began)
          // is not run: it fails back to the queue and runs again (here after a restart or on
          // another instance); running it would outlive stop() and the pools it closed
          if (this.stopped) throw new Error('the job queue is stopping');
          const ac = new AbortController();
          const info = { id: job.id, retryCount: (job as { retryCount?: number }).retryCount ?? 0, signal: ac.signal };
          const run = task.handler(job.data, info);
          this.running.set(ac, run.catch(() => undefined));
          try {
            await run;
          } catch (err) {
            // an error that says when to run again (a client's token budget, until its reset): the
            // job is queued again for then, under the same key, and this one completes
            const retryAt = (err as { retryAt?: unknown }).retryAt;
            if (retryAt instanceof Date) {
              const key = (job as { singletonKey?: string | null }).singletonKey ?? undefined;
              await this.boss.send(task.name, job.data as object, { ...(key ? { singletonKey: key } : {}), startAfter: retryAt });
              opts.logger.info({ job: task.name, jobId: job.id, retryAt }, 'background job deferred');
              return;
            }
            // pg-boss retries it; the log says which job and which attempt
            opts.logger.warn({ err, job: task.name, jobId: job.id }, 'background job failed; it is retried with back-off');
            throw err;
          } finally {
            this.running.delete(ac);
          }
        });
      }
    }
  }

  /** Creates or updates a task's queue; instances starting together may deadlock on it once. */
  private async ensureQueue(queue: Parameters<PgBoss['createQueue']>[1] & { name: string }): Promise<void> {
    for (let attempt = 0; ; attempt++) {
      try {
        if (await this.boss.getQueue(queue.name)) await this.boss.updateQueue(queue.name, queue);
        else await this.boss.createQueue(queue.name, queue);
        return;
      } catch (err) {
        const code = (err as { code?: string }).code;
        // 40P01 deadlock, 23505 created by the other instance meanwhile: look again
        if (attempt >= 5 || (code !== '40P01' && code !== '23505')) throw err;
        await new Promise((r) => setTimeout(r, 100 + Math.random() * 200));
      }
    }
  }

  /**
   * Queues a job; with `key`, a job of the same task and key that is already waiting absorbs it.
   * Never throws: a job that cannot be queued now is logged (the next trigger queues it again).
   */
  async send(name: string, data: object, key?: string): Promise<void> {
    if (!this.started || this.stopped) return;
    try {
      await this.boss.send(name, data, key ? { singletonKey: key } : {});
    } catch (err) {
      this.opts.logger.warn({ err, job: name }, 'queueing a background job failed');
    }
  }

  /** Jobs per registered task: waiting (created or retrying) and active, on every instance (metrics). */
  async sizes(): Promise<{ name: string; waiting: number; active: number }[]> {
    if (!this.started || this.stopped) return [];
    return Promise.all(
      this.tasks.map(async ({ name }) => {
        // states are ordered: created < retry < active < completed
        const [waiting, open] = await Promise.all([this.boss.getQueueSize(name), this.boss.getQueueSize(name, { before: 'completed' })]);
        return { name, waiting, active: Math.max(0, open - waiting) };
      }),
    );
  }

  /** Stops taking jobs and waits up to `timeoutMs` for running ones; the rest expire and run elsewhere. */
  async stop(timeoutMs = 5000): Promise<void> {
    if (!this.started || this.stopped) return;
    this.stopped = true;
    await this.boss.stop({ graceful: true, wait: true, timeout: Math.max(1000, timeoutMs) }).catch((err: unknown) => {
      this.opts.logger.warn({ err }, 'stopping the job queue failed');
    });
    // jobs still running past the grace (pg-boss has failed them: they run again elsewhere) are cut
    // short: their model calls abort and their handlers return, so pg-boss's workers end now; a
    // worker left running keeps pg-boss's own timers going after the stop
    if (!this.running.size) return;
    for (const ac of this.running.keys()) ac.abort(new Error('the job queue is stopping'));
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([Promise.all(this.running.values()), new Promise((r) => (timer = setTimeout(r, 2000)))]);
    clearTimeout(timer);
  }
}
