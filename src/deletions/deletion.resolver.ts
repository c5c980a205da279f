import {
  Args,
  Context,
  Int,
  Mutation,
  Parent,
  Query,
  ResolveField,
  Resolver,
  Subscription,
} from '@nestjs/graphql';
import { DENY_ALL } from '../auth/access.js';
import { ForbiddenError } from '../auth/auth-errors.js';
import { RequirePermission } from '../auth/auth.decorators.js';
import { AuditEventObject } from '../audit/audit.graphql.js';
import { AppConfig } from '../config/app-config.js';
import { NotFoundError } from '../common/domain-error.js';
import { pageLimit, SortOrder } from '../common/graphql-types.js';
import { liveFeed } from '../common/live-feed.js';
import { Ctx, RequestContext } from '../common/request-context.js';
import { requestLoader } from '../common/request-loaders.js';
import { UuidArg } from '../common/uuid-ids.js';
import { Channels, PgNotifications } from '../database/notifications.js';
import { assertMayChange, hidingMissing, mayRead } from './deletion-access.js';
import { DeletionReader, type ItemsKey, type ItemsPage, type LoadedDeletion } from './deletion-reader.js';
import type { DeletionItemStatus, DeletionStatus } from './deletion.entity.js';
import {
  CreateDeletionInput,
  DeletionFilterInput,
  deletionItemObject,
  DeletionItemPageObject,
  DeletionItemStatusValue,
  deletionObject,
  DeletionObject,
  DeletionPageObject,
} from './deletion.graphql.js';
import { DeletionService } from './deletion.service.js';

const PAGE_MAX = 500;
const FINAL: readonly string[] = ['succeeded', 'partially_failed', 'failed', 'cancelled'];
/** Fastest a subscription re-reads a request while chunks settle. */
const MIN_PROGRESS_INTERVAL_MS = 200;

/** The GraphQL context's request: the key of the per-request DataLoaders. */
type GqlRequest = object;

/**
 * Deletions over GraphQL: the same service, checks and errors as REST (deletion.controller.ts,
 * image-delete.controller.ts), plus lists narrowed to what the caller may read, paged items loaded in one
 * query per page, and a subscription that streams a request's progress.
 */
/** The arguments deleteImage and deleteTag share. */
const REGISTRY_ARG = { description: 'Registry name' };
const REPOSITORY_ARG = { description: 'Repository name' };
const DRY_RUN_ARG = { defaultValue: false, description: 'Store the plan (status planned) without acting' };
const REASON_ARG = {
  type: () => String,
  nullable: true,
  description: 'Why: kept with the request and in the audit trail',
};

@Resolver(() => DeletionObject)
export class DeletionResolver {
  constructor(
    private readonly service: DeletionService,
    private readonly reader: DeletionReader,
    private readonly notifications: PgNotifications,
    private readonly config: AppConfig,
  ) {}

  @Query(() => DeletionObject, {
    description:
      'One deletion request (needs deletions:read on every repository it touches, or deletions:read-own for your own).',
  })
  @RequirePermission(['deletions:read', 'deletions:read-own'], { checkedInHandler: true })
  async deletion(
    @UuidArg('id', 'a deletion request id', { description: 'The request’s uuid' }) id: string,
    @Ctx() ctx: RequestContext,
  ): Promise<DeletionObject> {
    return deletionObject((await this.readable(id, ctx)).view);
  }

  @Query(() => DeletionPageObject, {
    description:
      'Deletion requests, filtered and paged, newest first by default (needs deletions:read or deletions:read-own). Lists only the requests the caller may read.',
  })
  @RequirePermission(['deletions:read', 'deletions:read-own'], { checkedInHandler: true })
  async deletions(
    @Ctx() ctx: RequestContext,
    @Args('filter', {
      type: () => DeletionFilterInput,
      nullable: true,
      description: 'Which requests; all of them when left out',
    })
    filter?: DeletionFilterInput,
    @Args('sort', { type: () => SortOrder, defaultValue: SortOrder.desc, description: 'By creation time' })
    sort?: SortOrder,
    @Args('limit', { type: () => Int, defaultValue: 50, description: `1 to ${PAGE_MAX}` }) limit?: number,
    @Args('cursor', { type: () => String, nullable: true, description: 'nextCursor of the previous page' })
    cursor?: string,
  ): Promise<DeletionPageObject> {
    const f = filter ?? {};
    const access = ctx.access ?? DENY_ALL;
    if (
      f.registry &&
      !access.canInRegistry('deletions:read', f.registry) &&
      !access.canAnywhere('deletions:read-own')
    )
      throw new ForbiddenError('deletions:read', { registry: f.registry, repository: f.repository });
    const page = await this.reader.page(
      { ...f, status: f.status as DeletionStatus[] | undefined },
      { sort: sort ?? SortOrder.desc, limit: pageLimit(limit, 50, PAGE_MAX), cursor: cursor ?? undefined },
      ctx,
    );
    return { items: page.items.map(deletionObject), nextCursor: page.nextCursor };
  }

