import { Args, Int, Query, Resolver } from '@nestjs/graphql';
import { ManifestView, RepositoryPage, TagView } from './catalog.dto.js';
import { CatalogService } from './catalog.service.js';

@Resolver()
export class CatalogResolver {
  constructor(private readonly catalog: CatalogService) {}

  @Query(() => RepositoryPage, { description: 'Repositories of a registry that have at least one tag.' })
  repositories(
    @Args('registry') registry: string,
    @Args('limit', { type: () => Int, nullable: true, description: '1 to 1000, default 100' }) limit?: number,
    @Args('cursor', { nullable: true, description: 'nextCursor of the previous page' }) cursor?: string,
    @Args('q', { nullable: true, description: 'Substring of the name, or a glob such as team-a/**' })
    q?: string,
  ): Promise<RepositoryPage> {
    return this.catalog.listRepositories(registry, {
      limit: limit ?? undefined,
      cursor: cursor ?? undefined,
      q: q ?? undefined,
    });
  }

  @Query(() => [TagView], {
    description: 'Every tag of a repository with digest, size, creation time and platforms.',
  })
  tags(@Args('registry') registry: string, @Args('repository') repository: string): Promise<TagView[]> {
    return this.catalog.listTags(registry, repository);
  }

  @Query(() => ManifestView, {
    description: 'One manifest by tag or digest, with every tag that shares its digest.',
  })
  manifest(
    @Args('registry') registry: string,
    @Args('repository') repository: string,
    @Args('reference', { description: 'A tag or a digest' }) reference: string,
  ): Promise<ManifestView> {
    return this.catalog.getManifest(registry, repository, reference);
  }
}
