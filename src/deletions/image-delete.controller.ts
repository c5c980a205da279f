import { Controller, Delete, Param, Query, Res } from '@nestjs/common';
import { ApiAcceptedResponse, ApiCreatedResponse, ApiOperation, ApiParam, ApiTags } from '@nestjs/swagger';
import type { FastifyReply } from 'fastify';
import { RequirePermission } from '../auth/auth.decorators.js';
import { parseRepositoryPath } from '../auth/scope.js';
import { ApiErrors, UPSTREAM_ERRORS } from '../common/api-errors.js';
import { DomainError } from '../common/domain-error.js';
import { Ctx, RequestContext } from '../common/request-context.js';
import { WildcardPath } from '../common/wildcard-path.js';
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
    name: 'path',
    type: String,
    description:
      'What is deleted: `<repository>/manifests/<reference>`, the image with a tag or a digest (and every tag pointing at it), or `<repository>/tags/<tag>`, only that tag. The repository name keeps its slashes, sent as they are (not percent-encoded): `team-a/api/manifests/sha256:…`, `team-a/api/tags/v1`.',
    example: 'team-a/api/tags/v1',
  })
  @ApiAcceptedResponse({ type: DeletionRequestView, description: 'Queued' })
  @ApiCreatedResponse({ type: DeletionRequestView, description: 'With `dryRun=true`: the stored plan' })
  @ApiErrors(
    {
      400: ['VALIDATION_FAILED', 'NAME_INVALID', 'TAG_INVALID', 'DIGEST_INVALID', 'PATH_TOO_LONG'],
      404: ['REGISTRY_NOT_FOUND', 'MANIFEST_UNKNOWN', 'ROUTE_NOT_FOUND'],
      409: ['DELETE_DISABLED', 'REGISTRY_READ_ONLY', 'MANIFEST_IN_USE'],
      423: ['REGISTRY_FENCED'],
    },
    UPSTREAM_ERRORS,
  )
  async remove(
    @Param('registry') registry: string,
    @WildcardPath() rawPath: string | string[],
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
