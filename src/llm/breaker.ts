import CircuitBreaker from 'opossum';

/** Why the breaker did not let a call through. */
export class BreakerOpenError extends Error {
  constructor() {
    super('the model provider is failing; calls are paused for a cool-down');
  }
}

class FailedResult<T> extends Error {
  constructor(readonly result: T) {
    super('model call failed');
  }
}

/**
 * A circuit breaker (opossum) in front of the model provider. After `threshold` failed calls in
 * the rolling minute (and at least half of the calls failing) it opens: calls fail at once with
 * {@link BreakerOpenError} instead of waiting for timeouts. After `cooldownMs` one call probes;
 * success closes it, failure opens it again.
 *
 * Only provider faults count as failures (the caller says which results are, e.g.
 * `isProviderFault`: 5xx, 429, timeouts, network): a 400 for one user's too long context, or a
 * database error before the call, must not fail everyone else's calls. A call that throws is
 * never a provider fault (provider failures are results), except while half-open: the probe did
 * not reach the provider, so the breaker stays open rather than closing untested.
 */
export class ModelBreaker {
  private readonly breaker: CircuitBreaker<[() => Promise<unknown>, (r: unknown) => boolean], unknown>;

  constructor(opts: { threshold: number; cooldownMs: number; onStateChange?: (state: 'open' | 'half-open' | 'closed') => void }) {
    this.breaker = new CircuitBreaker(
      async (call: () => Promise<unknown>, failed: (r: unknown) => boolean) => {
        const r = await call();
        if (failed(r)) throw new FailedResult(r);
        return r;
      },
      {
        timeout: false, // the call has its own timeout (LLM_TIMEOUT_MS)
        volumeThreshold: opts.threshold,
        errorThresholdPercentage: 50,
        rollingCountTimeout: 60_000,
        rollingCountBuckets: 12,
        resetTimeout: opts.cooldownMs,
        // opossum counts a filtered error as a success, which would close a half-open breaker
        errorFilter: (err: unknown) => !(err instanceof FailedResult) && !this.breaker.halfOpen,
      },
    );
    this.breaker.on('open', () => opts.onStateChange?.('open'));
    this.breaker.on('halfOpen', () => opts.onStateChange?.('half-open'));
    this.breaker.on('close', () => opts.onStateChange?.('closed'));
  }

  get opened(): boolean {
    return this.breaker.opened;
  }

  /**
   * Runs `call`; a result for which `providerFault` is true counts as a failure and is still
   * returned. What `call` throws is rethrown and does not count (see the class comment).
   * @throws BreakerOpenError when the breaker is open (`call` did not run).
   */
  async run<T>(call: () => Promise<T>, providerFault: (r: T) => boolean): Promise<T> {
    try {
      return (await this.breaker.fire(call, providerFault as (r: unknown) => boolean)) as T;
    } catch (err) {
      if (err instanceof FailedResult) return err.result as T;
      if ((err as { code?: string }).code === 'EOPENBREAKER') throw new BreakerOpenError();
      throw err;
    }
  }

  shutdown(): void {
    this.breaker.shutdown();
  }
}