  @ResolveField('items', () => DeletionItemPageObject, {
    description:
      'The items, in request order, a page at a time (needs deletions:read or deletions:read-own, as for the request).',
  })
  // The request itself was checked when it was read.
  @RequirePermission(['deletions:read', 'deletions:read-own'], { checkedInHandler: true })
  items(
    @Parent() deletion: DeletionObject,
    @Context('req') req: GqlRequest,
    @Args('limit', { type: () => Int, defaultValue: 100, description: `1 to ${PAGE_MAX}` }) limit?: number,
    @Args('cursor', { type: () => String, nullable: true, description: 'nextCursor of the previous page' })
    cursor?: string,
    @Args('status', {
      type: () => DeletionItemStatusValue,
      nullable: true,
      description: 'Only items in this status',
    })
    status?: DeletionItemStatusValue,
  ): Promise<DeletionItemPageObject> {
    const loader = requestLoader<ItemsKey, ItemsPage>(req, 'deletion-items', (keys) =>
      this.reader.items(keys),
    );
    return loader
      .load({
        requestId: deletion.id,
        limit: pageLimit(limit, 100, PAGE_MAX),
        cursor: cursor ?? undefined,
        status: (status ?? undefined) as DeletionItemStatus | undefined,
      })
      .then((page) => ({ items: page.items.map(deletionItemObject), nextCursor: page.nextCursor }));
  }

  @Mutation(() => DeletionObject, {
    description:
      'Delete an image by tag or digest, and so every tag pointing at its digest (needs deletions:create on the repository); queued, or stored as a plan with dryRun.',
  })
  @RequirePermission('deletions:create', { registryParam: 'registry', repositoryParam: 'repository' })
  async deleteImage(
    @Args('registry', REGISTRY_ARG) registry: string,
    @Args('repository', REPOSITORY_ARG) repository: string,
    @Args('reference', { description: 'A tag or a digest' }) reference: string,
    @Ctx() ctx: RequestContext,
    @Args('dryRun', DRY_RUN_ARG) dryRun?: boolean,
    @Args('reason', REASON_ARG) reason?: string,
  ): Promise<DeletionObject> {
    const view = await this.service.createOne(
      { registry, items: [{ repository, reference, kind: 'manifest' }], dryRun, reason: reason ?? undefined },
      ctx,
    );
    return deletionObject(view);
  }

  @Mutation(() => DeletionObject, {
    description:
      'Remove only one tag, keeping the image for its other tags, also on Distribution 2.8 (needs deletions:create on the repository).',
  })
  @RequirePermission('deletions:create', { registryParam: 'registry', repositoryParam: 'repository' })
  async deleteTag(
    @Args('registry', REGISTRY_ARG) registry: string,
    @Args('repository', REPOSITORY_ARG) repository: string,
    @Args('tag', { description: 'The tag to remove' }) tag: string,
    @Ctx() ctx: RequestContext,
    @Args('dryRun', DRY_RUN_ARG) dryRun?: boolean,
    @Args('reason', REASON_ARG) reason?: string,
  ): Promise<DeletionObject> {
    const view = await this.service.createOne(
      { registry, items: [{ repository, reference: tag, kind: 'tag' }], dryRun, reason: reason ?? undefined },
      ctx,
    );
    return deletionObject(view);
  }

  @Mutation(() => DeletionObject, {
    description:
      'Delete in bulk, or plan it with dryRun (needs deletions:create on each repository); every item is checked before anything is planned.',
  })
  // Every item is checked against (registry, repository) by the service before anything is planned.
  @RequirePermission('deletions:create', { checkedInHandler: true })
  async createDeletion(
    @Args('input', { description: 'The registry, the items and how to run them' })
    input: CreateDeletionInput,
    @Ctx() ctx: RequestContext,
  ): Promise<DeletionObject> {
    return deletionObject(await this.service.create(input, ctx));
  }

