import type { ExecutionResult, GraphQLError, OperationDefinitionNode } from 'graphql';
import { contractCode } from '../graphql/errors';
import type { OperationReport } from '../graphql/operation-log';

const isAsyncIterable = (v: unknown): boolean => typeof v === 'object' && v !== null && Symbol.asyncIterator in v;

/** What the meter keeps on a graphql-sse request's context between its hooks. */
export interface SseMetered {
  /** When the operation of this request arrived; cleared once it is counted. */
  startedAt?: number;
  /** Who sent it. */
  identity?: { userId: string };
}

/**
 * Operations over SSE, reported as over WebSocket (transport `sse`; a log line, and the metrics
 * when they are on): once each, a subscription as
 * it starts (or is refused by its resolver), a query or mutation with its result, a refusal before
 * execution with its contract code and no name.
 */
export class SseMeter {
  constructor(private readonly report: (o: OperationReport) => void) {}

  /** graphql-sse `onSubscribe`, first. */
  start(context: SseMetered): void {
    context.startedAt = performance.now();
  }

  /** The operation was refused before it ran (limits, documents). */
  refused(context: SseMetered, errors: readonly GraphQLError[]): void {
    this.count(context, null, errors);
  }

  /** graphql-sse `onOperation`: the operation ran (a subscription: it started). */
  ran(context: SseMetered, operation: OperationDefinitionNode | null | undefined, result: unknown): void {
    this.count(context, operation, isAsyncIterable(result) ? undefined : (result as ExecutionResult).errors);
  }

  private count(context: SseMetered, operation: OperationDefinitionNode | null | undefined, errors: readonly GraphQLError[] | undefined): void {
    if (context.startedAt === undefined) return;
    const code = errors?.length ? contractCode(errors[0]!.extensions?.code) : undefined;
    this.report({ operation, code, transport: 'sse', seconds: (performance.now() - context.startedAt) / 1000, userId: context.identity?.userId });
    context.startedAt = undefined;
  }
}
