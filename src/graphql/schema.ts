import 'reflect-metadata';
import { type GraphQLSchema, lexicographicSortSchema, printSchema } from 'graphql';
import { buildSchema, type AuthChecker } from 'type-graphql';
import { ExportResolver } from '../files/export.resolver';
import { FileResolver } from '../files/file.resolver';
import { MemoryResolver } from '../memory/memory.resolver';
import { SearchResolver } from '../search/search.resolver';
import { TokensCountResolver } from '../tokenscount/tokenscount.resolver';
import { DialogResolver } from '../vision/dialog.resolver';
import { VisionMessageResolver } from '../vision/message.resolver';
import { NodeResolver } from '../vision/node.resolver';
import { VisionResolver } from '../vision/vision.resolver';
import type { GraphQLContext } from './context';
import { createPubSub } from '@graphql-yoga/subscription';

/** Every root field needs an identity; introspection does not. */
const authChecker: AuthChecker<GraphQLContext> = ({ context }) => context.user !== null;

export const resolvers = [VisionResolver, VisionMessageResolver, DialogResolver, TokensCountResolver, MemoryResolver, SearchResolver, FileResolver, ExportResolver, NodeResolver] as const;

/**
 * Subscriptions subscribe through the context's pub/sub (ownership is checked first), so the
 * schema itself needs none of its own; type-graphql still wants one to build.
 */
export async function createSchema(): Promise<GraphQLSchema> {
  return buildSchema({
    resolvers,
    authChecker,
    authMode: 'error',
    // rules live in services, which throw contract errors; class-validator is not used
    validate: false,
    pubSub: createPubSub(),
  });
}

/** The SDL committed as schema.graphql. */
export function printSchemaSdl(schema: GraphQLSchema): string {
  return printSchema(lexicographicSortSchema(schema)) + '\n';
}
