import { GraphQLError, Kind, type GraphQLFormattedError } from 'graphql';
import type { Config } from '../config';
import type { Logger } from '../logger';
import { createServerFormatError } from './apollo';
import { ErrorCode } from './errors';

/** What an error asks of the HTTP response (Apollo's `extensions.http`). */
export interface HttpFromErrors {
  status?: number;
  headers: Map<string, string>;
}

/**
 * Errors as Apollo Server shapes them for a client, for the transports that do not go through
 * Apollo (WebSocket, SSE, and the HTTP query lane): Apollo's `normalizeAndFormatErrors` (the
 * `extensions.code` it defaults, `extensions.http` taken out for the response, stack traces
 * outside production) and then the server's `formatError`, so that every transport answers an
 * error alike.
 */
export class ClientErrors {
  private readonly formatError: ReturnType<typeof createServerFormatError>;
  private readonly production: boolean;

  constructor(config: Config, logger: Logger) {
    this.production = config.nodeEnv === 'production';
    this.formatError = createServerFormatError(config, logger);
  }

  /** One error as the client sees it. */
  format(error: GraphQLError): GraphQLFormattedError {
    return this.formatWith(error, undefined);
  }

  /** Several errors, and what they ask of the HTTP response (a status, headers). */
  formatAll(errors: readonly GraphQLError[]): { errors: GraphQLFormattedError[]; http: HttpFromErrors } {
    const http: HttpFromErrors = { headers: new Map() };
    return { errors: errors.map((e) => this.formatWith(e, http)), http };
  }

  private formatWith(error: GraphQLError, http: HttpFromErrors | undefined): GraphQLFormattedError {
    let out: GraphQLFormattedError;
    try {
      out = this.formatError(this.enrich(error, http), error);
    } catch (err) {
      out = this.production
        ? { message: 'Internal server error', extensions: { code: ErrorCode.INTERNAL_SERVER_ERROR } }
        : this.enrich(err instanceof GraphQLError ? err : new GraphQLError(String((err as Error)?.message ?? err), { originalError: err as Error }), undefined);
    }
    // field names must not be guessable in production; Apollo's own pattern (plugin/disableSuggestions)
    if (this.production && out.message.includes('Did you mean')) {
      out = { ...out, message: out.message.replace(/ ?Did you mean(.+?)\?$/, '') };
    }
    return out;
  }

  private enrich(error: GraphQLError, http: HttpFromErrors | undefined): GraphQLFormattedError {
    const { http: head, ...rest } = error.extensions;
    if (http && head && typeof head === 'object') {
      const { status, headers } = head as { status?: unknown; headers?: unknown };
      if (typeof status === 'number' && status) http.status = status;
      if (headers instanceof Map) for (const [name, value] of headers) http.headers.set(String(name), String(value));
    }
    const extensions: Record<string, unknown> = { ...rest, code: rest.code ?? ErrorCode.INTERNAL_SERVER_ERROR };
    if (!this.production) extensions.stacktrace = error.stack?.split('\n');
    return { ...error.toJSON(), extensions };
  }
}

/** The same error with an Apollo-style code (which `formatError` maps to the contract's codes). */
export function withCode(e: GraphQLError, code: string): GraphQLError {
  return new GraphQLError(e.message, {
    nodes: e.nodes,
    source: e.source,
    positions: e.positions,
    path: e.path,
    originalError: e.originalError ?? e,
    extensions: { ...e.extensions, code },
  });
}

/** Variables that do not fit their types: Apollo makes these BAD_USER_INPUT (requestPipeline.ts). */
export function isBadVariable(e: GraphQLError): boolean {
  const node = e.nodes?.length === 1 ? e.nodes[0] : undefined;
  if (e.extensions?.code != null || node?.kind !== Kind.VARIABLE_DEFINITION) return false;
  const v = `Variable "$${node.variable.name.value}" `;
  return ['has invalid value', 'got invalid value ', 'of required type ', 'of non-null type '].some((s) => e.message.startsWith(v + s));
}
