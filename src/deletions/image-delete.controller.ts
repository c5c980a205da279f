import { Controller, Delete, Param, Query, Res } from '@nestjs/common';
import { ApiAcceptedResponse, ApiOperation, ApiParam, ApiTags } from '@nestjs/swagger';
import type { FastifyReply } from 'fastify';
import { RequirePermission } from '../auth/auth.decorators.js';
import { parseRepositoryPath } from '../auth/scope.js';
import { DomainError } from '../common/domain-error.js';
import { Ctx, RequestContext } from '../common/request-context.js';
import { DeleteImageQueryDto, DeletionRequestView } from './deletion.dto.js';
import { DeletionService } from './deletion.service.js';

/** The single-image deletes, addressed like the catalog's reads: `<name>/manifests/<ref>`, `<name>/tags/<tag>`. */
@ApiTags('deletions')
@Controller('api/v1/registries/:registry/repositories')
export class ImageDeleteController {
  constructor(private readonly deletions: DeletionService) {}

  @Delete('*')
  @RequirePermission('deletions:create', { registryParam: 'registry', repositoryParam: '*' })
  @ApiOperation({
    summary: 'Delete an image, or only one tag',
    description:
      '`<name>/manifests/<tag-or-digest>` deletes the image: the tag is resolved to its digest, and every tag pointing at that digest goes with it (they are listed in the answer). `<name>/tags/<tag>` removes only that tag and keeps the image for its other tags. Answers 202 with the queued deletion request, or 201 with the stored plan for `?dryRun=true`.',
  })
  @ApiParam({
    name: '*',
    description: '<name>/manifests/<reference> or <name>/tags/<tag>',
    example: 'team-a/api/tags/v1',
  })
  @ApiAcceptedResponse({ type: DeletionRequestView })
  async remove(
    @Param('registry') registry: string,
    @Param('*') rawPath: string | string[],
    @Query() q: DeleteImageQueryDto,
    @Ctx() ctx: RequestContext,
    @Res({ passthrough: true }) reply: FastifyReply,
  ): Promise<DeletionRequestView> {
    const path = Array.isArray(rawPath) ? rawPath.join('/') : rawPath;
    if (path.length > 1024)
      throw new DomainError('PATH_TOO_LONG', 'repository path is longer than 1024 characters', 400);
    // Read as the guard read it, so the repository authorized is the one deleted from.
    const addressed = parseRepositoryPath(path, 'delete');
    if (!addressed)
      throw new DomainError(
        'ROUTE_NOT_FOUND',
        'expected <repository>/manifests/<tag-or-digest> or <repository>/tags/<tag>',
        404,
        {
          path: path.slice(0, 200),
        },
      );
    const { repository, target, reference } = addressed;
    const view = await this.deletions.createOne(
      {
        registry,
        items: [{ repository, reference: reference!, kind: target === 'tags' ? 'tag' : 'manifest' }],
        dryRun: q.dryRun ?? false,
        reason: q.reason,
      },
      ctx,
    );
    void reply.status(view.dryRun ? 201 : 202);
    return view;
  }
}
