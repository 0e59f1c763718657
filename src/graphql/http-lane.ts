import type { FastifyReply, FastifyRequest } from 'fastify';
import {
  getOperationAST,
  GraphQLError,
  type ExecutionResult,
  type GraphQLFormattedError,
  type GraphQLSchema,
  type OperationDefinitionNode,
} from 'graphql';
import Negotiator from 'negotiator';
import type { Config } from '../config';
import { sqlStats } from '../db/sql-stats';
import type { Logger } from '../logger';
import type { Metrics } from '../metrics/metrics';
import { createDocumentCache, type Armor } from './apollo';
import { logOperation } from './operation-log';
import { ClientErrors, isBadVariable, withCode, type HttpFromErrors } from './client-errors';
import type { GraphQLContext } from './context';
import { ErrorCode } from './errors';
import { CompiledOperations, runCompiled } from './executor';
import type { RateLimits } from './rate-limits';
import type { DocumentCache } from './subscriptions';
import type { TrustedDocuments } from './trusted-documents';

/** Apollo's media types for a single result (ApolloServer.ts `MEDIA_TYPES`), in its order of preference. */
const APPLICATION_JSON = 'application/json; charset=utf-8';
const GRAPHQL_RESPONSE_JSON = 'application/graphql-response+json; charset=utf-8';
const GRAPHQL_CALLBACK = 'application/json; callbackSpec=1.0; charset=utf-8';

/** Distinct `Accept` values whose answer is kept (clients send a handful). */
const MAX_ACCEPT_VALUES = 100;

/**
 * Queries and mutations over HTTP without Apollo Server's request pipeline. A read screen's
 * query spends a good part of its server time in that pipeline rather than in the read: per
 * request Apollo hashes the text (SHA-256) to find its parsed document, calls each plugin's hooks
 * through promises, negotiates the media type twice and builds its own request and response
 * objects (BENCHMARKS.md, issue 16, step 8; a `sendMessage` pays it too, step 9). This lane
 * answers exactly what Apollo would, for the case that is most of the traffic: a POST with a
 * JSON body of a `query` text (or, under a safelist, a persisted document's id), a valid
 * document whose operation is a query or a mutation, and an `Accept` that takes JSON. Everything
 * else goes to Apollo unchanged (`serve` answers false before it has done anything the client
 * could notice, so a mutation never runs twice): other methods and bodies, APQ, documents that
 * do not parse or validate, unknown operation names, subscriptions, and a context that cannot be
 * built (its rejection is handed to Apollo, so the caller is authenticated once).
 *
 * What Apollo would do for such a request, this does in the same order and with the same
 * pieces: the same validation rules (graphql-js's, graphql-armor's, no introspection when it
 * is off), the rate limit of `didResolveOperation`, execution through the same graphql-jit
 * compilation, errors through Apollo's normalisation and the server's `formatError`
 * (client-errors.ts), the status they ask for (400 when refused variables left no data), the
 * context's warnings as `extensions.warnings`, the `x-sql-statements` header, one log line
 * and the operation's metrics. `test/http-lane.test.ts` compares the two answers request by
 * request. GRAPHQL_QUERY_LANE=false turns the lane off.
 */
export class HttpQueryLane {
  private readonly documents: DocumentCache;
  private readonly compiled: CompiledOperations;
  private readonly errors: ClientErrors;
  private readonly mediaTypes = new Map<string, string | null>();

  constructor(
    private readonly opts: {
      schema: GraphQLSchema;
      config: Config;
      logger: Logger;
      armor: Armor;
      limits: RateLimits;
      trusted?: TrustedDocuments;
      metrics?: Metrics;
    },
  ) {
    // with locations, so that errors of execution point at the spot as Apollo's do
    this.documents = createDocumentCache({ ...opts, locations: true });
    this.compiled = new CompiledOperations(opts.schema);
    this.errors = new ClientErrors(opts.config, opts.logger);
  }

  /**
   * Answers the request and resolves true, or resolves false having sent nothing, for Apollo to
   * answer. `context` builds the operation's context; when it fails, `handOver` receives its
   * rejected promise before false comes back, for Apollo's context function to answer with.
   */
  async serve(
    request: FastifyRequest,
    reply: FastifyReply,
    context: () => Promise<GraphQLContext>,
    handOver: (context: Promise<GraphQLContext>) => void,
  ): Promise<boolean> {
    const started = performance.now();
    const prepared = this.prepare(request);
    if (!prepared) return false;
    const { operation, variables } = prepared;
    const pending = context();
    let contextValue: GraphQLContext;
    try {
      contextValue = await pending;
    } catch {
      handOver(pending);
      return false;
    }
    try {
      if (contextValue.user) await this.opts.limits.consumeOperation(contextValue.user.userId);
    } catch (err) {
      // refused before execution (didResolveOperation): Apollo's status is then 500 unless the error asks
      return this.send(reply, { ...prepared, contextValue, started, result: { errors: [asGraphQLError(err)] }, refused: true });
    }
    let result: ExecutionResult;
    let refused = false;
    try {
      result = await runCompiled(this.opts.schema, prepared.query, operation, contextValue, variables);
    } catch (err) {
      // an execution that threw: Apollo's sendErrorResponse, as above
      result = { errors: [asGraphQLError(err)] };
      refused = true;
    }
    return this.send(reply, { ...prepared, contextValue, started, result, refused });
  }

