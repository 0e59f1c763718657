import type { OpenAI } from 'openai';
import type { ChatCompletionMessageParam, ChatCompletionTool } from 'openai/resources/chat/completions';
import type { CompletionUsage } from 'openai/resources/completions';
import type { SqlRunner } from '../db/sql';
import type { Logger } from '../logger';
import { beginCall, estimateCompletion, estimatePrompt, settleCallWithRetry, type CallSettlement, type SettledCallRow } from './call-rows';
import { callDeadline } from './call-deadline';
import { cachedPromptTokens, type PriceTable } from './prices';
import type { TokenBudgets } from './budgets';
import type { Metrics } from '../metrics/metrics';
import {
  classifyModelFailure,
  DeltaHandlerError,
  IncompleteStreamError,
  type FinishReason,
  type ModelFailure,
  type ModelFailureReason,
} from './model-failure';

export { classifyModelError, classifyModelFailure, isProviderFault, type FinishReason, type ModelFailure, type ModelFailureReason } from './model-failure';
export { settleAbandonedCalls, settleCallSql, settleCallWithRetry, settlePendingCall, TokensCountWriteError, type CallSettlement, type SettlePendingCall } from './call-rows';

export type ModelFinish = 'complete' | 'stopped' | 'failed';

export interface CallModelParams {
  /** Where the tokenscount row is written: an EntityManager (or any runner of raw statements). */
  em: SqlRunner;
  client: OpenAI;
  /** Who spent the tokens: a user id, a visitor id, a job name... */
  clientId: string;
  /** "user", "visitor", "system", ... */
  clientType: string;
  /** @example "openai" */
  provider: string;
  model: string;
  messages: ChatCompletionMessageParam[];
  /** The caller's context, stored in tokenscount.meta, e.g. `{ module: "vision", visionid }`. */
  meta?: Record<string, unknown>;
  /** Aborting it stops the call: the result is `stopped` with the text so far. */
  signal?: AbortSignal;
  /** The whole call, from request to last chunk. */
  timeoutMs: number;
  /** Each piece of content as it arrives, in order; awaited before the next one. */
  onDelta?: (delta: string) => void | Promise<void>;
  /**
   * Function tools offered to the model (one call at a time: `parallel_tool_calls` false). The
   * calls it makes come back whole in {@link CallModelResult.toolCalls}; running them is the caller's.
   */
  tools?: ChatCompletionTool[];
  /** The longest answer the model may give (`max_tokens`); unset: the model's own limit. */
  maxTokens?: number;
  /**
   * The caller's count of the request with the model's own tokenizer, stored beside the
   * provider's `prompt_tokens` (drift); unset: gpt-tokenizer's default encoding estimates it.
   */
  localPromptTokens?: number;
  /**
   * Aborted when the process shuts down: the final write of the row then gives up after a few
   * attempts instead of ~20 (the row stays pending and a sweeper settles it).
   */
  closing?: AbortSignal;
  /** Attempts of the row's final write while the process runs. @default 20 */
  settleAttempts?: number;
  /**
   * The caller writes the row's final numbers itself, inside its own final write
   * (`settleCallSql(result.settlement)` as a CTE: one round trip less, and the row settles
   * atomically with what the call produced), and falls back to `settleCallWithRetry` when that
   * write gives up. The row stays pending until then; a caller that dies leaves it to the
   * sweepers, as a process killed mid-call does.
   */
  deferSettle?: boolean;
  /** Where failed attempts of the row's final write are reported. */
  logger?: Pick<Logger, 'warn' | 'error'>;
  /**
   * Prices the row (micro-USD) when written (the prompt estimate) and when settled (cached
   * prompt tokens as cached), stopped and failed streams alike; unset: no cost.
   */
  prices?: PriceTable;
  /**
   * Token budgets of the client: the call is admitted (and its row written as a reservation of the
   * prompt estimate + `maxTokens`) atomically, or {@link QuotaExceededError} is thrown and the model
   * is not called. Pass `maxTokens` with them, so an answer cannot outgrow its reservation.
   */
  budgets?: TokenBudgets;
  /** Where the call is reported (metrics/): outcome, latency to the first token and in all, tokens by `meta.purpose`. */
  metrics?: Pick<Metrics, 'modelCall'>;
}

/** A function call the model made, its arguments as the raw text it streamed (JSON, unchecked). */
export interface ModelToolCall {
  id: string;
  name: string;
  arguments: string;
}

export interface CallModelResult {
  content: string;
  /** Function calls of a `complete` call, in order (empty when it made none or the call did not complete). */
  toolCalls: ModelToolCall[];
  finish: ModelFinish;
  /** Set when `finish` is failed. */
  reason?: ModelFailureReason;
  /** Set when `finish` is failed: whether it says the provider is failing for everyone (see isProviderFault). */
  providerFault?: boolean;
  /** HTTP status of a failed call, when the provider answered with one. */
  status?: number;
  error?: unknown;
  /**
   * The provider's `finish_reason`. A `complete` call has one: `length` (max tokens reached) and
   * `content_filter` mean the text is cut short on purpose, so a client can offer "continue".
   * `null` when the call was stopped, failed before the end, or the stream had none (then the
   * call is `failed` with `bad_response`).
   */
  finishReason: FinishReason | null;
  promptTokens: number;
  completionTokens: number;
  totalTokens: number;
  /** True when the provider sent no usage and the counts come from the tokenizer. */
  estimated: boolean;
  /** The local tokenizer's count of the prompt, kept beside the provider's (meta.localPromptTokens). */
  localPromptTokens: number;
  /** The tokenscount row written for this call. */
  tokensCountId: string;
  /** False when the row's final write gave up (shutdown), or was deferred: it stays pending until then. */
  settled: boolean;
  /** With `deferSettle`: the row's final numbers, for the caller's own final write. */
  settlement?: CallSettlement;
}

