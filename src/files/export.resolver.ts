import { Arg, Authorized, Ctx, ID, Mutation, Resolver } from 'type-graphql';
import type { GraphQLContext } from '../graphql/context';
import { parseId } from '../graphql/relay';
import { File } from '../vision/file.entity';
import { ExportFormat } from './export.format';
import { exportVision } from './export.service';

@Resolver()
export class ExportResolver {
  @Authorized()
  @Mutation(() => File, { description: 'v2. The whole path of a vision (title, status, every message) as a downloadable file.' })
  exportVision(
    @Arg('id', () => ID) id: string,
    @Arg('format', () => ExportFormat, { nullable: true, defaultValue: ExportFormat.MARKDOWN }) format: ExportFormat | null,
    @Ctx() ctx: GraphQLContext,
  ): Promise<File> {
    const visionId = parseId(id);
    const userId = ctx.user!.userId;
    return ctx.files.exports.run(userId, () =>
      exportVision(
        { sql: ctx.sql, storage: ctx.files.storage, timeZone: ctx.config.titleTimeZone, consume: ctx.files.consumeExport },
        // an explicit null means the default too
        { userId, visionId, format: format ?? ExportFormat.MARKDOWN },
      ),
    );
  }
}
