import { Args, Int, Query, Resolver } from '@nestjs/graphql';
import { DENY_ALL } from '../auth/access.js';
import { ForbiddenError } from '../auth/auth-errors.js';
import { RequirePermission } from '../auth/auth.decorators.js';
import { pageLimit, SortOrder } from '../common/graphql-types.js';
import { Ctx, RequestContext } from '../common/request-context.js';
import { AUDIT_PAGE_MAX } from './audit.dto.js';
import {
  AuditEventFilterInput,
  auditEventObject,
  AuditEventObject,
  AuditEventPageObject,
} from './audit.graphql.js';
import { AuditService } from './audit.service.js';

@Resolver(() => AuditEventObject)
export class AuditResolver {
  constructor(private readonly audit: AuditService) {}

  @Query(() => AuditEventPageObject, {
    description:
      'The audit trail, filtered and paged (needs audit:read). Lists only the events the caller may read: a binding on one registry sees that registry’s events, a repository glob the events of matching repositories.',
  })
  // Bindings narrow the rows in the query itself (audit-query.ts), so any audit:read binding may list.
  @RequirePermission('audit:read', { checkedInHandler: true })
  async auditEvents(
    @Ctx() ctx: RequestContext,
    @Args('filter', {
      type: () => AuditEventFilterInput,
      nullable: true,
      description: 'Which events; all of them when left out',
    })
    filter?: AuditEventFilterInput,
    @Args('sort', { type: () => SortOrder, defaultValue: SortOrder.desc, description: 'By time (seq)' })
    sort?: SortOrder,
    @Args('limit', {
      type: () => Int,
      defaultValue: 50,
      description: `1 to ${AUDIT_PAGE_MAX}`,
    })
    limit?: number,
    @Args('cursor', { type: () => String, nullable: true, description: 'nextCursor of the previous page' })
    cursor?: string,
  ): Promise<AuditEventPageObject> {
    const access = ctx.access ?? DENY_ALL;
    const f = filter ?? {};
    // Like REST: naming a registry outside every binding is refused rather than answered empty.
    if (f.registry && !access.canInRegistry('audit:read', f.registry))
      throw new ForbiddenError('audit:read', { registry: f.registry, repository: f.repository });
    const page = await this.audit.page({
      filter: {
        registry: f.registry,
        repository: f.repository,
        actor: f.actor,
        actorType: f.actorType,
        action: f.action,
        outcome: f.outcome,
        subjectType: f.subjectType,
        subjectId: f.subjectId,
        from: f.from,
        to: f.to,
      },
      sort: sort ?? SortOrder.desc,
      limit: pageLimit(limit, 50, AUDIT_PAGE_MAX),
      cursor: cursor ?? undefined,
      access,
    });
    return { items: page.items.map(auditEventObject), nextCursor: page.nextCursor };
  }
}
