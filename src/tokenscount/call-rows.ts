import { countTokens, encodeChat } from 'gpt-tokenizer';
import type { ChatCompletionMessageParam } from 'openai/resources/chat/completions';
import { inTransaction, queryRows, type SqlOn, type SqlPart, type SqlRunner } from '../db/sql';
import { QuotaExceededError, type TokenBudgets } from './budgets';
import type { Logger } from '../logger';
import type { PriceTable } from './prices';

/**
 * The life of one `tokenscount` row: written `pending` before the model is called, `settled`
 * with the final numbers when the call ends, or settled from estimates by a sweeper when the
 * process that made the call died. So the table has one row per model call under every fault.
 */

/** The local tokenizer's count of a request's messages. */
export function estimatePrompt(messages: ChatCompletionMessageParam[]): number {
  const plain = messages.map((m) => ({
    role: m.role as 'user',
    content: typeof m.content === 'string' ? m.content : JSON.stringify(m.content ?? ''),
  }));
  try {
    return encodeChat(plain).length;
  } catch {
    return countTokens(plain.map((m) => m.content).join('\n'));
  }
}

export function estimateCompletion(text: string): number {
  return text ? countTokens(text) : 0;
}

/** The pending row could not be written, so the model was not called (no call without a row). */
export class TokensCountWriteError extends Error {
  constructor(cause: unknown) {
    super('the tokenscount row could not be written; the model was not called', { cause });
  }
}

export interface PendingCallRow {
  clientId: string;
  clientType: string;
  provider: string;
  model: string;
  /** The local estimate of the prompt, until the provider's numbers arrive. */
  promptTokens: number;
  meta: Record<string, unknown>;
  /** Cost of the prompt estimate (micro-USD), so a call in flight already counts; null: no price. */
  costMicroUsd?: number | null;
  /** Tokens reserved for the answer on top of the prompt (budgets count them until the call settles). @default 0 */
  reserveTokens?: number;
}

/** Writes the row of a call about to start; its id. */
export async function insertPendingCall(sql: SqlOn, row: PendingCallRow): Promise<string> {
  // one raw statement: this runs once per model call, and the ORM's insert path (query builder,
  // entity validation) costs more than the statement itself; createdat is the database's clock,
  // the one settleAbandonedCalls compares with
  const [r] = await queryRows<{ id: string }>(
    sql,
    `insert into tokenscount (clientid, clienttype, provider, model, prompttokens, completiontokens, totaltokens, meta, state, costmicrousd)
     values (?, ?, ?, ?, ?, 0, ?, ?::jsonb, 'pending', ?) returning id`,
    [row.clientId, row.clientType, row.provider, row.model, row.promptTokens, row.promptTokens + (row.reserveTokens ?? 0), JSON.stringify(row.meta), row.costMicroUsd ?? null],
  );
  return String(r!.id);
}

/**
 * {@link insertPendingCall} before a call: when the row cannot be written, {@link TokensCountWriteError}
 * (the model is not called). With `budgets`, the row is the call's reservation (prompt estimate +
 * `reserveTokens`), admitted atomically: {@link QuotaExceededError} when it would pass a budget.
 */
export async function beginCall(sql: SqlRunner, row: PendingCallRow, budgets?: TokenBudgets): Promise<string> {
  try {
    if (!budgets?.enabled) return await insertPendingCall(sql, row);
    return await budgets.reserve(sql, { clientId: row.clientId, clientType: row.clientType }, row.promptTokens + (row.reserveTokens ?? 0), (on) => insertPendingCall(on, row));
  } catch (err) {
    if (err instanceof QuotaExceededError) throw err;
    throw new TokensCountWriteError(err);
  }
}

export interface SettledCallRow {
  promptTokens: number;
  completionTokens: number;
  totalTokens: number;
  rawUsage: unknown;
  meta: Record<string, unknown>;
  /** At the price in force now (micro-USD); null: the model has no price. */
  costMicroUsd?: number | null;
}

/**
 * Stores a call's final numbers. By id alone, whatever the state: if a sweeper already settled
 * the row from estimates (this process was cut off from the database for longer than the
 * sweeper waits), the numbers of the live process are the better ones.
 */
export async function settleCall(sql: SqlRunner, id: string, row: SettledCallRow): Promise<void> {
  const { sql: text, params } = settleCallSql({ id, row });
  await queryRows(sql, text, params);
}

/** A call whose final numbers its caller writes (see `deferSettle` of callModelAndLogTokens). */
export interface CallSettlement {
  /** The tokenscount row. */
  id: string;
  row: SettledCallRow;
}

/**
 * {@link settleCall}'s statement, for a caller that runs it inside its own final write (as a CTE,
 * see {@link SqlPart}): the row is then settled atomically with what the call produced, in one
 * round trip.
 */
export function settleCallSql(s: CallSettlement): SqlPart {
  const { row } = s;
  return {
    sql: `update tokenscount set prompttokens = ?, completiontokens = ?, totaltokens = ?, rawusage = ?::jsonb, meta = ?::jsonb, state = 'settled', costmicrousd = ?
     where id = ?`,
    params: [row.promptTokens, row.completionTokens, row.totalTokens, row.rawUsage == null ? null : JSON.stringify(row.rawUsage), JSON.stringify(row.meta), row.costMicroUsd ?? null, s.id],
  };
}

export interface SettleRetry {
  /** Aborted when the process is shutting down: give up after a few attempts (the row stays pending). */
  closing?: AbortSignal;
  /** Attempts while the process runs. @default 20 */
  attempts?: number;
  logger?: Pick<Logger, 'warn' | 'error'>;
}

function pause(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const done = () => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal?.addEventListener('abort', done, { once: true });
  });
}

