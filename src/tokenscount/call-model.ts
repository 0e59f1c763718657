import { countTokens, encodeChat } from 'gpt-tokenizer';
import { queryRows, type SqlRunner } from '../db/sql';
import { APIConnectionTimeoutError, APIError, OpenAIError, type OpenAI } from 'openai';
import type { ChatCompletionMessageParam } from 'openai/resources/chat/completions';
import type { CompletionUsage } from 'openai/resources/completions';

/** Why a model call failed, as the contract's `extensions.reason` says. */
export type ModelFailureReason = 'timeout' | 'rate_limited' | 'upstream_error' | 'bad_response';
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
}

export interface CallModelResult {
  content: string;
  finish: ModelFinish;
  /** Set when `finish` is failed. */
  reason?: ModelFailureReason;
  error?: unknown;
  promptTokens: number;
  completionTokens: number;
  totalTokens: number;
  /** True when the provider sent no usage and the counts come from the tokenizer. */
  estimated: boolean;
  /** The tokenscount row written for this call. */
  tokensCountId: string;
}

/** Maps what the SDK throws to the contract's failure reasons. */
export function classifyModelError(err: unknown, timedOut: boolean): ModelFailureReason {
  if (timedOut || err instanceof APIConnectionTimeoutError) return 'timeout';
  if (err instanceof APIError && err.status === 429) return 'rate_limited';
  if (err instanceof APIError) return 'upstream_error';
  // the SDK parses each server-sent event as JSON; a broken one surfaces as a SyntaxError
  if (err instanceof SyntaxError) return 'bad_response';
  if (err instanceof OpenAIError && /pars|json|unexpected/i.test(err.message)) return 'bad_response';
  return 'upstream_error';
}

function estimatePrompt(messages: ChatCompletionMessageParam[]): number {
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

/**
 * The TypeScript twin of the seed's `call_model_and_log_tokens`: one streamed Chat Completions
 * call through the official SDK, and exactly one `tokenscount` row for it, whether it completes,
 * is stopped or fails. Model failures are returned (`finish: "failed"` with a reason), not
 * thrown; only a failure to write the row throws.
 */
export async function callModelAndLogTokens(p: CallModelParams): Promise<CallModelResult> {
  const ac = new AbortController();
  const onAbort = () => ac.abort(p.signal?.reason);
  if (p.signal?.aborted) ac.abort(p.signal.reason);
  else p.signal?.addEventListener('abort', onAbort, { once: true });
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    ac.abort(new Error('model call timed out'));
  }, p.timeoutMs);

  let content = '';
  let usage: CompletionUsage | undefined;
  let finish: ModelFinish = 'complete';
  let reason: ModelFailureReason | undefined;
  let error: unknown;
  try {
    const stream = await p.client.chat.completions.create(
      { model: p.model, messages: p.messages, stream: true, stream_options: { include_usage: true } },
      { signal: ac.signal },
    );
    for await (const chunk of stream) {
      if (chunk.usage) usage = chunk.usage;
      const delta = chunk.choices?.[0]?.delta?.content;
      if (delta) {
        content += delta;
        await p.onDelta?.(delta);
      }
    }
    if (ac.signal.aborted) throw ac.signal.reason;
  } catch (err) {
    if (p.signal?.aborted && !timedOut) {
      finish = 'stopped';
    } else {
      finish = 'failed';
      reason = classifyModelError(err, timedOut);
      error = err;
    }
  } finally {
    clearTimeout(timer);
    p.signal?.removeEventListener('abort', onAbort);
  }

  const estimated = !usage;
  const promptTokens = usage?.prompt_tokens ?? estimatePrompt(p.messages);
  const completionTokens = usage?.completion_tokens ?? (content ? countTokens(content) : 0);
  const totalTokens = usage?.total_tokens ?? promptTokens + completionTokens;
  // one raw statement: this runs once per model call, and the ORM's insert path (query builder,
  // entity validation) costs more than the statement itself
  const [row] = await queryRows<{ id: string }>(
    p.em,
    `insert into tokenscount (clientid, clienttype, provider, model, prompttokens, completiontokens, totaltokens, rawusage, meta, createdat)
     values (?, ?, ?, ?, ?, ?, ?, ?::jsonb, ?::jsonb, ?) returning id`,
    [
      p.clientId,
      p.clientType,
      p.provider,
      p.model,
      promptTokens,
      completionTokens,
      totalTokens,
      usage ? JSON.stringify(usage) : null,
      JSON.stringify({ ...p.meta, finish, ...(reason ? { reason } : {}), ...(estimated ? { estimated: true } : {}) }),
      new Date(),
    ],
  );
  const id = row!.id;
  return { content, finish, reason, error, promptTokens, completionTokens, totalTokens, estimated, tokensCountId: String(id) };
}
