import { Field, Int, ObjectType } from 'type-graphql';
import { VisionMessage } from '../vision/message.entity';
import { VisionSummary } from './summary.entity';

@ObjectType({ description: 'v2. What the model would be sent if the person wrote now: for transparency and debugging.' })
export class ModelContext {
  @Field(() => Int, { description: 'CONTEXT_TOKEN_BUDGET: the most tokens a request to the model may carry.' })
  budgetTokens!: number;

  @Field(() => Int, { description: "Tokens of everything below plus the system prompt, counted with the model's tokenizer." })
  totalTokens!: number;

  @Field(() => VisionSummary, { nullable: true })
  summary!: VisionSummary | null;

  @Field(() => [VisionMessage], { description: 'Older messages outside the window, recalled because they bear on the latest user message.' })
  recalled!: VisionMessage[];

  @Field(() => [VisionMessage], { description: 'The newest messages, oldest first: as many as fit the budget, at most MAX_MESSAGES.' })
  window!: VisionMessage[];
}
