import { Controller, Get, Param, Query } from '@nestjs/common';
import {
  ApiExtraModels,
  ApiOkResponse,
  ApiOperation,
  ApiParam,
  ApiProperty,
  ApiPropertyOptional,
  ApiTags,
  getSchemaPath,
} from '@nestjs/swagger';
import { IsOptional, IsString, MaxLength } from 'class-validator';
import { RequirePermission } from '../auth/auth.decorators.js';
import { parseRepositoryPath } from '../auth/scope.js';
import { ApiErrors, UPSTREAM_ERRORS } from '../common/api-errors.js';
import { DomainError } from '../common/domain-error.js';
import { PageQuery } from '../common/page-query.js';
import { Ctx, RequestContext } from '../common/request-context.js';
import { WildcardPath } from '../common/wildcard-path.js';
import { ManifestView, RepositoryPage, TagView } from './catalog.dto.js';
import { CatalogService } from './catalog.service.js';

export class RepositoryQueryDto extends PageQuery(1000, 100) {
  @ApiPropertyOptional({ description: 'Substring of the name, or a glob such as team-a/** ' })
  @IsOptional()
  @IsString()
  @MaxLength(255)
  q?: string;
}

class TagList {
  @ApiProperty() registry: string;
  @ApiProperty() repository: string;
  @ApiProperty({ type: [TagView] }) items: TagView[];
}

/**
 * Repository names keep their slashes, so everything after `/repositories/` is one wildcard and the
 * trailing keyword says what is addressed, as in the v2 API. The OpenAPI document calls it `{path}`.
 */
@ApiTags('catalog')
@Controller('api/v1/registries/:registry/repositories')
export class CatalogController {
  constructor(private readonly catalog: CatalogService) {}

  @Get()
  @RequirePermission('catalog:read', { registryParam: 'registry', anyRepository: true })
  @ApiOperation({
    summary: 'Repositories that have tags (paged, filtered by q)',
    description: 'A caller bound to repository globs sees the repositories they match.',
  })
  @ApiOkResponse({ type: RepositoryPage })
  @ApiErrors({ 400: ['VALIDATION_FAILED'], 404: ['REGISTRY_NOT_FOUND'] }, UPSTREAM_ERRORS)
  repositories(
    @Param('registry') registry: string,
    @Query() query: RepositoryQueryDto,
    @Ctx() ctx: RequestContext,
  ): Promise<RepositoryPage> {
    return this.catalog.listRepositories(registry, {
      ...query,
      visible: ctx.access?.repositoryFilter('catalog:read', registry) ?? (() => false),
    });
  }

  // Fastify's router names the tail of a wildcard route '*'.
  @Get('*')
  @RequirePermission('catalog:read', { registryParam: 'registry', repositoryParam: '*' })
  @ApiOperation({
    summary: 'Tags of a repository, or one manifest',
    description:
      '`<name>/tags` lists every tag with digest, media type, size, creation time and platforms. `<name>/manifests/<tag-or-digest>` returns the manifest, its layers or children, and every tag sharing its digest.',
  })
  @ApiParam({
    name: 'path',
    type: String,
    description:
      'What is addressed: `<repository>/tags` (a TagList), or `<repository>/manifests/<reference>` with a tag or a digest (a ManifestView). The repository name keeps its slashes, sent as they are (not percent-encoded): `team-a/api/tags`, `team-a/api/manifests/v1`.',
    example: 'team-a/api/tags',
  })
  @ApiExtraModels(TagList, ManifestView)
  @ApiOkResponse({
    description: 'A TagList for `<repository>/tags`, a ManifestView for `<repository>/manifests/<reference>`',
    schema: { oneOf: [{ $ref: getSchemaPath(TagList) }, { $ref: getSchemaPath(ManifestView) }] },
  })
  @ApiErrors(
    {
      400: ['NAME_INVALID', 'TAG_INVALID', 'DIGEST_INVALID', 'PATH_TOO_LONG'],
      404: ['REGISTRY_NOT_FOUND', 'NAME_UNKNOWN', 'MANIFEST_UNKNOWN', 'ROUTE_NOT_FOUND'],
      422: ['MANIFEST_TYPE_UNSUPPORTED'],
    },
    UPSTREAM_ERRORS,
  )
  async addressed(
    @Param('registry') registry: string,
    @WildcardPath() rawPath: string | string[],
  ): Promise<TagList | ManifestView> {
    const path = Array.isArray(rawPath) ? rawPath.join('/') : rawPath;
    if (path.length > 1024)
      throw new DomainError('PATH_TOO_LONG', 'repository path is longer than 1024 characters', 400);
    // The guard authorized the repository this same reading names.
    const addressed = parseRepositoryPath(path, 'read');
    if (addressed?.target === 'tags')
      return {
        registry,
        repository: addressed.repository,
        items: await this.catalog.listTags(registry, addressed.repository),
      };
    if (addressed?.reference !== undefined)
      return this.catalog.getManifest(registry, addressed.repository, addressed.reference);
    throw new DomainError(
      'ROUTE_NOT_FOUND',
      'expected <repository>/tags or <repository>/manifests/<tag-or-digest>',
      404,
      {
        path: path.slice(0, 200),
      },
    );
  }
}
