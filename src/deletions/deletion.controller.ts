import { Body, Controller, Get, HttpCode, Param, Post, Query, Res } from '@nestjs/common';
import {
  ApiAcceptedResponse,
  ApiCreatedResponse,
  ApiOkResponse,
  ApiOperation,
  ApiTags,
} from '@nestjs/swagger';
import type { FastifyReply } from 'fastify';
import { RequirePermission } from '../auth/auth.decorators.js';
import { ApiErrors, UPSTREAM_ERRORS } from '../common/api-errors.js';
import { instant } from '../common/list-filter.js';
import { SortOrder } from '../common/graphql-types.js';
import { Ctx, RequestContext } from '../common/request-context.js';
import { ForbiddenError } from '../auth/auth-errors.js';
import { DeletionReader } from './deletion-reader.js';
import {
  assertMayChange,
  assertMayRead,
  hidingMissing,
  mayRead,
  scopeDeletionList,
} from './deletion-access.js';
import {
  CreateDeletionDto,
  DeletionIdParam,
  DeletionItemPage,
  DeletionItemQueryDto,
  DeletionPage,
  DeletionQueryDto,
  DeletionRequestView,
} from './deletion.dto.js';
import { DeletionService } from './deletion.service.js';

@ApiTags('deletions')
@Controller('api/v1/deletions')
@ApiErrors({ 400: ['VALIDATION_FAILED'] })
export class DeletionController {
  constructor(
    private readonly deletions: DeletionService,
    private readonly reader: DeletionReader,
  ) {}

  @Post()
  // Every item is checked against (registry, repository) before anything is planned or stored.
  @RequirePermission('deletions:create', { checkedInHandler: true })
  @ApiOperation({
    summary: 'Delete images in bulk, or plan it (dryRun)',
    description:
      'Every reference is resolved with the full Accept list and every tag sharing its digest is listed. A dry run stores the plan (201, status planned) for `POST /deletions/:id/execute`; otherwise the request is committed and queued (202). `maxDeletions` and DELETE_MAX_ITEMS refuse oversized requests before anything is read or deleted.',
  })
  @ApiAcceptedResponse({ type: DeletionRequestView, description: 'Queued' })
  @ApiCreatedResponse({ type: DeletionRequestView, description: 'Dry run: the stored plan' })
  @ApiErrors(
    {
      400: ['NAME_INVALID', 'TAG_INVALID', 'DIGEST_INVALID'],
      404: ['REGISTRY_NOT_FOUND'],
      409: ['DELETE_DISABLED', 'REGISTRY_READ_ONLY'],
      422: ['TOO_MANY_DELETIONS', 'NOTHING_TO_DELETE'],
      423: ['REGISTRY_FENCED'],
    },
    UPSTREAM_ERRORS,
  )
  async create(
    @Body() dto: CreateDeletionDto,
    @Ctx() ctx: RequestContext,
    @Res({ passthrough: true }) reply: FastifyReply,
  ): Promise<DeletionRequestView> {
    const view = await this.deletions.create(dto, ctx);
    void reply.status(view.dryRun ? 201 : 202);
    return view;
  }

  @Get()
  @RequirePermission(['deletions:read', 'deletions:read-own'], {
    registryQuery: 'registry',
    repositoryQuery: 'repository',
    checkedInHandler: true,
  })
  @ApiOperation({
    summary: 'Deletion requests, newest first (filtered, paged by cursor)',
    description:
      'Without deletions:read everywhere, filter by a registry (and repository) you may read; with only deletions:read-own, the list holds your own requests.',
  })
  @ApiOkResponse({ type: DeletionPage })
  list(@Query() q: DeletionQueryDto, @Ctx() ctx: RequestContext): Promise<DeletionPage> {
    const scoped = scopeDeletionList(ctx, q);
    const from = scoped.from === undefined ? undefined : instant(scoped.from, 'from');
    const to = scoped.to === undefined ? undefined : instant(scoped.to, 'to');
    return this.reader.page(
      {
        registry: scoped.registry,
        repository: scoped.repository,
        actor: scoped.actor,
        status: scoped.status ? [scoped.status] : undefined,
        from,
        to,
      },
      { sort: SortOrder.desc, limit: scoped.limit ?? 50, cursor: scoped.cursor },
      ctx,
    );
  }

