import { DENY_ALL } from '../auth/access.js';
import { ForbiddenError } from '../auth/auth-errors.js';
import { DomainError } from '../common/domain-error.js';
import type { RequestContext } from '../common/request-context.js';
import type { DeletionQueryDto, DeletionRequestView } from './deletion.dto.js';

/*
 * Checks the guard cannot make because the registry and repositories are in the body or in a stored
 * request. Denials about a stored request name only the permission: they must read the same whether
 * the request exists or not.
 */

/** Every item of a bulk request, before anything is planned, stored or queued; names the first denied. */
export function assertMayDelete(
  ctx: RequestContext,
  registry: string,
  items: { repository: string }[],
): void {
  const access = ctx.access ?? DENY_ALL;
  items.forEach((item, i) => {
    if (!access.can('deletions:create', registry, item.repository))
      throw new ForbiddenError('deletions:create', { registry, repository: item.repository, item: i });
  });
}

/** `deletions:read` on every repository of the request, or `deletions:read-own` and the caller made it. */
export function assertMayRead(ctx: RequestContext, view: DeletionRequestView): void {
  const repositories = [...new Set((view.items ?? []).map((i) => i.repository))];
  if (!mayRead(ctx, view, repositories)) throw new ForbiddenError('deletions:read');
}

/** The rule of assertMayRead, for a request whose distinct repositories are already known. */
export function mayRead(
  ctx: RequestContext,
  view: Pick<DeletionRequestView, 'registry' | 'actor'>,
  repositories: string[],
): boolean {
  const access = ctx.access ?? DENY_ALL;
  const inScope = repositories.length
    ? repositories.every((r) => access.can('deletions:read', view.registry, r))
    : access.can('deletions:read', view.registry);
  return inScope || (isOwn(ctx, view) && access.canAnywhere('deletions:read-own'));
}

/** Execute and cancel act on every item: `deletions:create` on each repository. */
export function assertMayChange(ctx: RequestContext, view: DeletionRequestView): void {
  const access = ctx.access ?? DENY_ALL;
  const repositories = [...new Set((view.items ?? []).map((i) => i.repository))];
  if (!repositories.every((r) => access.can('deletions:create', view.registry, r)))
    throw new ForbiddenError('deletions:create');
}

/** The list as the caller may see it: everything in scope, or only its own requests. */
export function scopeDeletionList(ctx: RequestContext, q: DeletionQueryDto): DeletionQueryDto {
  const access = ctx.access ?? DENY_ALL;
  if (access.can('deletions:read', q.registry, q.repository)) return q;
  if (access.canAnywhere('deletions:read-own') && ctx.actor.id) {
    if (q.actor !== undefined && q.actor !== ctx.actor.id) throw new ForbiddenError('deletions:read');
    return { ...q, actor: ctx.actor.id };
  }
  throw new ForbiddenError('deletions:read', { registry: q.registry, repository: q.repository });
}

/**
 * A stored request that does not exist answers 404 only to callers who may act on every request;
 * everyone else gets the same 403 as for a request outside their scope.
 */
export async function hidingMissing<T>(
  ctx: RequestContext,
  permission: 'deletions:read' | 'deletions:create',
  load: () => Promise<T>,
): Promise<T> {
  try {
    return await load();
  } catch (err) {
    if (
      err instanceof DomainError &&
      err.code === 'DELETION_NOT_FOUND' &&
      !(ctx.access ?? DENY_ALL).can(permission)
    )
      throw new ForbiddenError(permission);
    throw err;
  }
}

function isOwn(ctx: RequestContext, view: Pick<DeletionRequestView, 'actor'>): boolean {
  return !!ctx.actor.id && view.actor.type === ctx.actor.type && view.actor.id === ctx.actor.id;
}
