import OpenAI from 'openai';
import type { Logger } from '../logger';

/**
 * The official SDK, pointed at OpenAI, any OpenAI-compatible server, or the offline responder.
 * SDK retries (429, 5xx, connection errors) happen only before a response starts streaming:
 * a reply that already produced bytes is never sent twice.
 */
export function createOpenAIClient(opts: { apiKey: string; baseURL?: string; timeoutMs: number; maxRetries: number; logger: Logger }): OpenAI {
  const log = opts.logger.child({ component: 'openai' });
  // the SDK logs the raw text of chunks it cannot parse; only the first argument (its message)
  // reaches our log, so model output never does
  const first = (msg: unknown) => String(msg);
  return new OpenAI({
    apiKey: opts.apiKey,
    baseURL: opts.baseURL,
    timeout: opts.timeoutMs,
    maxRetries: opts.maxRetries,
    logger: {
      error: (m: unknown) => log.warn(first(m)),
      warn: (m: unknown) => log.warn(first(m)),
      info: (m: unknown) => log.debug(first(m)),
      debug: (m: unknown) => log.debug(first(m)),
    },
  });
}

export type { OpenAI };
