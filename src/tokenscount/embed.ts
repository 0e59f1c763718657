import type { OpenAI } from 'openai';
import type { SqlRunner } from '../db/sql';
import type { Logger } from '../logger';
import { beginCall, estimateCompletion, settleCallWithRetry } from './call-rows';
import { callDeadline } from './call-deadline';
import { classifyModelFailure, type ModelFailureReason } from './model-failure';
import type { PriceTable } from './prices';
import type { TokenBudgets } from './budgets';
import type { Metrics } from '../metrics/metrics';

export interface EmbedParams {
  /** Where the tokenscount row is written. */
  em: SqlRunner;
  client: OpenAI;
  clientId: string;
  clientType: string;
  provider: string;
  model: string;
  /** One or more texts: one call, one row. */
  input: string[];
  /** Asked of the model when set (text-embedding-3-*: shortened vectors). */
  dimensions?: number;
  /** The caller's context, stored in tokenscount.meta, e.g. `{ module: "search", purpose: "embedding" }`. */
  meta?: Record<string, unknown>;
  timeoutMs: number;
  signal?: AbortSignal;
  closing?: AbortSignal;
  logger?: Pick<Logger, 'warn' | 'error'>;
  /**
   * Return as soon as the provider answered; the row's final write (with its retries) follows.
   * For callers on a latency path (recall before a reply); the row is pending until then, and a
   * sweeper settles it if the process dies first.
   */
  settleInBackground?: boolean;
  /** Prices the row (micro-USD) when written and when settled; unset: no cost. */
  prices?: PriceTable;
  /** Token budgets of the client (see callModelAndLogTokens); an embedding reserves its input. */
  budgets?: TokenBudgets;
  /** Where the call is reported (metrics/): outcome, latency, tokens by `meta.purpose`. */
  metrics?: Pick<Metrics, 'modelCall'>;
}

export type EmbedResult =
  | { ok: true; vectors: number[][]; promptTokens: number; estimated: boolean; tokensCountId: string }
  | { ok: false; reason: ModelFailureReason; providerFault: boolean; status?: number; error: unknown; tokensCountId: string };

/**
 * One embeddings call through the official SDK, metered like a chat call: the tokenscount row is
 * written pending (with the local estimate) before the request leaves and settled with the
 * provider's usage when it ends (no completion tokens), or with `finish: "failed"` and a reason.
 * Failures are returned, never thrown; {@link TokensCountWriteError} when the row cannot be
 * written (then the model is not called).
 */
export async function embedAndLogTokens(p: EmbedParams): Promise<EmbedResult> {
  const estimate = p.input.reduce((n, t) => n + estimateCompletion(t), 0);
  const tokensCountId = await beginCall(p.em, {
    costMicroUsd: p.prices?.costMicroUsd(p.model, { promptTokens: estimate, completionTokens: 0 }) ?? null,
    clientId: p.clientId,
    clientType: p.clientType,
    provider: p.provider,
    model: p.model,
    promptTokens: estimate,
    meta: { ...p.meta, finish: 'pending', inputs: p.input.length },
  }, p.budgets);
  const deadline = callDeadline(p.signal, p.timeoutMs, 'embeddings call');
  let result: EmbedResult;
  let usage: { prompt_tokens: number; total_tokens: number } | undefined;
  const started = performance.now();
  try {
    const res = await p.client.embeddings.create(
      { model: p.model, input: p.input, encoding_format: 'float', ...(p.dimensions ? { dimensions: p.dimensions } : {}) },
      { signal: deadline.signal },
    );
    usage = res.usage;
    const vectors = [...res.data].sort((a, b) => a.index - b.index).map((d) => d.embedding);
    if (vectors.length !== p.input.length || vectors.some((v) => !Array.isArray(v) || v.length === 0 || v.some((x) => !Number.isFinite(x)))) {
      throw Object.assign(new Error(`the embeddings response has ${vectors.length} usable vectors for ${p.input.length} inputs`), { badResponse: true });
    }
    result = { ok: true, vectors, promptTokens: usage?.prompt_tokens ?? estimate, estimated: !usage, tokensCountId };
  } catch (err) {
    const failure = (err as { badResponse?: boolean }).badResponse
      ? { reason: 'bad_response' as const, providerFault: true, status: undefined }
      : classifyModelFailure(err, deadline.timedOut);
    result = { ok: false, reason: failure.reason, providerFault: failure.providerFault, status: failure.status, error: err, tokensCountId };
  } finally {
    deadline.dispose();
  }

  const prompt = usage?.prompt_tokens ?? estimate;
  p.metrics?.modelCall({
    purpose: p.meta?.purpose,
    outcome: result.ok ? 'complete' : result.reason,
    seconds: (performance.now() - started) / 1000,
    promptTokens: prompt,
    completionTokens: 0,
    estimated: !usage,
  });
  const settled = settleCallWithRetry(
    p.em,
    tokensCountId,
    {
      promptTokens: prompt,
      completionTokens: 0,
      totalTokens: usage?.total_tokens ?? prompt,
      rawUsage: usage ?? null,
      costMicroUsd: p.prices?.costMicroUsd(p.model, { promptTokens: prompt, completionTokens: 0 }) ?? null,
      meta: {
        ...p.meta,
        inputs: p.input.length,
        finish: result.ok ? 'complete' : 'failed',
        ...(result.ok ? {} : { reason: result.reason, ...(result.status ? { status: result.status } : {}) }),
        ...(usage ? {} : { estimated: true }),
      },
    },
    { closing: p.closing, logger: p.logger, attempts: 10 },
  );
  if (!p.settleInBackground) await settled;
  return result;
}
