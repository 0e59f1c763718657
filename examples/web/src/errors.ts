import { CombinedGraphQLErrors, ServerError } from '@apollo/client/errors';

/** An error as the UI shows it: the contract's `extensions.code` first. */
export interface ShownError {
  code: string;
  message: string;
  /** `extensions.reason` (LLM_FAILED: timeout, rate_limited, upstream_error, bad_response, …). */
  reason?: string;
}

interface GraphQLErrorLike {
  message: string;
  extensions?: Record<string, unknown>;
}

function fromGraphQLError(e: GraphQLErrorLike): ShownError {
  const ext = e.extensions ?? {};
  return {
    code: typeof ext.code === 'string' ? ext.code : 'ERROR',
    message: e.message,
    reason: typeof ext.reason === 'string' ? ext.reason : undefined,
  };
}

/** Whatever Apollo Client threw, as code + message. */
export function describeError(err: unknown): ShownError {
  if (CombinedGraphQLErrors.is(err) && err.errors.length > 0) return fromGraphQLError(err.errors[0] as GraphQLErrorLike);
  if (ServerError.is(err)) {
    // a 4xx/5xx with a JSON body that is not graphql-response+json still carries the errors
    try {
      const body = JSON.parse(err.bodyText) as { errors?: GraphQLErrorLike[] };
      if (body.errors?.length) return fromGraphQLError(body.errors[0]!);
    } catch {
      // not JSON
    }
    return { code: `HTTP_${err.statusCode}`, message: err.message };
  }
  if (err instanceof Error) return { code: 'NETWORK_ERROR', message: err.message };
  return { code: 'ERROR', message: String(err) };
}
