import { Body, Controller, Get, HttpCode, Param, Post, Query, Res } from '@nestjs/common';
import {
  ApiAcceptedResponse,
  ApiCreatedResponse,
  ApiOkResponse,
  ApiOperation,
  ApiTags,
} from '@nestjs/swagger';
import type { FastifyReply } from 'fastify';
import { Ctx, RequestContext } from '../common/request-context.js';
import {
  CreateDeletionDto,
  DeletionIdParam,
  DeletionPage,
  DeletionQueryDto,
  DeletionRequestView,
} from './deletion.dto.js';
import { DeletionService } from './deletion.service.js';

@ApiTags('deletions')
@Controller('api/v1/deletions')
export class DeletionController {
  constructor(private readonly deletions: DeletionService) {}

  @Post()
  @ApiOperation({
    summary: 'Delete images in bulk, or plan it (dryRun)',
    description:
      'Every reference is resolved with the full Accept list and every tag sharing its digest is listed. A dry run stores the plan (201, status planned) for `POST /deletions/:id/execute`; otherwise the request is committed and queued (202). `maxDeletions` and DELETE_MAX_ITEMS refuse oversized requests before anything is read or deleted.',
  })
  @ApiAcceptedResponse({ type: DeletionRequestView, description: 'Queued' })
  @ApiCreatedResponse({ type: DeletionRequestView, description: 'Dry run: the stored plan' })
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
  @ApiOperation({ summary: 'Deletion requests, newest first (filtered, paged by cursor)' })
  @ApiOkResponse({ type: DeletionPage })
  list(@Query() q: DeletionQueryDto): Promise<DeletionPage> {
    return this.deletions.list(q);
  }

  @Get(':id')
  @ApiOperation({ summary: 'A deletion request with the status and result of every item' })
  @ApiOkResponse({ type: DeletionRequestView })
  get(@Param() p: DeletionIdParam): Promise<DeletionRequestView> {
    return this.deletions.get(p.id);
  }

  @Post(':id/execute')
  @HttpCode(202)
  @ApiOperation({
    summary: 'Execute a planned dry run, exactly as planned',
    description:
      'Re-resolves every planned item first and refuses with PLAN_STALE when a tag now points at another digest or a digest gained tags the plan did not show.',
  })
  @ApiAcceptedResponse({ type: DeletionRequestView })
  execute(@Param() p: DeletionIdParam, @Ctx() ctx: RequestContext): Promise<DeletionRequestView> {
    return this.deletions.execute(p.id, ctx);
  }

  @Post(':id/cancel')
  @HttpCode(200)
  @ApiOperation({ summary: 'Cancel a plan, or the items of a request that have not started' })
  @ApiOkResponse({ type: DeletionRequestView })
  cancel(@Param() p: DeletionIdParam, @Ctx() ctx: RequestContext): Promise<DeletionRequestView> {
    return this.deletions.cancel(p.id, ctx);
  }
}
