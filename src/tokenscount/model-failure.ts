import { APIConnectionError, APIConnectionTimeoutError, APIError, APIUserAbortError, OpenAIError } from 'openai';

/** Why a model call failed, as the contract's `extensions.reason` says. */
export type ModelFailureReason = 'timeout' | 'rate_limited' | 'upstream_error' | 'bad_response';

/** The provider's `finish_reason` of the last choice chunk (`null` when no chunk had one). */
export type FinishReason = 'stop' | 'length' | 'content_filter' | 'tool_calls' | 'function_call';

export interface ModelFailure {
  reason: ModelFailureReason;
  /**
   * True when the failure says the provider is unwell for everyone (5xx, 429, timeouts, network
   * errors, broken streams), false when it concerns this request or our own setup (400 such as
   * a context that is too long, 401/403, 404, 422): only the former may open the breaker.
   */
  providerFault: boolean;
  /** HTTP status of the provider's answer, when there was one. */
  status?: number;
}

/**
 * The stream ended cleanly ([DONE] or end of body) but no chunk carried a `finish_reason`: a
 * proxy or the provider cut the reply, so the text cannot be trusted as complete.
 */
export class IncompleteStreamError extends Error {
  constructor() {
    super('the model stream ended without a finish_reason');
  }
}

/** Thrown by the caller's `onDelta`: ours, not the provider's. */
export class DeltaHandlerError extends Error {
  constructor(cause: unknown) {
    super('onDelta failed', { cause });
  }
}

/**
 * Maps what the SDK (or the stream checks) threw to a reason and to whether it is a provider
 * fault. A malformed event or a stream without `finish_reason` comes from the provider (or a
 * proxy in front of it) and breaks every request the same way, so it counts as a provider fault
 * even though its reason is `bad_response`; a 4xx about the request counts only for its caller.
 */
export function classifyModelFailure(err: unknown, timedOut: boolean): ModelFailure {
  if (timedOut || err instanceof APIConnectionTimeoutError) return { reason: 'timeout', providerFault: true };
  if (err instanceof DeltaHandlerError) return { reason: 'upstream_error', providerFault: false };
  if (err instanceof APIUserAbortError) return { reason: 'upstream_error', providerFault: false };
  if (err instanceof APIConnectionError) return { reason: 'upstream_error', providerFault: true };
  if (err instanceof APIError) {
    const status = err.status;
    // an `error` object inside the stream: the provider failed after it had started answering
    if (status === undefined) return { reason: 'upstream_error', providerFault: true };
    if (status === 429) return { reason: 'rate_limited', providerFault: true, status };
    if (status === 408) return { reason: 'timeout', providerFault: true, status };
    if (status >= 500) return { reason: 'upstream_error', providerFault: true, status };
    if (status === 400 || status === 404 || status === 413 || status === 422) return { reason: 'bad_response', providerFault: false, status };
    return { reason: 'upstream_error', providerFault: false, status };
  }
  if (err instanceof IncompleteStreamError) return { reason: 'bad_response', providerFault: true };
  // the SDK parses each server-sent event as JSON; a broken one surfaces as a SyntaxError
  if (err instanceof SyntaxError) return { reason: 'bad_response', providerFault: true };
  if (err instanceof OpenAIError && /pars|json|unexpected/i.test(err.message)) return { reason: 'bad_response', providerFault: true };
  // what fetch throws once the body is streaming (socket reset, "terminated"): the network
  return { reason: 'upstream_error', providerFault: true };
}

/** Maps what the SDK throws to the contract's failure reasons. */
export function classifyModelError(err: unknown, timedOut: boolean): ModelFailureReason {
  return classifyModelFailure(err, timedOut).reason;
}

/**
 * Whether a call's result should count against the provider in a circuit breaker: only failed
 * calls whose failure is a provider fault (5xx, 429, timeouts, network, broken streams).
 */
export function isProviderFault(r: { finish: string; providerFault?: boolean }): boolean {
  return r.finish === 'failed' && r.providerFault === true;
}
