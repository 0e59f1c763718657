import OpenAI from 'openai';

/**
 * The official SDK, pointed at OpenAI, any OpenAI-compatible server, or the offline responder.
 * SDK retries (429, 5xx, connection errors) happen only before a response starts streaming:
 * a reply that already produced bytes is never sent twice.
 */
export function createOpenAIClient(opts: { apiKey: string; baseURL?: string; timeoutMs: number; maxRetries: number }): OpenAI {
  return new OpenAI({
    apiKey: opts.apiKey,
    baseURL: opts.baseURL,
    timeout: opts.timeoutMs,
    maxRetries: opts.maxRetries,
  });
}

export type { OpenAI };
