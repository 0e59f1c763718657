import { Field, Float, Int, ObjectType, registerEnumType } from 'type-graphql';
import { PageInfo } from '../graphql/relay';
import { VisionMessage } from '../vision/message.entity';
import { Vision } from '../vision/vision.entity';

export enum SearchMode {
  TEXT = 'TEXT',
  SEMANTIC = 'SEMANTIC',
  HYBRID = 'HYBRID',
}

registerEnumType(SearchMode, {
  name: 'SearchMode',
  valuesConfig: {
    TEXT: { description: 'Words and their forms (PostgreSQL full-text search, Russian and English).' },
    SEMANTIC: { description: 'Meaning (embeddings of the messages).' },
    HYBRID: { description: 'Both, fused into one ranking.' },
  },
});

@ObjectType({ description: 'v2. A range of characters (UTF-16 code units) inside a snippet.' })
export class TextRange {
  @Field(() => Int)
  start!: number;

  @Field(() => Int)
  length!: number;
}

@ObjectType({ description: 'v2.' })
export class MessageSearchHit {
  @Field(() => VisionMessage)
  message!: VisionMessage;

  @Field(() => Vision)
  vision!: Vision;

  @Field(() => String, { description: 'Plain text around the match (no markup).' })
  snippet!: string;

  @Field(() => [TextRange], { description: "Where the query's words occur in the snippet (may be empty for SEMANTIC hits)." })
  highlights!: TextRange[];

  @Field(() => Float)
  score!: number;
}

@ObjectType()
export class MessageSearchHitEdge {
  @Field(() => String)
  cursor!: string;

  @Field(() => MessageSearchHit)
  node!: MessageSearchHit;
}

@ObjectType()
export class MessageSearchConnection {
  @Field(() => [MessageSearchHitEdge])
  edges!: MessageSearchHitEdge[];

  @Field(() => PageInfo)
  pageInfo!: PageInfo;
}