  /** The request's document, operation, variables and media type, or undefined when Apollo must answer it. */
  private prepare(request: FastifyRequest) {
    if (request.method !== 'POST' || !isJson(request.headers['content-type'])) return undefined;
    const body = request.body as Record<string, unknown> | null | undefined;
    if (!body || typeof body !== 'object' || Array.isArray(body)) return undefined;
    const { variables, extensions, operationName } = body;
    if (variables != null && !isRecord(variables)) return undefined;
    if (extensions != null && !isRecord(extensions)) return undefined;
    if (operationName != null && typeof operationName !== 'string') return undefined;
    const mediaType = this.mediaType(request.headers.accept);
    if (!mediaType) return undefined;
    const trusted = this.opts.trusted;
    const text = trusted
      ? trusted.plainText(body.query, extensions, body.documentId)
      : typeof body.query === 'string' && body.query && !isRecord(extensions?.persistedQuery) ? body.query : undefined;
    if (!text) return undefined;
    const loaded = this.documents.load(text);
    if (!loaded.document) return undefined;
    const operation = getOperationAST(loaded.document, (operationName as string | null | undefined) ?? undefined);
    // a subscription over HTTP is Apollo's to refuse
    if (!operation || operation.operation === 'subscription') return undefined;
    const query = this.compiled.get(loaded.document, operation.name?.value);
    if (!query) return undefined;
    return { operation, query, mediaType, variables: variables as Record<string, unknown> | null | undefined };
  }

  /** Apollo's choice of media type for one result, or null when the client takes none of them (Apollo answers 406). */
  private mediaType(accept: string | undefined): string | null {
    if (!accept) return APPLICATION_JSON;
    let chosen = this.mediaTypes.get(accept);
    if (chosen === undefined) {
      const preferred = new Negotiator({ headers: { accept } }).mediaType([APPLICATION_JSON, GRAPHQL_RESPONSE_JSON, GRAPHQL_CALLBACK]);
      // the callback protocol's type is Apollo's business
      chosen = preferred === APPLICATION_JSON || preferred === GRAPHQL_RESPONSE_JSON ? preferred : null;
      if (this.mediaTypes.size >= MAX_ACCEPT_VALUES) this.mediaTypes.clear();
      this.mediaTypes.set(accept, chosen);
    }
    return chosen;
  }

  private send(
    reply: FastifyReply,
    r: {
      operation: OperationDefinitionNode;
      mediaType: string;
      contextValue: GraphQLContext;
      started: number;
      result: ExecutionResult;
      refused: boolean;
    },
  ): true {
    const { operation, contextValue, result } = r;
    // Apollo's UserInputError for variables that do not fit their types
    const raw = result.errors?.map((e) => (isBadVariable(e) ? withCode(e, ErrorCode.BAD_USER_INPUT) : e));
    let errors: GraphQLFormattedError[] | undefined;
    let http: HttpFromErrors = { headers: new Map() };
    if (raw?.length) ({ errors, http } = this.errors.formatAll(raw));
    let status = http.status;
    if (!status && raw?.length) status = r.refused ? 500 : result.data === undefined ? 400 : undefined;
    const warnings = contextValue.warnings;
    const extensions = warnings?.length ? { ...result.extensions, warnings } : result.extensions;
    const stats = sqlStats.getStore();
    if (this.opts.config.graphql.exposeSqlStats && stats) reply.header('x-sql-statements', String(stats.statements));
    for (const [name, value] of http.headers) reply.header(name, value);
    reply.code(status ?? 200).header('content-type', r.mediaType);
    reply.send(JSON.stringify({ errors, data: result.data, extensions }) + '\n');
    const ms = performance.now() - r.started;
    const userId = contextValue.user?.userId ?? null;
    logOperation(this.opts.logger, { op: operation.name?.value ?? null, type: operation.operation, userId, ms, sql: stats?.statements, errors: raw, lane: true });
    this.opts.metrics?.operation({ operation, code: errors?.[0]?.extensions?.code, transport: 'http', seconds: ms / 1000 });
    return true;
  }
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}

function isJson(contentType: string | undefined): boolean {
  if (!contentType) return false;
  const semi = contentType.indexOf(';');
  return (semi < 0 ? contentType : contentType.slice(0, semi)).trim().toLowerCase() === 'application/json';
}

/** Apollo's `ensureGraphQLError`: what was thrown, as a GraphQLError keeping it as the cause. */
function asGraphQLError(err: unknown): GraphQLError {
  if (err instanceof GraphQLError) return err;
  if (err instanceof Error) return new GraphQLError(err.message, { originalError: err });
  return new GraphQLError('Unexpected error value: ' + String(err));
}
