import { Field, Float, Int, ObjectType } from 'type-graphql';

@ObjectType({ simpleResolvers: true, description: 'Token usage summed over model calls (rows of the tokenscount table).' })
export class TokenUsage {
  @Field(() => Int)
  calls!: number;

  @Field(() => Int)
  promptTokens!: number;

  @Field(() => Int)
  completionTokens!: number;

  @Field(() => Int)
  totalTokens!: number;

  @Field(() => Int, { description: 'v2. Calls whose numbers are tokenizer estimates because the provider sent no usage.' })
  estimatedCalls!: number;

  @Field(() => Float, { nullable: true, description: 'v2. Cost in USD from the price table (MODEL_PRICES); null when a model has no price.' })
  costUsd!: number | null;

  static empty(): TokenUsage {
    return Object.assign(new TokenUsage(), { calls: 0, promptTokens: 0, completionTokens: 0, totalTokens: 0, estimatedCalls: 0, costUsd: 0 });
  }
}
