import { GraphQLError, type ExecutionResult } from 'graphql';
import type { Response as SseResponse } from 'graphql-sse';
import { ErrorCode, type AppError } from './errors';

/** The answers of the GraphQL over SSE route (sse.ts) that are not event streams, in the contract's shape. */

export type ErrorBody = { message: string; extensions: Record<string, unknown> };

/** An answer before any stream, in the contract's shape. */
export function refusal(status: number, statusText: string, error: ErrorBody, headers: Record<string, string> = {}): SseResponse {
  return [JSON.stringify({ errors: [error] }), { status, statusText, headers: { 'content-type': 'application/json; charset=utf-8', ...headers } }];
}

/** An identity problem as HTTP: UNAUTHENTICATED (401) or the provider's outage (503). */
export function identityRefusal(err: AppError): SseResponse {
  const { http, ...extensions } = err.extensions as { http?: { status?: number } } & Record<string, unknown>;
  const status = http?.status ?? 401;
  return refusal(status, status === 401 ? 'Unauthorized' : 'Service Unavailable', { message: err.message, extensions }, status === 401 ? { 'www-authenticate': 'Bearer' } : {});
}

/** A mutation asked for over GET (as Apollo answers it on /graphql): 405, BAD_USER_INPUT. */
export function mutationOverGet(): SseResponse {
  const error = { message: 'Cannot perform mutations over GET', extensions: { code: ErrorCode.BAD_USER_INPUT, reason: 'BAD_REQUEST' } };
  return refusal(405, 'Method Not Allowed', error, { allow: 'POST' });
}

/** Over a per-user or per-stream limit: RATE_LIMITED. */
export function tooMany(what: string, max: number): GraphQLError {
  return new GraphQLError(`At most ${max} ${what}`, { extensions: { code: ErrorCode.RATE_LIMITED } });
}

/** The body of the 429 for a user over MAX_WS_PER_USER open event streams. */
export function streamLimit(max: number): ErrorBody {
  return { message: `Too many open event streams for this user (at most ${max})`, extensions: { code: ErrorCode.RATE_LIMITED } };
}

/** An operation's refusal, sent as its result in the stream (graphql-sse needs `data` present). */
export function errorResult(errors: readonly GraphQLError[]): ExecutionResult {
  return { data: undefined, errors };
}

const PROTOCOL_HINTS: Record<number, string> = {
  404: 'Not Found: open an event stream with "accept: text/event-stream", or register one with PUT and send its token',
  406: 'Not Acceptable',
  415: 'Unsupported Media Type: send a POST body as application/json, or use GET',
};

/**
 * graphql-sse words its own protocol refusals (missing query, unknown stream, 404/405/415 without
 * a body) without a code; the contract promises one: BAD_USER_INPUT, reason BAD_REQUEST, as
 * /graphql answers a malformed request.
 */
export function withContractCode([body, init]: SseResponse): SseResponse {
  if (init.status < 400 || (typeof body !== 'string' && body !== null)) return [body, init];
  const extensions = { code: init.status >= 500 ? ErrorCode.INTERNAL_SERVER_ERROR : ErrorCode.BAD_USER_INPUT, reason: 'BAD_REQUEST' };
  let errors: { message?: unknown; extensions?: Record<string, unknown> }[] | undefined;
  try {
    errors = body ? (JSON.parse(body) as { errors?: typeof errors }).errors : undefined;
  } catch {
    errors = undefined;
  }
  if (errors?.length && errors.every((e) => e.extensions?.code)) return [body, init];
  const out = errors?.length
    ? errors.map((e) => ({ message: String(e.message ?? init.statusText), extensions }))
    : [{ message: PROTOCOL_HINTS[init.status] ?? init.statusText, extensions }];
  return [JSON.stringify({ errors: out }), { ...init, headers: { ...init.headers, 'content-type': 'application/json; charset=utf-8' } }];
}

/** A header value as one string (a repeated header joined as HTTP joins it). */
export function one(value: string | string[] | number | undefined): string | undefined {
  if (value === undefined) return undefined;
  return Array.isArray(value) ? value.join(', ') : String(value);
}
