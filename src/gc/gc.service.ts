import { InjectQueue } from '@nestjs/bullmq';
import { Injectable, Logger } from '@nestjs/common';
import { EventEmitter2 } from '@nestjs/event-emitter';
import { InjectDataSource } from '@nestjs/typeorm';
import { JobsOptions, Queue } from 'bullmq';
import { DataSource, EntityManager } from 'typeorm';
import { auditBase, recordAudit, type AuditOutcome } from '../audit/audit-event.js';
import { createdPage } from '../common/cursor.js';
import { withoutNulls } from '../common/list-filter.js';
import { DENY_ALL } from '../auth/access.js';
import { ForbiddenError } from '../auth/auth-errors.js';
import { ConflictError, DomainError, NotFoundError } from '../common/domain-error.js';
import type { RequestContext } from '../common/request-context.js';
import { Jobs, Queues, type GcRunPayload } from '../queue/queue.constants.js';
import { RegistriesService } from '../registries/registries.service.js';
import { GcSettingsService } from './gc-settings.service.js';
import { GcRequestDto, GcRunPage, GcRunQueryDto, GcRunView } from './gc.dto.js';
import { GcRunEntity, type GcTrigger, type GcVerification } from './gc.entity.js';

/** The domain event emitted (in the worker) when a run ends; webhooks listen to it. */
export const GC_FINISHED_EVENT = 'gc.finished';

export type GcPermission = 'gc:read' | 'gc:run';

/**
 * What reading (gc:read) or cancelling (gc:run) a stored run needs: the permission on its whole
 * registry, as listing the registry's runs and starting one need (the guard's check of a registry without
 * a repository). A run covers the whole registry, and its output names every repository and digest it
 * collected: a binding on some repositories reaches none of them.
 */
export function mayUseGcRuns(ctx: RequestContext, permission: GcPermission, registry: string): boolean {
  return (ctx.access ?? DENY_ALL).can(permission, registry);
}

/**
 * GC runs: requested (one active run per registry, enforced by a partial unique index), committed
 * before they are queued (the sweep queues what a crash left behind), read and listed.
 */
@Injectable()
export class GcService {
  private readonly logger = new Logger(GcService.name);

  constructor(
    @InjectDataSource() private readonly ds: DataSource,
    private readonly events: EventEmitter2,
    private readonly registries: RegistriesService,
    private readonly settings: GcSettingsService,
    @InjectQueue(Queues.gc) private readonly queue: Queue,
  ) {}

  /**
   * Starts a run, or answers the registry's run that is already queued or running (`created: false`):
   * two requests, from any replicas, never make two runs.
   */
  async request(
    registryName: string,
    dto: GcRequestDto,
    ctx: RequestContext,
    trigger: GcTrigger = 'manual',
  ): Promise<{ run: GcRunView; created: boolean }> {
    const registry = await this.registries.get(registryName);
    // The registry's run, if any, is read beside its settings; the settings' refusals come first.
    const running = this.active(registry.id);
    running.catch(() => undefined);
    const settings = await this.settings.require(registry);
    const dryRun = dto.dryRun ?? false;
    if (settings.fence === 'none' && !dryRun && !dto.allowUnfenced)
      throw new DomainError(
        'GC_UNFENCED_NOT_CONFIRMED',
        `registry "${registry.name}" is configured without a fence: GC would run while it takes writes. Confirm with allowUnfenced: true`,
        409,
        { registry: registry.name, fence: 'none' },
      );
    const active = await running;
    if (active) return { run: toView(active), created: false };

    const inserted = await this.ds.transaction(async (m) => {
      const rows = (await m.query(
        `INSERT INTO gc_runs (registry, registry_id, trigger, actor_type, actor_id, actor_name, source_ip,
           request_id, dry_run, delete_untagged, fence, unfenced_allowed, executor, status, phase)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, 'queued', 'queued')
         ON CONFLICT (registry_id) WHERE status IN ('queued', 'running') DO NOTHING
         RETURNING id`,
        [
          registry.name,
          registry.id,
          trigger,
          ctx.actor.type,
          ctx.actor.id,
          ctx.actor.name ?? null,
          ctx.sourceIp,
          ctx.requestId,
          dryRun,
          dto.deleteUntagged ?? false,
          dryRun ? 'none' : settings.fence,
          settings.fence === 'none' && !dryRun,
          settings.executor.type,
        ],
      )) as { id: string }[];
      if (!rows.length) return null;
      const run = await m.getRepository(GcRunEntity).findOneByOrFail({ id: rows[0].id });
      await this.audit(m, run, 'gc.requested', 'pending', ctx, {
        trigger,
        dryRun,
        deleteUntagged: run.deleteUntagged,
      });
      return run;
    });
    if (!inserted) {
      // Another replica inserted between our look and our insert.
      const winner = await this.active(registry.id);
      if (winner) return { run: toView(winner), created: false };
      throw new DomainError('GC_CONFLICT', 'a GC run was started and finished concurrently; try again', 409);
    }
    await this.enqueue(inserted.id);
    // The run as created (queued): a worker may already have taken it, and its next read says so.
    return { run: toView(inserted), created: true };
  }