  @Mutation(() => DeletionObject, {
    description:
      'Execute a planned dry run exactly as planned (needs deletions:create on every repository of the plan); PLAN_STALE when the registry changed meanwhile, NOTHING_TO_DELETE when every item was skipped.',
  })
  @RequirePermission('deletions:create', { checkedInHandler: true })
  async executeDeletion(
    @UuidArg('id', 'a deletion request id', { description: 'The plan’s uuid' }) id: string,
    @Ctx() ctx: RequestContext,
  ): Promise<DeletionObject> {
    assertMayChange(ctx, await hidingMissing(ctx, 'deletions:create', () => this.service.get(id)));
    return deletionObject(await this.service.execute(id, ctx));
  }

  @Mutation(() => DeletionObject, {
    description:
      'Cancel a plan, or the items of a request that have not started (needs deletions:create on every repository of the request).',
  })
  @RequirePermission('deletions:create', { checkedInHandler: true })
  async cancelDeletion(
    @UuidArg('id', 'a deletion request id', { description: 'The request’s uuid' }) id: string,
    @Ctx() ctx: RequestContext,
  ): Promise<DeletionObject> {
    assertMayChange(ctx, await hidingMissing(ctx, 'deletions:create', () => this.service.get(id)));
    return deletionObject(await this.service.cancel(id, ctx));
  }

  @Subscription(() => DeletionObject, {
    description:
      'A deletion request as it progresses, from its state now through every change of status or counts to its final status (needs deletions:read on every repository it touches, or deletions:read-own for your own).',
    resolve: (value: DeletionObject) => value,
  })
  @RequirePermission(['deletions:read', 'deletions:read-own'], { checkedInHandler: true })
  async deletionProgress(
    @UuidArg('id', 'a deletion request id', { description: 'The request’s uuid' }) id: string,
    @Ctx() ctx: RequestContext,
  ): Promise<AsyncIterableIterator<DeletionObject>> {
    await this.readable(id, ctx);
    return liveFeed<DeletionObject>({
      load: async () => {
        const loaded = (await this.reader.byIds([id])).get(id);
        if (!loaded) throw deletionNotFound(id);
        return deletionObject(loaded.view);
      },
      isFinal: (d) => FINAL.includes(d.status),
      key: (d) => JSON.stringify([d.status, d.counts]),
      watch: (changed) => this.notifications.listen(Channels.deletion, id, changed),
      pollMs: this.config.graphql.subscriptionPollMs,
      minIntervalMs: MIN_PROGRESS_INTERVAL_MS,
    });
  }

  /** The request if the caller may read it; as REST, a missing one is a 403 to those who could not read it. */
  private async readable(id: string, ctx: RequestContext): Promise<LoadedDeletion> {
    const loaded = await hidingMissing(ctx, 'deletions:read', async () => {
      const found = (await this.reader.byIds([id])).get(id);
      if (!found) throw deletionNotFound(id);
      return found;
    });
    if (!mayRead(ctx, loaded.view, loaded.repositories)) throw new ForbiddenError('deletions:read');
    return loaded;
  }
}

/** `AuditEvent.deletion`: the deletion request an event is about, loaded for a whole page at once. */
@Resolver(() => AuditEventObject)
export class DeletionAuditResolver {
  constructor(private readonly reader: DeletionReader) {}

  @ResolveField('deletion', () => DeletionObject, {
    nullable: true,
    description:
      'The deletion request this event is about, when its subject is one and you may read it (deletions:read on its repositories, or deletions:read-own).',
  })
  @RequirePermission(['deletions:read', 'deletions:read-own'], { checkedInHandler: true })
  async deletion(
    @Parent() event: AuditEventObject,
    @Context('req') req: GqlRequest,
    @Ctx() ctx: RequestContext,
  ): Promise<DeletionObject | null> {
    if (event.subject?.type !== 'deletion_request') return null;
    const loader = requestLoader<string, LoadedDeletion | null>(req, 'deletion-by-id', async (ids) => {
      const found = await this.reader.byIds(ids);
      return ids.map((id) => found.get(id) ?? null);
    });
    const loaded = await loader.load(event.subject.id);
    return loaded && mayRead(ctx, loaded.view, loaded.repositories) ? deletionObject(loaded.view) : null;
  }
}

function deletionNotFound(id: string): NotFoundError {
  return new NotFoundError('DELETION_NOT_FOUND', `no deletion request ${id}`, { id });
}
