import { Args, Int, Parent, Query, ResolveField, Resolver } from '@nestjs/graphql';
import { RequirePermission } from '../auth/auth.decorators.js';
import { Ctx, RequestContext } from '../common/request-context.js';
import { RegistryView } from '../registries/registry.dto.js';
import { ManifestView, RepositoryPage, TagView } from './catalog.dto.js';
import { CatalogService } from './catalog.service.js';

@Resolver()
export class CatalogResolver {
  constructor(private readonly catalog: CatalogService) {}

  @Query(() => RepositoryPage, {
    description:
      'Repositories of a registry that have at least one tag (needs catalog:read; a caller bound to repository globs sees the ones they match).',
  })
  @RequirePermission('catalog:read', { registryParam: 'registry', anyRepository: true })
  repositories(
    @Args('registry', { description: 'Registry name' }) registry: string,
    @Ctx() ctx: RequestContext,
    @Args('limit', { type: () => Int, nullable: true, description: '1 to 1000, default 100' }) limit?: number,
    @Args('cursor', { nullable: true, description: 'nextCursor of the previous page' }) cursor?: string,
    @Args('q', { nullable: true, description: 'Substring of the name, or a glob such as team-a/**' })
    q?: string,
  ): Promise<RepositoryPage> {
    return listVisible(this.catalog, registry, ctx, { limit, cursor, q });
  }

  @Query(() => [TagView], {
    description:
      'Every tag of a repository with digest, size, creation time and platforms (needs catalog:read on the repository).',
  })
  @RequirePermission('catalog:read', { registryParam: 'registry', repositoryParam: 'repository' })
  tags(
    @Args('registry', { description: 'Registry name' }) registry: string,
    @Args('repository', { description: 'Repository name' }) repository: string,
  ): Promise<TagView[]> {
    return this.catalog.listTags(registry, repository);
  }

  @Query(() => ManifestView, {
    description:
      'One manifest by tag or digest, with every tag that shares its digest (needs catalog:read on the repository).',
  })
  @RequirePermission('catalog:read', { registryParam: 'registry', repositoryParam: 'repository' })
  manifest(
    @Args('registry', { description: 'Registry name' }) registry: string,
    @Args('repository', { description: 'Repository name' }) repository: string,
    @Args('reference', { description: 'A tag or a digest' }) reference: string,
  ): Promise<ManifestView> {
    return this.catalog.getManifest(registry, repository, reference);
  }
}

/** `Registry.repositories`: the catalog reached from a registry, checked like the `repositories` query. */
@Resolver(() => RegistryView)
export class RegistryCatalogResolver {
  constructor(private readonly catalog: CatalogService) {}

  @ResolveField('repositories', () => RepositoryPage, {
    description:
      'Repositories of this registry that have at least one tag (needs catalog:read; a caller bound to repository globs sees the ones they match).',
  })
  @RequirePermission('catalog:read', { registryParent: 'name', anyRepository: true })
  repositories(
    @Parent() registry: RegistryView,
    @Ctx() ctx: RequestContext,
    @Args('limit', { type: () => Int, nullable: true, description: '1 to 1000, default 100' }) limit?: number,
    @Args('cursor', { nullable: true, description: 'nextCursor of the previous page' }) cursor?: string,
    @Args('q', { nullable: true, description: 'Substring of the name, or a glob such as team-a/**' })
    q?: string,
  ): Promise<RepositoryPage> {
    return listVisible(this.catalog, registry.name, ctx, { limit, cursor, q });
  }
}

function listVisible(
  catalog: CatalogService,
  registry: string,
  ctx: RequestContext,
  args: { limit?: number | null; cursor?: string | null; q?: string | null },
): Promise<RepositoryPage> {
  return catalog.listRepositories(registry, {
    limit: args.limit ?? undefined,
    cursor: args.cursor ?? undefined,
    q: args.q ?? undefined,
    visible: ctx.access?.repositoryFilter('catalog:read', registry) ?? (() => false),
  });
}
