import {
  execute,
  getOperationAST,
  GraphQLError,
  type ExecutionArgs,
  type ExecutionResult,
  type FormattedExecutionResult,
  type GraphQLFormattedError,
  type GraphQLSchema,
} from 'graphql';
import type { SubscribePayload } from 'graphql-ws';
import type { Config } from '../config';
import type { Logger } from '../logger';
import { createDocumentCache, type Armor } from './apollo';
import { ClientErrors, isBadVariable, withCode } from './client-errors';
import { ErrorCode } from './errors';
import { CompiledOperations, runCompiled } from './executor';
import type { DocumentCache } from './subscriptions';
import { DocumentRefusedError, type TrustedDocuments } from './trusted-documents';

/**
 * Queries, mutations and subscriptions over WebSocket go through what Apollo Server does for an
 * HTTP request, because graphql-ws has none of it: parsing within the token limit, validation with
 * graphql-armor's rules, operation resolution, and every error shaped as Apollo shapes it
 * (`extensions.code`, stack traces outside production) and then passed to the same `formatError`.
 * A bad document is an `error` message for its operation; the socket stays open.
 */
export class WsOperations {
  readonly documents: DocumentCache;
  private readonly errors: ClientErrors;
  /** Subscription events are executed once for all their subscribers: formatted once, too. */
  private readonly formatted = new WeakMap<ExecutionResult, FormattedExecutionResult>();
  /** Queries and mutations run compiled, as over HTTP (executor.ts). */
  readonly compiled: CompiledOperations;

  constructor(
    private readonly opts: { schema: GraphQLSchema; config: Config; logger: Logger; armor: Armor; trusted?: TrustedDocuments },
  ) {
    this.errors = new ClientErrors(opts.config, opts.logger);
    // the rules HTTP validates with: HTTP and WebSocket must agree
    this.documents = createDocumentCache(opts);
    this.compiled = new CompiledOperations(opts.schema);
  }

  /**
   * The `execute` of graphql-ws and graphql-sse for queries and mutations: the operation compiled
   * by graphql-jit, as Apollo and the HTTP lane run it, so an operation gives the same answer on
   * every transport; graphql-js's `execute` when it cannot be compiled (or the compiled
   * operations are at their limit).
   */
  readonly execute = (args: ExecutionArgs): Promise<ExecutionResult> | ExecutionResult => {
    const operation = getOperationAST(args.document, args.operationName ?? undefined);
    const query = operation ? this.compiled.get(args.document, args.operationName ?? undefined) : null;
    if (!operation || !query) return execute(args);
    return runCompiled(args.schema, query, operation, args.contextValue, args.variableValues as Record<string, unknown> | null | undefined);
  };

  /**
   * The last step of graphql-ws `onSubscribe`: the operation's execution arguments (graphql-ws
   * then neither parses nor validates), or the errors to send for it. The context is left to
   * graphql-ws's `context` option.
   */
  prepare(payload: SubscribePayload): ExecutionArgs | GraphQLError[] {
    // the safelist (PERSISTED_DOCUMENTS) decides first: a refused text is not even parsed
    let query = payload.query;
    try {
      if (this.opts.trusted) query = this.opts.trusted.resolve(payload.query, payload.extensions);
    } catch (err) {
      if (err instanceof DocumentRefusedError) return [err];
      throw err;
    }
    const loaded = this.documents.load(query);
    if (loaded.errors) {
      const code = loaded.phase === 'parse' ? 'GRAPHQL_PARSE_FAILED' : 'GRAPHQL_VALIDATION_FAILED';
      return loaded.errors.map((e) => withCode(e, code));
    }
    const { document } = loaded;
    const operationName = payload.operationName ?? undefined;
    if (!getOperationAST(document, operationName)) {
      // graphql-js's wording, which Apollo passes on
      const message = operationName
        ? `Unknown operation named "${operationName}".`
        : 'Must provide operation name if query contains multiple operations.';
      return [new GraphQLError(message, { extensions: { code: 'OPERATION_RESOLUTION_FAILURE' } })];
    }
    return { schema: this.opts.schema, document, operationName, variableValues: payload.variables ?? undefined };
  }

  /** graphql-ws `onNext`: a result with errors is sent with them formatted; others as they are. */
  readonly onNext = (_ctx: unknown, _id: string, _payload: unknown, args: unknown, result: ExecutionResult): FormattedExecutionResult | undefined => {
    const warnings = (args as { contextValue?: { warnings?: unknown[] } } | undefined)?.contextValue?.warnings;
    if (warnings?.length) {
      // a query's own result (never a shared subscription event): the same extensions as over HTTP
      const { errors, ...rest } = result;
      const extensions = { ...rest.extensions, warnings };
      return errors?.length ? { ...rest, extensions, errors: errors.map((e) => this.errors.format(e)) } : { ...rest, extensions };
    }
    return this.formatEvent(result);
  };

  /** A subscription event's result as clients see it: with its errors formatted (once for all its subscribers), or undefined when it has none. */
  formatEvent(result: ExecutionResult): FormattedExecutionResult | undefined {
    if (!result.errors?.length) return undefined;
    let out = this.formatted.get(result);
    if (!out) {
      const { errors, ...rest } = result;
      out = { ...rest, errors: errors.map((e) => this.errors.format(isBadVariable(e) ? withCode(e, ErrorCode.BAD_USER_INPUT) : e)) };
      this.formatted.set(result, out);
    }
    return out;
  }

  /** graphql-ws `onError`: refused operations (documents, limits, identity) and failed subscriptions. */
  readonly onError = (_ctx: unknown, _id: string, _payload: unknown, errors: readonly GraphQLError[]): GraphQLFormattedError[] =>
    errors.map((e) => this.errors.format(e));
}
