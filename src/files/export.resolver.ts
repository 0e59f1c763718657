import { Arg, Authorized, Ctx, ID, Mutation, Resolver } from 'type-graphql';
import type { GraphQLContext } from '../graphql/context';
import { parseId } from '../graphql/relay';
import { File } from '../vision/file.entity';
import { ExportFormat } from './export.format';
import { ExportGuard, exportVision } from './export.service';

/**
 * One guard per running server (its files module), not per module load: tests start several
 * servers in one process, and each must keep its own count.
 */
const guards = new WeakMap<object, ExportGuard>();
const guardOf = (ctx: GraphQLContext): ExportGuard => {
  let guard = guards.get(ctx.files);
  if (!guard) guards.set(ctx.files, (guard = new ExportGuard()));
  return guard;
};

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
    return guardOf(ctx).run(userId, () =>
      exportVision(
        { sql: ctx.sql, storage: ctx.files.storage, timeZone: ctx.config.titleTimeZone },
        // an explicit null means the default too
        { userId, visionId, format: format ?? ExportFormat.MARKDOWN },
      ),
    );
  }
}
