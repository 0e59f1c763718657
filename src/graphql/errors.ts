import { GraphQLError, type GraphQLFormattedError } from 'graphql';

/** The codes of the contract header; `extensions.code` is always one of these. */
export enum ErrorCode {
  UNAUTHENTICATED = 'UNAUTHENTICATED',
  NOT_FOUND = 'NOT_FOUND',
  BAD_USER_INPUT = 'BAD_USER_INPUT',
  VISION_NOT_ACTIVE = 'VISION_NOT_ACTIVE',
  VISION_BUSY = 'VISION_BUSY',
  NOTHING_TO_RETRY = 'NOTHING_TO_RETRY',
  LLM_FAILED = 'LLM_FAILED',
  RATE_LIMITED = 'RATE_LIMITED',
  QUOTA_EXCEEDED = 'QUOTA_EXCEEDED',
  INTERNAL_SERVER_ERROR = 'INTERNAL_SERVER_ERROR',
}

export class AppError extends GraphQLError {
  constructor(message: string, code: ErrorCode, extensions: Record<string, unknown> = {}, httpStatus?: number) {
    super(message, {
      extensions: { ...extensions, code, ...(httpStatus ? { http: { status: httpStatus } } : {}) },
    });
  }
}

export class UnauthenticatedError extends AppError {
  constructor(message = 'A valid identity is required') {
    super(message, ErrorCode.UNAUTHENTICATED, {}, 401);
  }
}

/**
 * The identity provider cannot be asked right now (e.g. the JWKS endpoint is down): not the
 * caller's fault, so not UNAUTHENTICATED. HTTP 503.
 */
export class AuthUnavailableError extends AppError {
  constructor(message = 'Identity cannot be verified right now; try again shortly') {
    super(message, ErrorCode.INTERNAL_SERVER_ERROR, { reason: 'auth_unavailable' }, 503);
  }
}

export class NotFoundError extends AppError {
  constructor(message = 'Vision not found') {
    super(message, ErrorCode.NOT_FOUND);
  }
}

export class BadUserInputError extends AppError {
  constructor(message: string, field?: string) {
    super(message, ErrorCode.BAD_USER_INPUT, field ? { field } : {});
  }
}

export class VisionNotActiveError extends AppError {
  constructor(status: string) {
    super(`The vision is ${status.toUpperCase()}; its dialog accepts no new messages`, ErrorCode.VISION_NOT_ACTIVE, {
      status: status.toUpperCase(),
    });
  }
}

/** True for an {@link AppError}, also when graphql-js or Apollo wrapped it. */
export function isAppError(err: unknown): boolean {
  for (let e = err as { originalError?: unknown } | undefined, i = 0; e && i < 4; i++) {
    if (e instanceof AppError) return true;
    e = e.originalError as { originalError?: unknown } | undefined;
  }
  return false;
}

const OWN_CODES = new Set<string>(Object.values(ErrorCode));

/**
 * Apollo and graphql-js report document problems with their own codes; the contract promises
 * its codes only, so those become BAD_USER_INPUT (the original code stays in `extensions.reason`).
 * PERSISTED_QUERY_* codes are kept: Apollo Client's APQ link depends on them.
 */
const INPUT_CODES = new Set([
  'GRAPHQL_PARSE_FAILED',
  'GRAPHQL_VALIDATION_FAILED',
  'BAD_REQUEST',
  'OPERATION_RESOLUTION_FAILURE',
]);

/** The contract code a raw `extensions.code` leaves the server as (what {@link createFormatError} makes of it; metrics). */
export function contractCode(code: unknown): string {
  const c = String(code ?? ErrorCode.INTERNAL_SERVER_ERROR);
  if (OWN_CODES.has(c) || c.startsWith('PERSISTED_QUERY')) return c;
  return INPUT_CODES.has(c) ? ErrorCode.BAD_USER_INPUT : ErrorCode.INTERNAL_SERVER_ERROR;
}

const DB_DOWN_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'ETIMEDOUT', '57P01', '57P02', '57P03', '08000', '08001', '08003', '08006']);
const DB_DOWN_MESSAGE =
  /Timeout acquiring a connection|Connection terminated|connect ECONNREFUSED|terminating connection|Connection ended|timeout exceeded when trying to connect|Query read timeout|Transaction query already complete|the database system is (starting up|shutting down)/i;

/** True when an error (or what caused it) says PostgreSQL cannot be reached right now. */
export function isDatabaseUnavailable(err: unknown): boolean {
  type Chain = { code?: unknown; name?: unknown; message?: unknown; originalError?: unknown; cause?: unknown; thrownValue?: unknown };
  for (let e = err as Chain | undefined, i = 0; e && i < 6; i++) {
    if (e.name === 'ConnectionException' || e.name === 'KnexTimeoutError') return true;
    if (typeof e.code === 'string' && DB_DOWN_CODES.has(e.code)) return true;
    if (typeof e.message === 'string' && DB_DOWN_MESSAGE.test(e.message)) return true;
    // graphql-js wraps thrown non-Error values (the pg driver throws some) as NonErrorThrown
    e = (e.originalError ?? e.cause ?? e.thrownValue) as Chain | undefined;
  }
  return false;
}

/**
 * Formats every error that leaves the server. Unknown errors (database, bugs) keep no message,
 * path to source or SQL in production: the client sees a generic INTERNAL_SERVER_ERROR and the
 * server log has the details.
 */
export function createFormatError(opts: { production: boolean; onInternal: (err: unknown) => void; onDatabaseDown?: (err: unknown) => void }) {
  return (formatted: GraphQLFormattedError, error: unknown): GraphQLFormattedError => {
    const code = String(formatted.extensions?.code ?? 'INTERNAL_SERVER_ERROR');
    // our own errors say what they mean (an INTERNAL_SERVER_ERROR of ours carries a `reason`)
    if (OWN_CODES.has(code) && (code !== ErrorCode.INTERNAL_SERVER_ERROR || isAppError(error))) {
      const { stacktrace: _s, http: _h, ...ext } = formatted.extensions ?? {};
      return { ...formatted, extensions: opts.production ? ext : formatted.extensions };
    }
    if (INPUT_CODES.has(code)) {
      return {
        message: formatted.message,
        locations: formatted.locations,
        extensions: { code: ErrorCode.BAD_USER_INPUT, reason: code },
      };
    }
    if (code.startsWith('PERSISTED_QUERY')) return formatted;
    if (isDatabaseUnavailable(error)) {
      opts.onDatabaseDown?.(error);
      return {
        message: 'The database is unavailable; try again shortly',
        path: formatted.path,
        extensions: { code: ErrorCode.INTERNAL_SERVER_ERROR, reason: 'database_unavailable' },
      };
    }
    opts.onInternal(error);
    if (opts.production) {
      return { message: 'Internal server error', path: formatted.path, extensions: { code: ErrorCode.INTERNAL_SERVER_ERROR } };
    }
    return { ...formatted, extensions: { ...formatted.extensions, code: ErrorCode.INTERNAL_SERVER_ERROR } };
  };
}
