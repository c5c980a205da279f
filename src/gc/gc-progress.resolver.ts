import { Context, Parent, ResolveField, Resolver, Subscription } from '@nestjs/graphql';
import { In } from 'typeorm';
import { InjectDataSource } from '@nestjs/typeorm';
import { DataSource } from 'typeorm';
import { AuditEventObject } from '../audit/audit.graphql.js';
import { RequirePermission } from '../auth/auth.decorators.js';
import { AppConfig } from '../config/app-config.js';
import { liveFeed } from '../common/live-feed.js';
import { Ctx, RequestContext } from '../common/request-context.js';
import { requestLoader } from '../common/request-loaders.js';
import { UUID_RE, UuidArg } from '../common/uuid-ids.js';
import { Channels, PgNotifications } from '../database/notifications.js';
import { GcRunView } from './gc.dto.js';
import { GcRunEntity, isGcRunFinished } from './gc.entity.js';
import { GcService, mayUseGcRuns, toView } from './gc.service.js';

const MIN_PROGRESS_INTERVAL_MS = 200;

/** GC runs as the audit console follows them: live progress, and the run behind an audit event. */
@Resolver(() => GcRunView)
export class GcProgressResolver {
  constructor(
    private readonly gc: GcService,
    private readonly notifications: PgNotifications,
    private readonly config: AppConfig,
  ) {}

  @Subscription(() => GcRunView, {
    description:
      'A GC run as it progresses, from its state now through every phase change and heartbeat (with the output so far, when `output` is asked for) until it succeeds, fails or is cancelled (needs gc:read on its whole registry).',
    resolve: (value: GcRunView) => value,
  })
  @RequirePermission('gc:read', { checkedInHandler: true })
  async gcRunProgress(
    @UuidArg('id', 'a GC run id', { description: 'The run’s uuid' }) id: string,
    @Ctx() ctx: RequestContext,
  ): Promise<AsyncIterableIterator<GcRunView>> {
    await this.gc.getFor(id, ctx);
    return liveFeed<GcRunView>({
      load: () => this.gc.get(id),
      isFinal: (r) => isGcRunFinished(r.status),
      key: (r) =>
        JSON.stringify([
          r.status,
          r.phase,
          r.heartbeatAt?.getTime(),
          r.cancelRequested,
          r.blobsDeleted,
          r.bytesFreed,
        ]),
      watch: (changed) => this.notifications.listen(Channels.gcRun, id, changed),
      pollMs: this.config.graphql.subscriptionPollMs,
      minIntervalMs: MIN_PROGRESS_INTERVAL_MS,
    });
  }
}

/** `AuditEvent.gcRun`: one query for the runs of a whole page of events. */
@Resolver(() => AuditEventObject)
export class GcAuditResolver {
  constructor(@InjectDataSource() private readonly ds: DataSource) {}

  @ResolveField('gcRun', () => GcRunView, {
    nullable: true,
    description:
      'The GC run this event is about, when its subject is one and you may read it (gc:read on its whole registry).',
  })
  @RequirePermission('gc:read', { checkedInHandler: true })
  async gcRun(
    @Parent() event: AuditEventObject,
    @Context('req') req: object,
    @Ctx() ctx: RequestContext,
  ): Promise<GcRunView | null> {
    if (event.subject?.type !== 'gc_run' || !UUID_RE.test(event.subject.id)) return null;
    const loader = requestLoader<string, GcRunEntity | null>(req, 'gc-run-by-id', async (ids) => {
      const rows = await this.ds.getRepository(GcRunEntity).findBy({ id: In([...new Set(ids)]) });
      const byId = new Map(rows.map((r) => [r.id, r]));
      return ids.map((id) => byId.get(id) ?? null);
    });
    const run = await loader.load(event.subject.id);
    return run && mayUseGcRuns(ctx, 'gc:read', run.registry) ? toView(run) : null;
  }
}
