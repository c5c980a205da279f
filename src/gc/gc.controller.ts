import { Body, Controller, Delete, Get, HttpCode, Param, Post, Put, Query, Res } from '@nestjs/common';
import {
  ApiAcceptedResponse,
  ApiNoContentResponse,
  ApiOkResponse,
  ApiOperation,
  ApiTags,
} from '@nestjs/swagger';
import type { FastifyReply } from 'fastify';
import { RequirePermission } from '../auth/auth.decorators.js';
import { ApiErrors } from '../common/api-errors.js';
import { Ctx, RequestContext } from '../common/request-context.js';
import { GcSettingsDto, GcSettingsView } from './gc-settings.dto.js';
import { GcSettingsService } from './gc-settings.service.js';
import { liveFeed } from '../common/live-feed.js';
import { AppConfig } from '../config/app-config.js';
import { Channels, PgNotifications } from '../database/notifications.js';
import { GcRequestDto, GcRunIdParam, GcRunPage, GcRunQueryDto, GcRunView, GcRunWaitQuery } from './gc.dto.js';
import { isGcRunFinished } from './gc.entity.js';
import { GcService } from './gc.service.js';

@ApiTags('gc')
@Controller('api/v1')
export class GcController {
  constructor(
    private readonly gc: GcService,
    private readonly settings: GcSettingsService,
    private readonly notifications: PgNotifications,
    private readonly config: AppConfig,
  ) {}

  @Post('registries/:registry/gc')
  @RequirePermission('gc:run', { registryParam: 'registry' })
  @ApiOperation({
    summary: 'Run the registry’s garbage collector (queued, fenced, verified)',
    description:
      'Answers 202 with the new run, or 200 with the run already queued or running on this registry: there is never more than one. A dry run lists what would be deleted and changes nothing.',
  })
  @ApiAcceptedResponse({ type: GcRunView, description: 'A new run was queued' })
  @ApiOkResponse({ type: GcRunView, description: 'The registry’s run that is already queued or running' })
  @ApiErrors({
    400: ['VALIDATION_FAILED'],
    404: ['REGISTRY_NOT_FOUND'],
    409: ['GC_NOT_CONFIGURED', 'GC_UNFENCED_NOT_CONFIRMED', 'GC_CONFLICT'],
  })
  async run(
    @Param('registry') registry: string,
    @Body() dto: GcRequestDto,
    @Ctx() ctx: RequestContext,
    @Res({ passthrough: true }) reply: FastifyReply,
  ): Promise<GcRunView> {
    const { run, created } = await this.gc.request(registry, dto, ctx);
    void reply.status(created ? 202 : 200);
    return run;
  }

  @Get('gc-runs')
  @RequirePermission('gc:read', { registryQuery: 'registry' })
  @ApiOperation({ summary: 'GC runs, newest first (history; filter by registry and status)' })
  @ApiOkResponse({ type: GcRunPage })
  @ApiErrors({ 400: ['VALIDATION_FAILED'] })
  list(@Query() q: GcRunQueryDto): Promise<GcRunPage> {
    return this.gc.list(q);
  }

  @Get('gc-runs/:id')
  @RequirePermission('gc:read', { checkedInHandler: true })
  @ApiOperation({
    summary: 'One GC run: phase, counts, bytes, verification, error (its output: GET /gc-runs/:id/output)',
    description:
      'With `wait=N` the answer comes as soon as the run finishes, or after N seconds (at most 60) with the run as it is then: a script waits for a run with one request at a time instead of polling.',
  })
  @ApiOkResponse({ type: GcRunView })
  @ApiErrors({ 400: ['VALIDATION_FAILED'], 404: ['GC_RUN_NOT_FOUND'] })
  async get(
    @Param() p: GcRunIdParam,
    @Query() q: GcRunWaitQuery,
    @Ctx() ctx: RequestContext,
  ): Promise<GcRunView> {
    const run = await this.gc.getFor(p.id, ctx);
    if (!q.wait || isGcRunFinished(run.status)) return run;
    return this.untilFinished(p.id, q.wait * 1000);
  }

  /**
   * The run once it has finished (followed the way the GraphQL subscription follows it), or as it is
   * after `ms`. Only its status is read at each change (a run changes at every heartbeat); the whole
   * run once, at the end.
   */
  private async untilFinished(id: string, ms: number): Promise<GcRunView> {
    const feed = liveFeed<string>({
      load: () => this.gc.status(id),
      isFinal: (status) => isGcRunFinished(status),
      key: (status) => status,
      watch: (changed) => this.notifications.listen(Channels.gcRun, id, changed),
      pollMs: this.config.graphql.subscriptionPollMs,
      minIntervalMs: 0,
    });
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<'timeout'>((resolve) => (timer = setTimeout(() => resolve('timeout'), ms)));
    try {
      for (;;) {
        const next = await Promise.race([feed.next(), timedOut]);
        if (next === 'timeout' || next.done || isGcRunFinished(next.value)) break;
      }
    } finally {
      clearTimeout(timer);
      await feed.return?.();
    }
    return this.gc.get(id);
  }