  jobOptions(runId: string): JobsOptions {
    // One attempt: a run is never retried blindly. A crashed run is recovered (registry restored) and failed.
    return {
      jobId: runId,
      attempts: 1,
      removeOnComplete: { age: 7 * 24 * 3600, count: 1000 },
      removeOnFail: { age: 30 * 24 * 3600, count: 1000 },
    };
  }

  /** Never throws: a run not queued now is queued by the sweep. */
  async enqueue(runId: string): Promise<boolean> {
    try {
      await this.queue.add(Jobs.gcRun, { runId } satisfies GcRunPayload, this.jobOptions(runId));
      await this.ds.query('UPDATE gc_runs SET enqueued_at = now() WHERE id = $1', [runId]);
      return true;
    } catch (err) {
      this.logger.warn(
        `GC run ${runId} is stored but not queued yet (${(err as Error).message}); the sweep will queue it`,
      );
      return false;
    }
  }

  async get(id: string): Promise<GcRunView> {
    return toView(await this.find(id));
  }

  /** The run, if the caller may read its registry's runs; never says whether a run it may not read exists. */
  async getFor(id: string, ctx: RequestContext, permission: GcPermission = 'gc:read'): Promise<GcRunView> {
    return toView(await this.readable(id, ctx, permission));
  }

  /**
   * The run (with its output when `withOutput`), if the caller may read or run its registry's runs. A
   * run that does not exist answers 404 only to callers who may use every registry's runs; everyone else
   * gets the same 403 as for a run outside their scope, naming only the permission.
   */
  private async readable(
    id: string,
    ctx: RequestContext,
    permission: GcPermission,
    withOutput = false,
  ): Promise<GcRunEntity> {
    const qb = this.ds.getRepository(GcRunEntity).createQueryBuilder('r').where('r.id = :id', { id });
    const run = await (withOutput ? qb.addSelect('r.output') : qb).getOne();
    if (!run) {
      if (!(ctx.access ?? DENY_ALL).can(permission)) throw new ForbiddenError(permission);
      throw new NotFoundError('GC_RUN_NOT_FOUND', `GC run ${id} does not exist`, { id });
    }
    if (!mayUseGcRuns(ctx, permission, run.registry)) throw new ForbiddenError(permission);
    return run;
  }

  /** Only the run's status: what a wait for its end reads at every change (heartbeats included). */
  async status(id: string): Promise<GcRunView['status']> {
    const run = await this.ds.getRepository(GcRunEntity).findOne({ where: { id }, select: { status: true } });
    if (!run) throw new NotFoundError('GC_RUN_NOT_FOUND', `GC run ${id} does not exist`, { id });
    return run.status;
  }

  async find(id: string): Promise<GcRunEntity> {
    const run = await this.ds.getRepository(GcRunEntity).findOneBy({ id });
    if (!run) throw new NotFoundError('GC_RUN_NOT_FOUND', `GC run ${id} does not exist`, { id });
    return run;
  }

  /**
   * A run's output, if the caller may read its registry's runs: while it runs the last 64 KiB, once the
   * collector ended all of it (GC_OUTPUT_CAP_BYTES at most, `truncated` when cut). 410 GC_OUTPUT_REMOVED
   * once it was dropped (GC_OUTPUT_RETENTION_DAYS); empty before the collector printed anything.
   */
  async outputFor(id: string, ctx: RequestContext): Promise<{ output: string; truncated: boolean }> {
    const run = await this.readable(id, ctx, 'gc:read', true);
    if (run.outputRemovedAt)
      throw new DomainError(
        'GC_OUTPUT_REMOVED',
        `the output of GC run ${id} was dropped on ${run.outputRemovedAt.toISOString()}, GC_OUTPUT_RETENTION_DAYS after the run ended; its counts, verification and audit events stay`,
        410,
        { id, outputRemovedAt: run.outputRemovedAt.toISOString() },
      );
    return { output: run.output ?? '', truncated: run.outputTruncated };
  }

  /** The outputs of runs, in the order of `ids` (null: none, or dropped). */
  async outputs(ids: readonly string[]): Promise<(string | null)[]> {
    const rows = (await this.ds.query(`SELECT id, output FROM gc_runs WHERE id = ANY($1::uuid[])`, [
      [...new Set(ids)],
    ])) as { id: string; output: string | null }[];
    const byId = new Map(rows.map((r) => [r.id, r.output]));
    return ids.map((id) => byId.get(id) ?? null);
  }

