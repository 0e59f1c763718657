import { Field, ObjectType } from 'type-graphql';
import { BadUserInputError } from './errors';

@ObjectType({ simpleResolvers: true })
export class PageInfo {
  @Field(() => Boolean)
  hasNextPage!: boolean;

  @Field(() => Boolean)
  hasPreviousPage!: boolean;

  @Field(() => String, { nullable: true })
  startCursor?: string | null;

  @Field(() => String, { nullable: true })
  endCursor?: string | null;
}

const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** True for a canonical UUID (any version). */
export function isUuid(value: unknown): value is string {
  return typeof value === 'string' && UUID_RE.test(value);
}

/** Validates an `ID` argument that must name a row; lower-cases it. */
export function parseId(value: string, field = 'id'): string {
  if (!isUuid(value)) throw new BadUserInputError(`${field} is not a valid id`, field);
  return value.toLowerCase();
}

const CURSOR_PREFIX = 'v1:';

/**
 * Cursors are opaque to clients: base64url of the row id. The sort keys are read from the row
 * itself by the query (an indexed primary-key lookup), so a cursor never carries timestamps
 * whose precision JavaScript would lose.
 */
export function encodeCursor(id: string): string {
  return Buffer.from(CURSOR_PREFIX + id, 'utf8').toString('base64url');
}

export function decodeCursor(cursor: string, field: string): string {
  const raw = /^[A-Za-z0-9_-]{1,200}$/.test(cursor) ? Buffer.from(cursor, 'base64url').toString('utf8') : '';
  const id = raw.startsWith(CURSOR_PREFIX) ? raw.slice(CURSOR_PREFIX.length) : '';
  if (!isUuid(id)) throw new BadUserInputError(`${field} is not a valid cursor`, field);
  return id.toLowerCase();
}

export interface PageArgs {
  first?: number | null;
  after?: string | null;
  last?: number | null;
  before?: string | null;
}

/** A validated page request: `take` rows from the start (forward) or the end (backward). */
export interface PageRequest {
  direction: 'forward' | 'backward';
  take: number;
  afterId?: string;
  beforeId?: string;
}

function checkSize(n: number, name: string, max: number): number {
  if (!Number.isInteger(n) || n < 0) throw new BadUserInputError(`${name} must be a non-negative integer`, name);
  if (n > max) throw new BadUserInputError(`${name} must be at most ${max}`, name);
  return n;
}

/**
 * Relay arguments → page request. `first` and `last` together are refused (ambiguous); without
 * either, `defaultLast` (when given) takes the latest rows, else `defaultFirst` the earliest.
 */
export function toPageRequest(
  args: PageArgs,
  opts: { max: number; defaultFirst?: number; defaultLast?: number },
): PageRequest {
  const hasFirst = args.first !== undefined && args.first !== null;
  const hasLast = args.last !== undefined && args.last !== null;
  if (hasFirst && hasLast) throw new BadUserInputError('Pass either first or last, not both', 'first');
  const afterId = args.after != null ? decodeCursor(args.after, 'after') : undefined;
  const beforeId = args.before != null ? decodeCursor(args.before, 'before') : undefined;
  if (hasFirst) return { direction: 'forward', take: checkSize(args.first!, 'first', opts.max), afterId, beforeId };
  if (hasLast) return { direction: 'backward', take: checkSize(args.last!, 'last', opts.max), afterId, beforeId };
  if (opts.defaultLast !== undefined && afterId === undefined) {
    return { direction: 'backward', take: opts.defaultLast, afterId, beforeId };
  }
  return { direction: 'forward', take: opts.defaultFirst ?? opts.defaultLast ?? opts.max, afterId, beforeId };
}

/** Rows of one page plus the flags Relay wants, from a query that fetched `take + 1` rows. */
export function toPage<T extends { id: string }>(
  rows: T[],
  req: PageRequest,
): { nodes: T[]; pageInfo: PageInfo } {
  const more = rows.length > req.take;
  let nodes = more ? rows.slice(0, req.take) : rows;
  // backward queries read newest first; pages are always oldest first
  if (req.direction === 'backward') nodes = nodes.slice().reverse();
  const pageInfo = new PageInfo();
  if (req.direction === 'forward') {
    pageInfo.hasNextPage = more;
    pageInfo.hasPreviousPage = req.afterId !== undefined;
  } else {
    pageInfo.hasPreviousPage = more;
    pageInfo.hasNextPage = req.beforeId !== undefined;
  }
  pageInfo.startCursor = nodes.length ? encodeCursor(nodes[0]!.id) : null;
  pageInfo.endCursor = nodes.length ? encodeCursor(nodes[nodes.length - 1]!.id) : null;
  return { nodes, pageInfo };
}