  @Get('gc-runs/:id/output')
  @RequirePermission('gc:read', { checkedInHandler: true })
  @ApiOperation({
    summary: 'A GC run’s output (text/plain)',
    description:
      'What the collector printed, stdout and stderr as they came: while it runs the last 64 KiB, once it ended all of it, GC_OUTPUT_CAP_BYTES at most (head and tail kept, the cut marked; `X-Output-Truncated: true`). Empty before the collector printed anything. 410 GC_OUTPUT_REMOVED once dropped, GC_OUTPUT_RETENTION_DAYS after the run ended.',
  })
  @ApiOkResponse({ content: { 'text/plain': { schema: { type: 'string' } } }, description: 'The output' })
  @ApiErrors({ 400: ['VALIDATION_FAILED'], 404: ['GC_RUN_NOT_FOUND'], 410: ['GC_OUTPUT_REMOVED'] })
  async output(
    @Param() p: GcRunIdParam,
    @Ctx() ctx: RequestContext,
    @Res({ passthrough: true }) reply: FastifyReply,
  ): Promise<string> {
    const { output, truncated } = await this.gc.outputFor(p.id, ctx);
    void reply
      .header('content-type', 'text/plain; charset=utf-8')
      .header('x-output-truncated', String(truncated));
    return output;
  }

  @Post('gc-runs/:id/cancel')
  @HttpCode(202)
  @RequirePermission('gc:run', { checkedInHandler: true })
  @ApiOperation({
    summary: 'Cancel a GC run',
    description:
      'A queued run ends at once. A running one is stopped at its worker’s next heartbeat: the collector is killed, the registry restored (started, out of read-only mode, cache emptied) and the fence dropped; the run ends `cancelled`. 409 GC_RUN_FINISHED when it already ended.',
  })
  @ApiAcceptedResponse({ type: GcRunView })
  @ApiErrors({ 400: ['VALIDATION_FAILED'], 404: ['GC_RUN_NOT_FOUND'], 409: ['GC_RUN_FINISHED'] })
  cancel(@Param() p: GcRunIdParam, @Ctx() ctx: RequestContext): Promise<GcRunView> {
    return this.gc.cancel(p.id, ctx);
  }

  @Get('registries/:registry/gc-settings')
  @RequirePermission('registries:read', { registryParam: 'registry', anyRepository: true })
  @ApiOperation({ summary: 'How GC runs for this registry (secrets are never returned)' })
  @ApiOkResponse({ type: GcSettingsView })
  @ApiErrors({ 404: ['REGISTRY_NOT_FOUND', 'GC_NOT_CONFIGURED'] })
  getSettings(@Param('registry') registry: string): Promise<GcSettingsView> {
    return this.settings.get(registry);
  }

  @Put('registries/:registry/gc-settings')
  @RequirePermission('registries:write', { registryParam: 'registry' })
  @ApiOperation({
    summary: 'Configure GC for this registry: executor, fence, cache, grace window, schedule',
    description:
      'Refused (FENCE_UNSUPPORTED) when the executor cannot do what the fence or the cache needs (restart, read-only mode, stop).',
  })
  @ApiOkResponse({ type: GcSettingsView })
  @ApiErrors({
    400: ['VALIDATION_FAILED', 'FENCE_UNSUPPORTED'],
    404: ['REGISTRY_NOT_FOUND'],
    409: ['GC_SETTINGS_MANAGED_BY_FILE'],
  })
  putSettings(
    @Param('registry') registry: string,
    @Body() dto: GcSettingsDto,
    @Ctx() ctx: RequestContext,
  ): Promise<GcSettingsView> {
    return this.settings.put(registry, dto, ctx);
  }

  @Delete('registries/:registry/gc-settings')
  @HttpCode(204)
  @RequirePermission('registries:write', { registryParam: 'registry' })
  @ApiOperation({ summary: 'Remove the GC configuration (and its schedule) of this registry' })
  @ApiNoContentResponse()
  @ApiErrors({ 404: ['REGISTRY_NOT_FOUND', 'GC_NOT_CONFIGURED'], 409: ['GC_SETTINGS_MANAGED_BY_FILE'] })
  async deleteSettings(@Param('registry') registry: string, @Ctx() ctx: RequestContext): Promise<void> {
    await this.settings.remove(registry, ctx);
  }
}