  /**
   * Cancels a run: a queued one at once; a running one at its worker's next heartbeat, which stops the
   * collector, restores the registry and drops the fence before the run ends as `cancelled`.
   */
  async cancel(id: string, ctx: RequestContext): Promise<GcRunView> {
    await this.getFor(id, ctx, 'gc:run');
    await this.ds.transaction(async (m) => {
      const run = await m
        .getRepository(GcRunEntity)
        .createQueryBuilder('r')
        .setLock('pessimistic_write')
        .where('r.id = :id', { id })
        .getOneOrFail();
      if (run.status !== 'queued' && run.status !== 'running')
        throw new ConflictError(
          'GC_RUN_FINISHED',
          `GC run ${id} has already ${run.status === 'cancelled' ? 'been cancelled' : run.status}`,
          {
            id,
            status: run.status,
          },
        );
      if (run.status === 'queued')
        await m.query(
          `UPDATE gc_runs SET status = 'cancelled', phase = 'done', cancel_requested = true, error_code = 'GC_CANCELLED',
             error_message = 'cancelled before it started', finished_at = now(), updated_at = now() WHERE id = $1`,
          [id],
        );
      else
        await m.query('UPDATE gc_runs SET cancel_requested = true, updated_at = now() WHERE id = $1', [id]);
      await this.audit(m, run, 'gc.cancelled', 'info', ctx, { status: run.status, phase: run.phase });
    });
    return this.get(id);
  }

  async active(registryId: string): Promise<GcRunEntity | null> {
    return this.ds
      .getRepository(GcRunEntity)
      .createQueryBuilder('r')
      .where('r.registryId = :registryId', { registryId })
      .andWhere(`r.status IN ('queued', 'running')`)
      .getOne();
  }

  async list(given: GcRunQueryDto): Promise<GcRunPage> {
    const q = withoutNulls(given);
    const qb = this.ds.getRepository(GcRunEntity).createQueryBuilder('r');
    if (q.registry !== undefined) qb.andWhere('r.registry = :registry', { registry: q.registry });
    if (q.status !== undefined) qb.andWhere('r.status = :status', { status: q.status });
    const { items, nextCursor } = await createdPage(qb, 'r', {
      limit: q.limit ?? 50,
      cursor: q.cursor,
      scope: { list: 'gc-runs', order: 'desc', filter: { registry: q.registry, status: q.status } },
    });
    return { items: items.map((r) => toView(r)), nextCursor };
  }

  audit(
    m: EntityManager,
    run: GcRunEntity,
    action: string,
    outcome: AuditOutcome,
    ctx: RequestContext,
    details: Record<string, unknown>,
  ) {
    return recordAudit(this.events, {
      action,
      ...auditBase(ctx, m),
      registry: run.registry,
      outcome,
      subject: { type: 'gc_run', id: run.id },
      details,
    });
  }
}

const num = (v: string | null) => (v === null ? null : Number(v));

/** The API's view of a run; its output is read apart (GcService.outputFor, GraphQL's GcRun.output). */
export function toView(r: GcRunEntity): GcRunView {
  return {
    id: r.id,
    registry: r.registry,
    trigger: r.trigger,
    actor: { type: r.actorType, id: r.actorId, name: r.actorName },
    dryRun: r.dryRun,
    deleteUntagged: r.deleteUntagged,
    fence: r.fence,
    unfencedAllowed: r.unfencedAllowed,
    executor: r.executor,
    status: r.status,
    phase: r.phase,
    cancelRequested: r.cancelRequested,
    attempts: r.attempts,
    blobsMarked: r.blobsMarked,
    blobsDeleted: r.blobsDeleted,
    manifestsDeleted: r.manifestsDeleted,
    bytesBefore: num(r.bytesBefore),
    bytesAfter: num(r.bytesAfter),
    bytesFreed: num(r.bytesFreed),
    bytesEstimated: num(r.bytesEstimated),
    exitCode: r.exitCode,
    outputTruncated: r.outputTruncated,
    outputRemovedAt: r.outputRemovedAt,
    verification: r.verification && withDefaults(r.verification),
    phaseMs: r.phaseMs ?? {},
    error: r.errorCode
      ? { code: r.errorCode, message: r.errorMessage ?? '', details: r.errorDetails ?? null }
      : null,
    createdAt: r.createdAt,
    startedAt: r.startedAt,
    heartbeatAt: r.heartbeatAt,
    finishedAt: r.finishedAt,
  };
}

/** A verification as recorded, with what earlier versions did not record filled in. */
function withDefaults(v: GcVerification): GcVerification {
  return {
    ...v,
    storage: { ...v.storage, preexisting: v.storage.preexisting ?? [] },
    preexisting: v.preexisting ?? [],
    outputComplete: v.outputComplete ?? true,
  };
}
