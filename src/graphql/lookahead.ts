import type { GraphQLResolveInfo } from 'graphql';
import { parseResolveInfo, type ResolveTree } from 'graphql-parse-resolve-info';

/**
 * What the client selected below the field being resolved, so that a root resolver can fetch
 * its children in the same statement (the way PostGraphile compiles a query into one SQL
 * statement). `graphql-parse-resolve-info` resolves fragments, aliases, variables and
 * `@skip`/`@include`. The children still have their own resolvers; a prefetch only primes
 * their DataLoaders, so a field that was not prefetched is still answered.
 */
export function lookahead(info: GraphQLResolveInfo): ResolveTree[] {
  const tree = parseResolveInfo(info);
  return tree && typeof tree.name === 'string' ? [tree as ResolveTree] : [];
}

/**
 * Every selection of `fieldName` (under any alias) on `typeName` below the given trees, e.g.
 * `below(below(tree, 'VisionConnection', 'edges'), 'VisionEdge', 'node')`.
 */
export function below(trees: ResolveTree[], typeName: string, fieldName: string): ResolveTree[] {
  const out: ResolveTree[] = [];
  for (const tree of trees) {
    const fields = tree.fieldsByTypeName[typeName];
    if (!fields) continue;
    for (const child of Object.values(fields)) if (child.name === fieldName) out.push(child);
  }
  return out;
}
