/**
 * Model prices: USD per million tokens, which is the same number as micro-USD per token. A row's
 * cost is computed when its call is written and settled, at the price then in force, and stored
 * in the row (`costmicrousd`): a later price change never rewrites history.
 */
export interface ModelPrice {
  /** USD per 1M prompt tokens not read from the provider's cache. */
  input: number;
  /** USD per 1M cached prompt tokens. @default input */
  cachedInput: number;
  /** USD per 1M completion tokens. */
  output: number;
}

/**
 * OpenAI's list prices (Standard tier) of the models README names, as published on
 * platform.openai.com/docs/pricing on 2025-08-01 (the date of this table). MODEL_PRICES overrides
 * any entry and adds others.
 */
export const DEFAULT_PRICES_DATE = '2025-08-01';
export const DEFAULT_PRICES: Record<string, ModelPrice> = {
  'gpt-4.1': { input: 2.0, cachedInput: 0.5, output: 8.0 },
  'gpt-4.1-mini': { input: 0.4, cachedInput: 0.1, output: 1.6 },
  'gpt-4.1-nano': { input: 0.1, cachedInput: 0.025, output: 0.4 },
  'gpt-4o': { input: 2.5, cachedInput: 1.25, output: 10.0 },
  'gpt-4o-mini': { input: 0.15, cachedInput: 0.075, output: 0.6 },
  'text-embedding-3-small': { input: 0.02, cachedInput: 0.02, output: 0 },
  'text-embedding-3-large': { input: 0.13, cachedInput: 0.13, output: 0 },
};

/** MODEL_PRICES is not what it must be (the message says what). */
export class PriceTableError extends Error {}

/**
 * Parses MODEL_PRICES: a JSON object of model → `{ "input": n, "cachedInput"?: n, "output": n }`
 * in USD per million tokens (non-negative finite numbers).
 */
export function parseModelPrices(json: string): Record<string, ModelPrice> {
  let raw: unknown;
  try {
    raw = JSON.parse(json);
  } catch {
    throw new PriceTableError('MODEL_PRICES is not valid JSON');
  }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw new PriceTableError('MODEL_PRICES must be a JSON object of model → prices');
  const out: Record<string, ModelPrice> = {};
  for (const [model, p] of Object.entries(raw as Record<string, unknown>)) {
    if (!model.trim()) throw new PriceTableError('MODEL_PRICES has an empty model name');
    const price = (p ?? {}) as Record<string, unknown>;
    const num = (k: string, required: boolean): number | undefined => {
      const v = price[k];
      if (v === undefined && !required) return undefined;
      if (typeof v !== 'number' || !Number.isFinite(v) || v < 0) throw new PriceTableError(`MODEL_PRICES["${model}"].${k} must be a non-negative number (USD per million tokens)`);
      return v;
    };
    const input = num('input', true)!;
    out[model] = { input, cachedInput: num('cachedInput', false) ?? input, output: num('output', true)! };
  }
  return out;
}

/** Prices by model: an exact name, else the longest name that the model extends with `-…` (a dated snapshot such as `gpt-4.1-2025-04-14`). */
export class PriceTable {
  constructor(private readonly prices: Record<string, ModelPrice>) {}

  priceOf(model: string): ModelPrice | null {
    const exact = this.prices[model];
    if (exact) return exact;
    let best: string | undefined;
    for (const name of Object.keys(this.prices)) if (model.startsWith(`${name}-`) && (!best || name.length > best.length)) best = name;
    return best ? this.prices[best]! : null;
  }

  /**
   * Micro-USD of a call, or null when the model has no price. Cached prompt tokens are part of
   * the prompt tokens (as providers report them) and are priced once, as cached.
   */
  costMicroUsd(model: string, t: { promptTokens: number; cachedPromptTokens?: number; completionTokens: number }): number | null {
    const p = this.priceOf(model);
    if (!p) return null;
    const cached = Math.min(Math.max(0, t.cachedPromptTokens ?? 0), t.promptTokens);
    return Math.round((t.promptTokens - cached) * p.input + cached * p.cachedInput + t.completionTokens * p.output);
  }
}

/** The cached prompt tokens a provider reported in its usage (`prompt_tokens_details.cached_tokens`), 0 when it did not. */
export function cachedPromptTokens(rawUsage: unknown): number {
  const n = (rawUsage as { prompt_tokens_details?: { cached_tokens?: unknown } } | null)?.prompt_tokens_details?.cached_tokens;
  return typeof n === 'number' && Number.isFinite(n) && n > 0 ? n : 0;
}