/**
 * The TypeScript twin of the seed's `call_model_and_log_tokens`: one streamed Chat Completions
 * call through the official SDK, and exactly one `tokenscount` row for it. The row is written
 * (pending, with the local prompt estimate) before the request leaves, so a process killed
 * mid-stream still leaves it for the sweeper; when that write fails the model is not called and
 * {@link TokensCountWriteError} is thrown. When the call ends the row gets the final numbers,
 * retried through database hiccups (with `deferSettle`, the caller writes them in its own final
 * statement). Model failures are returned (`finish: "failed"` with a reason), never thrown.
 */
export async function callModelAndLogTokens(p: CallModelParams): Promise<CallModelResult> {
  const localPromptTokens = p.localPromptTokens ?? estimatePrompt(p.messages);
  const tokensCountId = await beginCall(p.em, {
    clientId: p.clientId,
    clientType: p.clientType,
    provider: p.provider,
    model: p.model,
    promptTokens: localPromptTokens,
    meta: { ...p.meta, finish: 'pending', localPromptTokens },
    costMicroUsd: p.prices?.costMicroUsd(p.model, { promptTokens: localPromptTokens, completionTokens: 0 }) ?? null,
    reserveTokens: p.maxTokens ?? 0,
  }, p.budgets);
  const deadline = callDeadline(p.signal, p.timeoutMs, 'model call');

  let content = '';
  // streamed by index: the first piece has the id and name, the arguments arrive in pieces
  const calls: ModelToolCall[] = [];
  let usage: CompletionUsage | undefined;
  let finishReason: FinishReason | null = null;
  let finish: ModelFinish = 'complete';
  let failure: ModelFailure | undefined;
  let error: unknown;
  const started = performance.now();
  let firstTokenAt: number | undefined;
  try {
    const stream = await p.client.chat.completions.create(
      {
        model: p.model,
        messages: p.messages,
        stream: true,
        stream_options: { include_usage: true },
        // max_tokens, not max_completion_tokens: every OpenAI-compatible server (Ollama, vLLM) knows it
        ...(p.maxTokens ? { max_tokens: p.maxTokens } : {}),
        ...(p.tools?.length ? { tools: p.tools, parallel_tool_calls: false } : {}),
      },
      { signal: deadline.signal },
    );
    for await (const chunk of stream) {
      if (chunk.usage) usage = chunk.usage;
      const choice = chunk.choices?.[0];
      if (firstTokenAt === undefined && (choice?.delta?.content || choice?.delta?.tool_calls?.length)) firstTokenAt = performance.now();
      if (choice?.finish_reason) finishReason = choice.finish_reason;
      for (const t of choice?.delta?.tool_calls ?? []) {
        const call = (calls[t.index ?? 0] ??= { id: '', name: '', arguments: '' });
        if (t.id) call.id = t.id;
        if (t.function?.name) call.name = t.function.name;
        if (t.function?.arguments) call.arguments += t.function.arguments;
      }
      const delta = choice?.delta?.content;
      if (delta) {
        content += delta;
        try {
          await p.onDelta?.(delta);
        } catch (err) {
          throw new DeltaHandlerError(err);
        }
      }
    }
    if (deadline.signal.aborted) throw deadline.signal.reason;
    if (!finishReason) throw new IncompleteStreamError();
  } catch (err) {
    if (p.signal?.aborted && !deadline.timedOut) {
      finish = 'stopped';
    } else {
      finish = 'failed';
      failure = classifyModelFailure(err, deadline.timedOut);
      error = err instanceof DeltaHandlerError ? err.cause : err;
    }
    finishReason = null;
  } finally {
    deadline.dispose();
  }

  const ended = performance.now();
  const estimated = !usage;
  const promptTokens = usage?.prompt_tokens ?? localPromptTokens;
  const completionTokens = usage?.completion_tokens ?? estimateCompletion(content + calls.map((c) => c.name + c.arguments).join(''));
  const totalTokens = usage?.total_tokens ?? promptTokens + completionTokens;
  p.metrics?.modelCall({
    purpose: p.meta?.purpose,
    outcome: failure?.reason ?? finish,
    seconds: (ended - started) / 1000,
    firstTokenSeconds: firstTokenAt === undefined ? undefined : (firstTokenAt - started) / 1000,
    promptTokens,
    completionTokens,
    estimated,
  });
  const final: SettledCallRow = {
    promptTokens,
    completionTokens,
    totalTokens,
    rawUsage: usage ?? null,
    costMicroUsd: p.prices?.costMicroUsd(p.model, { promptTokens, cachedPromptTokens: cachedPromptTokens(usage), completionTokens }) ?? null,
    meta: {
      ...p.meta,
      finish,
      ...(failure ? { reason: failure.reason } : {}),
      ...(failure?.status ? { status: failure.status } : {}),
      ...(finishReason ? { finishReason } : {}),
      ...(estimated ? { estimated: true } : {}),
      localPromptTokens,
    },
  };
  const settled = p.deferSettle ? false : await settleCallWithRetry(p.em, tokensCountId, final, { closing: p.closing, attempts: p.settleAttempts, logger: p.logger });
  return {
    content,
    toolCalls: finish === 'complete' ? calls.filter(Boolean) : [],
    finish,
    reason: failure?.reason,
    providerFault: failure?.providerFault,
    status: failure?.status,
    error,
    finishReason,
    promptTokens,
    completionTokens,
    totalTokens,
    estimated,
    localPromptTokens,
    tokensCountId,
    settled,
    ...(p.deferSettle ? { settlement: { id: tokensCountId, row: final } } : {}),
  };
}
