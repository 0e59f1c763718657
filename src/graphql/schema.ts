import 'reflect-metadata';
import { createPubSub } from '@graphql-yoga/subscription';
import { type GraphQLSchema, lexicographicSortSchema, printSchema } from 'graphql';
import { buildSchema, type AuthChecker } from 'type-graphql';
import { TokensCountResolver } from '../tokenscount/tokenscount.resolver.js';
import { VisionMessageResolver } from '../vision/message.resolver.js';
import { VisionResolver } from '../vision/vision.resolver.js';
import type { GraphQLContext } from './context.js';

/** Every root field needs an identity; introspection does not. */
const authChecker: AuthChecker<GraphQLContext> = ({ context }) => context.user !== null;

export const resolvers = [VisionResolver, VisionMessageResolver, TokensCountResolver] as const;

export async function createSchema(opts: { pubSub?: ReturnType<typeof createPubSub> } = {}): Promise<GraphQLSchema> {
  return buildSchema({
    resolvers,
    authChecker,
    authMode: 'error',
    // rules live in services, which throw contract errors; class-validator is not used
    validate: false,
    pubSub: opts.pubSub ?? createPubSub(),
  });
}

/** The SDL committed as schema.graphql. */
export function printSchemaSdl(schema: GraphQLSchema): string {
  return printSchema(lexicographicSortSchema(schema)) + '\n';
}
