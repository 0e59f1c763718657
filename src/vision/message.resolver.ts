import { Ctx, FieldResolver, Resolver, Root } from 'type-graphql';
import type { GraphQLContext } from '../graphql/context';
import { isUuid } from '../graphql/relay';
import { File } from './file.entity';
import { VisionMessage } from './message.entity';

@Resolver(() => VisionMessage)
export class VisionMessageResolver {
  @FieldResolver(() => File, { nullable: true, description: 'Set when payload.fileid points at a stored file.' })
  async file(@Root() message: VisionMessage, @Ctx() ctx: GraphQLContext): Promise<File | null> {
    const fileId = message.payload?.fileid;
    if (!isUuid(fileId)) return null;
    const file = await ctx.loaders.file.load(fileId.toLowerCase());
    // a file attached to another vision is never shown through this one
    if (!file || (file.visionId && file.visionId !== message.visionId)) return null;
    return file;
  }
}
