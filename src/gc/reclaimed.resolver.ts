import { Args, GraphQLISODateTime, Query, Resolver } from '@nestjs/graphql';
import { accessScope } from '../auth/access-scope.js';
import { DENY_ALL } from '../auth/access.js';
import { ForbiddenError } from '../auth/auth-errors.js';
import { RequirePermission } from '../auth/auth.decorators.js';
import { ValidationError } from '../common/domain-error.js';
import { Ctx, RequestContext } from '../common/request-context.js';
import { ReclaimedBucket, ReclaimedSpaceView } from './reclaimed.dto.js';
import { ReclaimedService } from './reclaimed.service.js';

@Resolver(() => ReclaimedSpaceView)
export class ReclaimedResolver {
  constructor(private readonly reclaimed: ReclaimedService) {}

  @Query(() => [ReclaimedSpaceView], {
    description:
      'Bytes freed and manifests deleted per registry per day or week (UTC), oldest first (needs gc:read and deletions:read on the whole registry; covers each registry where the caller holds both). Periods with nothing are left out; default range: the last 30 days, or 12 weeks.',
  })
  @RequirePermission('gc:read', { checkedInHandler: true })
  reclaimedSpace(
    @Ctx() ctx: RequestContext,
    @Args('bucket', {
      type: () => ReclaimedBucket,
      defaultValue: ReclaimedBucket.day,
      description: 'Day or week',
    })
    bucket: ReclaimedBucket,
    @Args('from', { type: () => GraphQLISODateTime, nullable: true, description: 'Inclusive' }) from?: Date,
    @Args('to', { type: () => GraphQLISODateTime, nullable: true, description: 'Exclusive; default now' })
    to?: Date,
    @Args('registry', {
      type: () => String,
      nullable: true,
      description: 'Only this registry; every one the caller may see when left out',
    })
    registry?: string,
  ): Promise<ReclaimedSpaceView[]> {
    const access = ctx.access ?? DENY_ALL;
    // Whole-registry numbers: a binding on some repositories does not reach them.
    const gc = accessScope(access, 'gc:read');
    const deletions = accessScope(access, 'deletions:read');
    const everywhere = gc.everywhere && deletions.everywhere;
    const allowed = (name: string) =>
      (gc.everywhere || gc.registries.includes(name)) &&
      (deletions.everywhere || deletions.registries.includes(name));
    if (registry && !allowed(registry))
      throw new ForbiddenError(
        gc.everywhere || gc.registries.includes(registry) ? 'deletions:read' : 'gc:read',
        {
          registry,
        },
      );
    const registries = registry
      ? [registry]
      : everywhere
        ? undefined
        : [...new Set([...gc.registries, ...deletions.registries])].filter(allowed);
    return this.reclaimed.report({
      bucket,
      from: validDate(from, 'from'),
      to: validDate(to, 'to'),
      registries,
    });
  }
}

function validDate(d: Date | null | undefined, field: string): Date | undefined {
  if (d === null || d === undefined) return undefined;
  if (Number.isNaN(d.getTime())) throw new ValidationError(`${field} is not a valid time`, { field });
  return d;
}