/**
 * {@link settleCall}, retried with back-off (0.1 s doubling up to 5 s) while the database is
 * away, as the reply's own final write is: a hiccup as a stream ends must not lose the numbers.
 * False when it gave up; the row then stays pending and {@link settleAbandonedCalls} settles it.
 */
export async function settleCallWithRetry(sql: SqlRunner, id: string, row: SettledCallRow, retry: SettleRetry = {}): Promise<boolean> {
  const attempts = retry.attempts ?? 20;
  for (let attempt = 0; ; attempt++) {
    try {
      await settleCall(sql, id, row);
      return true;
    } catch (err) {
      if (attempt + 1 >= attempts || (retry.closing?.aborted && attempt >= 3)) {
        retry.logger?.error({ err, tokensCountId: id, attempt }, 'settling the tokenscount row failed; it stays pending for the sweeper');
        return false;
      }
      retry.logger?.warn({ err, tokensCountId: id, attempt }, 'settling the tokenscount row failed; retrying');
      await pause(Math.min(5000, 100 * 2 ** attempt), retry.closing);
    }
  }
}

/**
 * Settles the rows of calls whose process died: rows still pending `olderThanMs` after they were
 * written keep their prompt estimate, get no completion (nothing is known of it) and are marked
 * `finish: "failed", reason: "interrupted", estimated: true`. `olderThanMs` must exceed the
 * longest live call (LLM_TIMEOUT_MS plus a margin). Run it after the sweepers that know more (a
 * module that kept the text of a cut reply settles its row first with {@link settlePendingCall}).
 * Safe on several instances at once: a row is settled by one of them. Returns how many.
 */
export async function settleAbandonedCalls(sql: SqlRunner, opts: { olderThanMs: number; prices?: PriceTable }): Promise<number> {
  return settleAndPrice(sql, opts.prices, (tx) =>
    queryRows<PricedRow>(
      tx,
    `update tokenscount
     set completiontokens = coalesce(completiontokens, 0),
         totaltokens = coalesce(prompttokens, 0) + coalesce(completiontokens, 0),
         meta = coalesce(meta, '{}'::jsonb) || jsonb_build_object('finish', 'failed', 'reason', 'interrupted', 'estimated', true),
         state = 'settled'
     where state = 'pending' and createdat < now() - ?::int * interval '1 millisecond'
     returning ${PRICED_COLUMNS}`,
      [Math.max(0, Math.floor(opts.olderThanMs))],
    ),
  );
}

/**
 * Settles rows and prices them in one transaction: a reader never sees a settled row that still
 * carries the pending row's cost (of the prompt estimate alone).
 */
async function settleAndPrice(sql: SqlRunner, prices: PriceTable | undefined, settle: (tx: SqlOn) => Promise<PricedRow[]>): Promise<number> {
  if (!prices) return (await settle(sql)).length;
  return inTransaction(sql, async (tx) => {
    const rows = await settle(tx);
    await priceSettled(tx, rows, prices);
    return rows.length;
  });
}

type PricedRow = { id: string; model: string; prompttokens: number; completiontokens: number };
const PRICED_COLUMNS = 'id, model, prompttokens, completiontokens';

/** Prices rows a sweeper settled from estimates (one statement), at the prices in force now. */
async function priceSettled(sql: SqlOn, rows: PricedRow[], prices?: PriceTable): Promise<void> {
  if (!prices || !rows.length) return;
  const costs = rows.map((r) => prices.costMicroUsd(r.model, { promptTokens: Number(r.prompttokens), completionTokens: Number(r.completiontokens) }));
  await queryRows(
    sql,
    `update tokenscount t set costmicrousd = c.cost from unnest(?::bigint[], ?::bigint[]) as c(id, cost) where t.id = c.id`,
    [`{${rows.map((r) => r.id).join(',')}}`, `{${costs.map((c) => (c === null ? 'NULL' : String(c))).join(',')}}`],
  );
}

export interface SettlePendingCall {
  /** The row's id (`CallModelResult.tokensCountId`), or: */
  id?: string;
  /** Top-level `meta` values the pending row has, e.g. `{ messageid: replyId }` (JSON containment). */
  meta?: Record<string, string>;
  /** What the call had produced, for the completion estimate. */
  completionText?: string;
  /** @default "interrupted" */
  reason?: string;
  /** Prices the settled row(s) at the prices in force now. */
  prices?: PriceTable;
}

/**
 * Settles the pending row(s) of a call that another module knows has ended without its process
 * (a reply closed by a stale-reply sweeper): the prompt estimate stays, the completion is the
 * local tokenizer's count of `completionText`, `finish: "failed"`, `estimated: true`. Rows
 * already settled are left alone. Looked up through the partial index of pending rows (the calls
 * in flight), so any meta key works. Returns how many rows were settled.
 */
export async function settlePendingCall(sql: SqlRunner, p: SettlePendingCall): Promise<number> {
  if (p.id === undefined && (!p.meta || Object.keys(p.meta).length === 0)) throw new TypeError('settlePendingCall needs an id or meta');
  const completion = estimateCompletion(p.completionText ?? '');
  const by = p.id !== undefined ? 'id = ?::bigint' : 'meta @> ?::jsonb';
  return settleAndPrice(sql, p.prices, (tx) =>
    queryRows<PricedRow>(
      tx,
      `update tokenscount
     set completiontokens = ?::int,
         totaltokens = coalesce(prompttokens, 0) + ?::int,
         meta = coalesce(meta, '{}'::jsonb) || jsonb_build_object('finish', 'failed', 'reason', ?::text, 'estimated', true),
         state = 'settled'
     where state = 'pending' and ${by}
     returning ${PRICED_COLUMNS}`,
      [completion, completion, p.reason ?? 'interrupted', p.id ?? JSON.stringify(p.meta)],
    ),
  );
}
