import type { GraphQLError, OperationDefinitionNode } from 'graphql';
import type { Logger } from '../logger';
import type { Metrics, Transport } from '../metrics/metrics';
import { contractCode } from './errors';

/**
 * The log line of one GraphQL operation: name, type, user, duration, statements, error codes. No
 * variables, no content. Over HTTP the codes are as raised (before `formatError`) and `lane` marks
 * an operation the query lane answered (http-lane.ts); over WebSocket and SSE (`transport`) the code is
 * the contract code the client got, and a subscription is logged once, as it starts or is refused.
 */
export function logOperation(
  logger: Logger,
  o: { op: string | null; type: string | null; userId: string | null; ms: number; sql?: number; errors?: readonly GraphQLError[]; codes?: string[]; lane?: true; transport?: 'ws' | 'sse' },
): void {
  const codes = o.codes ?? o.errors?.map((e) => String(e.extensions?.code ?? 'INTERNAL_SERVER_ERROR'));
  logger.info(
    {
      op: o.op,
      type: o.type,
      userId: o.userId,
      ms: Math.round(o.ms * 10) / 10,
      sql: o.sql,
      ...(codes?.length ? { errorCode: codes[0], errorCodes: codes.length > 1 ? codes : undefined } : {}),
      ...(o.lane ? { lane: true } : {}),
      ...(o.transport ? { transport: o.transport } : {}),
    },
    'graphql',
  );
}

/** One operation over WebSocket or SSE as its meter saw it (metrics/ws-meter.ts, metrics/sse-meter.ts). */
export interface OperationReport {
  /** The resolved operation; null or undefined when the document did not parse, validate or resolve. */
  operation: OperationDefinitionNode | null | undefined;
  /** The first error's `extensions.code` as the client got it; undefined without errors. */
  code?: unknown;
  transport: Exclude<Transport, 'http'>;
  seconds: number;
  userId?: string | null;
}

/** Where WebSocket and SSE operations go: a log line each, as over HTTP, and the metrics when they are on. */
export function operationReporter(logger: Logger, metrics?: Metrics): (o: OperationReport) => void {
  return (o) => {
    metrics?.operation(o);
    logOperation(logger, {
      op: o.operation?.name?.value ?? null,
      type: o.operation?.operation ?? null,
      userId: o.userId ?? null,
      ms: o.seconds * 1000,
      codes: o.code === undefined || o.code === null ? undefined : [contractCode(o.code)],
      transport: o.transport,
    });
  };
}