  @Get(':id')
  @RequirePermission(['deletions:read', 'deletions:read-own'], { checkedInHandler: true })
  @ApiOperation({ summary: 'A deletion request with the status and result of every item' })
  @ApiOkResponse({ type: DeletionRequestView })
  @ApiErrors({ 404: ['DELETION_NOT_FOUND'] })
  async get(@Param() p: DeletionIdParam, @Ctx() ctx: RequestContext): Promise<DeletionRequestView> {
    const view = await hidingMissing(ctx, 'deletions:read', () => this.deletions.get(p.id));
    assertMayRead(ctx, view);
    return view;
  }

  @Get(':id/items')
  @RequirePermission(['deletions:read', 'deletions:read-own'], { checkedInHandler: true })
  @ApiOperation({
    summary: 'The items of a deletion request, a page at a time (filter by status)',
    description:
      'For large requests: GET /deletions/:id returns every item at once (about 400 bytes each); this pages them in request order.',
  })
  @ApiOkResponse({ type: DeletionItemPage })
  @ApiErrors({ 404: ['DELETION_NOT_FOUND'] })
  async items(
    @Param() p: DeletionIdParam,
    @Query() q: DeletionItemQueryDto,
    @Ctx() ctx: RequestContext,
  ): Promise<DeletionItemPage> {
    const loaded = (await this.reader.byIds([p.id])).get(p.id);
    if (!loaded) {
      // get() refuses: 404 for who may read deletions anywhere, 403 for the rest (never whether it exists).
      await hidingMissing(ctx, 'deletions:read', () => this.deletions.get(p.id));
      return { items: [], nextCursor: null }; // created between the two reads
    }
    if (!mayRead(ctx, loaded.view, loaded.repositories)) throw new ForbiddenError('deletions:read');
    const [page] = await this.reader.items([
      { requestId: p.id, limit: q.limit ?? 100, cursor: q.cursor, status: q.status },
    ]);
    if (page instanceof Error) throw page;
    return page;
  }

  @Post(':id/execute')
  @HttpCode(202)
  @ApiOperation({
    summary: 'Execute a planned dry run, exactly as planned',
    description:
      'Re-resolves every planned item first and refuses with PLAN_STALE when a tag now points at another digest or a digest gained tags the plan did not show, and with NOTHING_TO_DELETE (422) when every item of the plan was skipped; a refused plan stays planned.',
  })
  @ApiAcceptedResponse({ type: DeletionRequestView })
  @ApiErrors(
    {
      404: ['DELETION_NOT_FOUND', 'REGISTRY_NOT_FOUND'],
      409: ['DELETION_NOT_PLANNED', 'PLAN_STALE', 'DELETE_DISABLED', 'REGISTRY_READ_ONLY'],
      422: ['NOTHING_TO_DELETE', 'TOO_MANY_DELETIONS'],
      423: ['REGISTRY_FENCED'],
    },
    UPSTREAM_ERRORS,
  )
  @RequirePermission('deletions:create', { checkedInHandler: true })
  async execute(@Param() p: DeletionIdParam, @Ctx() ctx: RequestContext): Promise<DeletionRequestView> {
    // The items of a request never change, so checking them before executing is not a race.
    assertMayChange(ctx, await hidingMissing(ctx, 'deletions:create', () => this.deletions.get(p.id)));
    return this.deletions.execute(p.id, ctx);
  }

  @Post(':id/cancel')
  @HttpCode(200)
  @ApiOperation({ summary: 'Cancel a plan, or the items of a request that have not started' })
  @ApiOkResponse({ type: DeletionRequestView })
  @ApiErrors({ 404: ['DELETION_NOT_FOUND'], 409: ['DELETION_FINISHED'] })
  @RequirePermission('deletions:create', { checkedInHandler: true })
  async cancel(@Param() p: DeletionIdParam, @Ctx() ctx: RequestContext): Promise<DeletionRequestView> {
    assertMayChange(ctx, await hidingMissing(ctx, 'deletions:create', () => this.deletions.get(p.id)));
    return this.deletions.cancel(p.id, ctx);
  }
}
