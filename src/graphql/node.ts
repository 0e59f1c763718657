import { Field, ID, InterfaceType } from 'type-graphql';

/**
 * Relay's object identification: every object a client may refetch by id alone (`Query.node`,
 * `Query.nodes`) implements it. Ids are the rows' UUIDs, unique across tables (UUIDv7), so they
 * need no type prefix; the implementing class is found by `instanceof` (type-graphql's default).
 */
@InterfaceType({ description: 'An object with an id that Query.node and Query.nodes can refetch (Relay object identification).' })
export abstract class Node {
  @Field(() => ID)
  id!: string;
}
