import { inTransaction, queryRows, type SqlRunner, type SqlTx } from '../db/sql';
import { AppError, ErrorCode } from '../graphql/errors';

/** Budget periods: calendar days and months in UTC. */
export type BudgetPeriod = 'DAY' | 'MONTH';

/** A budget of a client now (the GraphQL `Budget`, budget.type.ts). */
export interface BudgetState {
  period: BudgetPeriod;
  limitTokens: number;
  usedTokens: number;
  remainingTokens: number;
  resetsAt: Date;
}

/**
 * The client's budget for the period is spent: the call was not made. `retryAt` tells a
 * background job when to run again (the job queue defers it to then).
 */
export class QuotaExceededError extends AppError {
  readonly retryAt: Date;
  constructor(readonly budget: BudgetState) {
    super(
      `Your ${budget.period === 'DAY' ? 'daily' : 'monthly'} token budget is spent (${budget.usedTokens} of ${budget.limitTokens}); it resets at ${budget.resetsAt.toISOString()}`,
      ErrorCode.QUOTA_EXCEEDED,
      { period: budget.period, limitTokens: budget.limitTokens, usedTokens: budget.usedTokens, resetsAt: budget.resetsAt.toISOString() },
    );
    this.retryAt = budget.resetsAt;
  }
}

interface Window {
  period: BudgetPeriod;
  limit: number;
  start: Date;
  resetsAt: Date;
}

/**
 * Per-client token budgets (USER_DAILY_TOKEN_BUDGET, USER_MONTHLY_TOKEN_BUDGET), counted over
 * every row of the client in the period: replies, summaries, embeddings, pending calls at their
 * reservation. A call is admitted by {@link admit} in the transaction that writes its pending
 * row, under a per-client advisory lock, so admissions on every instance are serialised and the
 * spend past a limit is bounded by what admitted calls use beyond their reservation (their
 * completions are capped at the reservation by `max_tokens`).
 */
export class TokenBudgets {
  /** The clock (tests move it to see a period roll over). */
  now: () => Date = () => new Date();

  constructor(private readonly limits: { dayTokens: number; monthTokens: number }) {}

  get enabled(): boolean {
    return this.limits.dayTokens > 0 || this.limits.monthTokens > 0;
  }

  private windows(): Window[] {
    const now = this.now();
    const y = now.getUTCFullYear();
    const m = now.getUTCMonth();
    const out: Window[] = [];
    if (this.limits.dayTokens > 0) {
      const start = new Date(Date.UTC(y, m, now.getUTCDate()));
      out.push({ period: 'DAY', limit: this.limits.dayTokens, start, resetsAt: new Date(start.getTime() + 86_400_000) });
    }
    if (this.limits.monthTokens > 0) {
      out.push({ period: 'MONTH', limit: this.limits.monthTokens, start: new Date(Date.UTC(y, m, 1)), resetsAt: new Date(Date.UTC(y, m + 1, 1)) });
    }
    return out;
  }

  /** Each configured budget with what is used now (one statement over the `(clientid, createdat)` index). */
  async states(on: SqlRunner | SqlTx, client: { clientId: string; clientType: string }): Promise<BudgetState[]> {
    const windows = this.windows();
    if (!windows.length) return [];
    const first = windows.reduce((a, w) => (w.start < a ? w.start : a), windows[0]!.start);
    const [row] = await queryRows<Record<string, string>>(
      on,
      `select ${windows.map((_, i) => `coalesce(sum(totaltokens) filter (where createdat >= ?), 0)::int8::text as u${i}`).join(', ')}
       from tokenscount where clientid = ? and clienttype = ? and createdat >= ?`,
      [...windows.map((w) => w.start), client.clientId, client.clientType, first],
    );
    return windows.map((w, i) => {
      const used = Number(row?.[`u${i}`] ?? 0);
      const clamp = (n: number) => Math.min(n, 2_147_483_647);
      return {
        period: w.period,
        limitTokens: clamp(w.limit),
        usedTokens: clamp(used),
        remainingTokens: clamp(Math.max(0, w.limit - used)),
        resetsAt: w.resetsAt,
      };
    });
  }

  /**
   * In `tx`: takes the client's lock (held to the commit) and throws {@link QuotaExceededError}
   * when reserving `tokens` more would pass a budget. The caller writes the reservation (the
   * pending row) in the same transaction.
   */
  async admit(tx: SqlTx, client: { clientId: string; clientType: string }, tokens: number): Promise<void> {
    await queryRows(tx, `select pg_advisory_xact_lock(hashtextextended(?, 0))`, [`tokenscount-budget:${client.clientType}:${client.clientId}`]);
    for (const b of await this.states(tx, client)) {
      if (b.usedTokens + tokens > b.limitTokens) throw new QuotaExceededError(b);
    }
  }

  /** Runs `write` (the pending row) after admitting `tokens`, atomically; without budgets, just `write`. */
  async reserve<T>(sql: SqlRunner, client: { clientId: string; clientType: string }, tokens: number, write: (on: SqlTx | SqlRunner) => Promise<T>): Promise<T> {
    if (!this.enabled) return write(sql);
    return inTransaction(sql, async (tx) => {
      await this.admit(tx, client, tokens);
      return write(tx);
    });
  }
}
