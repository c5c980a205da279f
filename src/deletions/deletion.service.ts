import { Injectable } from '@nestjs/common';
import { EventEmitter2 } from '@nestjs/event-emitter';
import { InjectDataSource } from '@nestjs/typeorm';
import { DataSource, EntityManager } from 'typeorm';
import { auditBase, recordAudit } from '../audit/audit-event.js';
import { AppConfig } from '../config/app-config.js';
import { ConflictError, DomainError, NotFoundError, ValidationError } from '../common/domain-error.js';
import type { RequestContext } from '../common/request-context.js';
import { assertReference, assertRepositoryName } from '../registries/client/reference.js';
import { RegistriesService } from '../registries/registries.service.js';
import { RegistryClients } from '../registries/registry-clients.service.js';
import { RegistryEntity } from '../registries/registry.entity.js';
import { assertMayDelete } from './deletion-access.js';
import { DeletionPlanner, PlanInput, PlannedItem } from './deletion-planner.js';
import { DeletionQueue } from './deletion-queue.js';
import { RegistryThrottle } from './registry-throttle.js';
import {
  CreateDeletionDto,
  DeletionCountsView,
  DeletionItemView,
  DeletionRequestView,
} from './deletion.dto.js';
import {
  DeletionItemEntity,
  DeletionItemStatus,
  DeletionRequestEntity,
  DeletionStatus,
} from './deletion.entity.js';

const INSERT_BATCH = 1000;

/** Deletion requests: plan, store, execute, cancel, read. Workers settle the items (deletion.processor). */
/** Emitted (in the worker) when a deletion request reaches a final status; GC may follow it. */
export const DELETION_SETTLED_EVENT = 'deletion.settled';

export interface DeletionSettledEvent {
  requestId: string;
  registryId: string;
  registry: string;
  status: DeletionStatus;
}

@Injectable()
export class DeletionService {
  constructor(
    @InjectDataSource() private readonly ds: DataSource,
    private readonly events: EventEmitter2,
    private readonly config: AppConfig,
    private readonly registries: RegistriesService,
    private readonly clients: RegistryClients,
    private readonly planner: DeletionPlanner,
    private readonly queue: DeletionQueue,
    private readonly throttle: RegistryThrottle,
  ) {}

  /** While a garbage collection holds the registry, the gateway takes no new deletes for it. */
  private async assertNotFenced(registry: RegistryEntity): Promise<void> {
    const run = await this.throttle.fencedBy(registry.id);
    if (run)
      throw new DomainError(
        'REGISTRY_FENCED',
        `registry "${registry.name}" is fenced for garbage collection; deletes are accepted again when GC run ${run} ends`,
        423,
        { registry: registry.name, gcRunId: run },
      );
  }

  /**
   * Validates, checks the caps before any upstream call, plans against the registry, and commits the
   * request with its items and audit event before a single job is queued.
   */
  /** One image or tag: an item that cannot be deleted is the answer's error, not a stored request. */
  createOne(dto: CreateDeletionDto, ctx: RequestContext): Promise<DeletionRequestView> {
    return this.create(dto, ctx, true);
  }

  async create(dto: CreateDeletionDto, ctx: RequestContext, single = false): Promise<DeletionRequestView> {
    const inputs = dto.items.map((item, i): PlanInput => {
      try {
        const repository = assertRepositoryName(item.repository);
        const ref = assertReference(item.reference);
        const kind = item.kind ?? 'manifest';
        if (kind === 'tag' && ref.kind !== 'tag')
          throw new ValidationError('a tag delete needs a tag, not a digest', { field: 'reference' });
        return { repository, reference: ref.value, kind };
      } catch (err) {
        if (err instanceof DomainError)
          throw new DomainError(err.code, `items[${i}]: ${err.message}`, err.status, {
            ...err.details,
            item: i,
          });
        throw err;
      }
    });
    // Before the registry is even looked up: a denial must not tell whether it exists.
    assertMayDelete(ctx, dto.registry, inputs);
    this.assertWithinCap(inputs.length, dto.maxDeletions ?? null);
    const registry = await this.registries.get(dto.registry);
    const dryRun = dto.dryRun ?? false;
    if (!dryRun) {
      assertDeletesAllowed(registry);
      await this.assertNotFenced(registry);
    }

    const planned = await this.planner.plan(registry.id, this.clients.for(registry), inputs);
    if (single && planned[0].error) {
      const { code, message } = planned[0].error;
      throw new DomainError(code, message, code === 'MANIFEST_UNKNOWN' ? 404 : 409, {
        registry: registry.name,
        repository: planned[0].repository,
        reference: planned[0].reference,
      });
    }
    const actionable = planned.filter((p) => p.status === 'planned');
    if (!dryRun && actionable.length === 0)
      throw nothingToDelete('none of the items can be deleted', planned);

    const request = await this.ds.transaction(async (m) => {
      const saved = await this.insertRequest(m, registry, planned, { ...dto, dryRun }, ctx);
      await recordAudit(this.events, {
        action: dryRun ? 'deletion.planned' : 'deletion.requested',
        ...this.auditBase(saved, ctx, m),
        outcome: dryRun ? 'info' : 'pending',
        details: this.summary(saved, planned),
      });
      return saved;
    });
    // The answer is the committed state, read before a worker can change it.
    const view = await this.get(request.id);
    if (!dryRun) await this.queue.enqueue(request.id);
    return view;
  }

  /**
   * Applies exactly the stored plan: re-resolves every planned item and refuses (PLAN_STALE) when a tag
   * moved to another digest or a digest gained a tag the plan did not show.
   */
  async execute(id: string, ctx: RequestContext): Promise<DeletionRequestView> {
    const request = await this.find(id);
    if (request.status !== 'planned') throw notPlanned(request);
    const registry = await this.registries.get(request.registry);
    if (registry.id !== request.registryId)
      throw new ConflictError(
        'PLAN_STALE',
        `registry "${request.registry}" was replaced since the plan was made`,
        {
          registry: request.registry,
        },
      );
    assertDeletesAllowed(registry);
    await this.assertNotFenced(registry);
    const items = await this.ds
      .getRepository(DeletionItemEntity)
      .find({ where: { requestId: id, status: 'planned' }, order: { position: 'ASC' } });
    // A plan whose every item was skipped would queue nothing, and nothing would ever settle it.
    if (items.length === 0) {
      const skipped = await this.ds
        .getRepository(DeletionItemEntity)
        .find({ where: { requestId: id }, order: { position: 'ASC' } });
      throw nothingToDelete(
        `none of the items of plan ${id} can be deleted (every one was skipped when it was planned); nothing was queued`,
        skipped.map((i) => ({
          position: i.position,
          error: i.errorCode ? { code: i.errorCode, message: i.errorMessage ?? '' } : null,
        })),
      );
    }
    this.assertWithinCap(items.length, request.maxDeletions);
    const now = await this.planner.plan(
      registry.id,
      this.clients.for(registry),
      items.map((i) => ({ repository: i.repository, reference: i.reference, kind: i.kind })),
    );
    const mismatches = items.flatMap((item, i) => staleness(item, now[i]));
    if (mismatches.length)
      throw new ConflictError(
        'PLAN_STALE',
        `the registry changed since the plan was made (${mismatches.length} item(s)); nothing was deleted. Plan again`,
        { mismatches: mismatches.slice(0, 100) },
      );

    await this.ds.transaction(async (m) => {
      const locked = await this.lock(m, id);
      if (locked.status !== 'planned') throw notPlanned(locked);
      await m.query(
        `UPDATE deletion_items SET status = 'pending', updated_at = now() WHERE request_id = $1 AND status = 'planned'`,
        [id],
      );
      await m.query(
        `UPDATE deletion_requests SET status = 'queued', executed_at = now(), updated_at = now() WHERE id = $1`,
        [id],
      );
      await recordAudit(this.events, {
        action: 'deletion.executed',
        ...this.auditBase(locked, ctx, m),
        outcome: 'pending',
        details: {
          items: items.length,
          plannedBy: locked.actorId,
          plannedAt: locked.createdAt.toISOString(),
        },
      });
    });
    const view = await this.get(id);
    await this.queue.enqueue(id);
    return view;
  }

  /** Cancels what has not started: a plan, or the items still waiting in the queue. */
  async cancel(id: string, ctx: RequestContext): Promise<DeletionRequestView> {
    await this.ds.transaction(async (m) => {
      const locked = await this.lock(m, id);
      if (!['planned', 'queued', 'running'].includes(locked.status)) {
        throw new ConflictError(
          'DELETION_FINISHED',
          `deletion ${id} has already ${locked.status.replace('_', ' ')}`,
          {
            id,
            status: locked.status,
          },
        );
      }
      // An UPDATE answers [rows, count] through TypeORM.
      const [, cancelled] = (await m.query(
        `UPDATE deletion_items SET status = 'cancelled', finished_at = now(), updated_at = now()
          WHERE request_id = $1 AND status IN ('planned', 'pending')`,
        [id],
      )) as [unknown[], number];
      const settled = await this.settleStatus(m, id);
      await recordAudit(this.events, {
        action: 'deletion.cancelled',
        ...this.auditBase(locked, ctx, m),
        outcome: 'success',
        details: { cancelledItems: cancelled, status: settled?.status ?? 'running' },
      });
    });
    return this.get(id);
  }

  async get(id: string): Promise<DeletionRequestView> {
    const request = await this.find(id);
    const items = await this.ds
      .getRepository(DeletionItemEntity)
      .find({ where: { requestId: id }, order: { position: 'ASC' } });
    const counts = countsOf(items.map((i) => ({ status: i.status, n: 1 })));
    return { ...requestView(request, counts), items: items.map(itemView) };
  }

  /**
   * Final status once no item is waiting or running; null while work remains. Call with the request row
   * locked, so two chunks finishing together cannot both miss (or both see) the end.
   */
  async settleStatus(
    m: EntityManager,
    id: string,
  ): Promise<{ status: DeletionStatus; counts: DeletionCountsView } | null> {
    const rows = (await m.query(
      `SELECT status, count(*)::int AS n FROM deletion_items WHERE request_id = $1 GROUP BY status`,
      [id],
    )) as { status: DeletionItemStatus; n: number }[];
    const c = countsOf(rows);
    if (c.pending + c.running + c.planned > 0) return null;
    const status: DeletionStatus =
      c.cancelled > 0
        ? 'cancelled'
        : c.failed === 0
          ? 'succeeded'
          : c.succeeded === 0
            ? 'failed'
            : 'partially_failed';
    // Only the transition to a final status counts: a chunk job re-run after the request settled (a
    // recovery, a cancel) finds nothing to change and must not record a second completion.
    const [, changed] = (await m.query(
      `UPDATE deletion_requests SET status = $2, finished_at = now(), updated_at = now()
        WHERE id = $1 AND status IN ('planned', 'queued', 'running')`,
      [id, status],
    )) as [unknown, number];
    return changed ? { status, counts: c } : null;
  }

  async lock(m: EntityManager, id: string): Promise<DeletionRequestEntity> {
    const found = await m
      .getRepository(DeletionRequestEntity)
      .createQueryBuilder('r')
      .setLock('pessimistic_write')
      .where('r.id = :id', { id })
      .getOne();
    if (!found) throw deletionNotFound(id);
    return found;
  }

  /** The fields every audit event of a request shares; `manager` is the transaction of a single event. */
  auditBase(r: DeletionRequestEntity, ctx: RequestContext, manager?: EntityManager) {
    return {
      ...auditBase(ctx, manager),
      registry: r.registry,
      subject: { type: 'deletion_request', id: r.id },
    };
  }

  private async find(id: string): Promise<DeletionRequestEntity> {
    const found = await this.ds.getRepository(DeletionRequestEntity).findOneBy({ id });
    if (!found) throw deletionNotFound(id);
    return found;
  }

  private assertWithinCap(count: number, maxDeletions: number | null) {
    const cap = Math.min(maxDeletions ?? Infinity, this.config.deletions.maxItems);
    if (count > cap) {
      const which =
        maxDeletions !== null && maxDeletions <= this.config.deletions.maxItems
          ? 'maxDeletions'
          : 'DELETE_MAX_ITEMS';
      throw new DomainError(
        'TOO_MANY_DELETIONS',
        `the request has ${count} items, more than ${which} (${cap}); nothing was planned or deleted`,
        422,
        { items: count, limit: cap, limitedBy: which },
      );
    }
  }

  private async insertRequest(
    m: EntityManager,
    registry: RegistryEntity,
    planned: PlannedItem[],
    dto: CreateDeletionDto & { dryRun: boolean },
    ctx: RequestContext,
  ): Promise<DeletionRequestEntity> {
    const request = m.getRepository(DeletionRequestEntity).create({
      registry: registry.name,
      registryId: registry.id,
      status: dto.dryRun ? 'planned' : 'queued',
      dryRun: dto.dryRun,
      reason: dto.reason ?? null,
      maxDeletions: dto.maxDeletions ?? null,
      actorType: ctx.actor.type,
      actorId: ctx.actor.id,
      actorName: ctx.actor.name ?? null,
      sourceIp: ctx.sourceIp,
      requestId: ctx.requestId,
      itemCount: planned.length,
      estimatedBytes: String(planned.reduce((n, p) => n + p.estimatedBytes, 0)),
      executedAt: dto.dryRun ? null : new Date(),
    });
    await m.getRepository(DeletionRequestEntity).insert(request);
    const saved = await m.getRepository(DeletionRequestEntity).findOneByOrFail({ id: request.id });
    // Chunks number only the items that will run, so every job has work.
    let runnable = 0;
    const chunkSize = this.config.deletions.chunkSize;
    const rows = planned.map((p) => ({
      requestId: saved.id,
      position: p.position,
      chunk: p.status === 'planned' ? Math.floor(runnable++ / chunkSize) : -1,
      repository: p.repository,
      reference: p.reference,
      kind: p.kind,
      digest: p.digest,
      mediaType: p.mediaType,
      tags: p.tags,
      estimatedBytes: String(p.estimatedBytes),
      status: (p.status === 'skipped' ? 'skipped' : dto.dryRun ? 'planned' : 'pending') as DeletionItemStatus,
      errorCode: p.error?.code ?? null,
      errorMessage: p.error?.message ?? null,
      finishedAt: p.status === 'skipped' ? new Date() : null,
    }));
    for (let i = 0; i < rows.length; i += INSERT_BATCH)
      await m.getRepository(DeletionItemEntity).insert(rows.slice(i, i + INSERT_BATCH));
    return saved;
  }

  private summary(r: DeletionRequestEntity, planned: PlannedItem[]): Record<string, unknown> {
    const repositories = [...new Set(planned.map((p) => p.repository))];
    return {
      dryRun: r.dryRun,
      reason: r.reason,
      maxDeletions: r.maxDeletions,
      items: planned.length,
      actionable: planned.filter((p) => p.status === 'planned').length,
      skipped: planned.filter((p) => p.status === 'skipped').length,
      tags: planned.reduce((n, p) => n + (p.status === 'planned' ? p.tags.length : 0), 0),
      estimatedBytes: Number(r.estimatedBytes),
      repositories: repositories.slice(0, 50),
      repositoryCount: repositories.length,
    };
  }
}

/** Refuses before anything is stored or queued when the last probe already knows deletes would fail. */
export function assertDeletesAllowed(registry: RegistryEntity): void {
  const deletes = registry.probe?.deletes;
  const details = { registry: registry.name, deletes, probedAt: registry.probe?.checkedAt ?? null };
  if (deletes === 'disabled' || deletes === 'pull-through') {
    throw new ConflictError(
      'DELETE_DISABLED',
      deletes === 'pull-through'
        ? `registry "${registry.name}" is a pull-through cache: nothing can be deleted there`
        : `registry "${registry.name}" refuses deletes: set storage.delete.enabled: true in its config, restart it, then probe it again`,
      details,
    );
  }
  if (deletes === 'read-only') {
    throw new ConflictError(
      'REGISTRY_READ_ONLY',
      `registry "${registry.name}" is in read-only maintenance mode; deletes must wait until writes are back`,
      details,
    );
  }
}

function staleness(item: DeletionItemEntity, now: PlannedItem): Record<string, unknown>[] {
  const ref = { position: item.position, repository: item.repository, reference: item.reference };
  // A digest that vanished meanwhile is fine: deleting it again is a no-op.
  if (now.status === 'skipped' && now.error?.code === 'MANIFEST_UNKNOWN' && item.reference.includes(':'))
    return [];
  if (now.digest !== item.digest)
    return [
      { ...ref, plannedDigest: item.digest, currentDigest: now.digest, problem: 'the tag points elsewhere' },
    ];
  if (now.status === 'skipped') return [{ ...ref, problem: now.error?.message }];
  const added = now.tags.filter((t) => !item.tags.includes(t));
  if (added.length)
    return [{ ...ref, digest: item.digest, addedTags: added, problem: 'more tags point at it now' }];
  return [];
}

/** The same refusal for a request and for the execution of a plan: no item of it can be deleted. */
function nothingToDelete(
  message: string,
  items: { position: number; error: { code: string; message: string } | null }[],
): DomainError {
  return new DomainError('NOTHING_TO_DELETE', message, 422, {
    items: items.map((i) => ({ position: i.position, ...i.error })),
  });
}

function notPlanned(r: DeletionRequestEntity): ConflictError {
  return new ConflictError(
    'DELETION_NOT_PLANNED',
    `deletion ${r.id} is ${r.status}; only a planned dry run can be executed`,
    {
      id: r.id,
      status: r.status,
    },
  );
}

function deletionNotFound(id: string): NotFoundError {
  return new NotFoundError('DELETION_NOT_FOUND', `no deletion request ${id}`, { id });
}

export function countsOf(rows: { status: DeletionItemStatus; n: number }[]): DeletionCountsView {
  const c: DeletionCountsView = {
    planned: 0,
    pending: 0,
    running: 0,
    succeeded: 0,
    failed: 0,
    skipped: 0,
    cancelled: 0,
  };
  for (const r of rows) c[r.status] += r.n;
  return c;
}

const iso = (d: Date | null) => (d ? d.toISOString() : null);

export function requestView(r: DeletionRequestEntity, counts: DeletionCountsView): DeletionRequestView {
  return {
    id: r.id,
    registry: r.registry,
    status: r.status,
    dryRun: r.dryRun,
    reason: r.reason,
    maxDeletions: r.maxDeletions,
    actor: { type: r.actorType, id: r.actorId, name: r.actorName },
    sourceIp: r.sourceIp,
    requestId: r.requestId,
    itemCount: r.itemCount,
    estimatedBytes: Number(r.estimatedBytes),
    counts,
    createdAt: r.createdAt.toISOString(),
    updatedAt: r.updatedAt.toISOString(),
    executedAt: iso(r.executedAt),
    finishedAt: iso(r.finishedAt),
  };
}

export function itemView(i: DeletionItemEntity): DeletionItemView {
  return {
    position: i.position,
    repository: i.repository,
    reference: i.reference,
    kind: i.kind,
    digest: i.digest,
    mediaType: i.mediaType,
    tags: i.tags,
    estimatedBytes: Number(i.estimatedBytes),
    status: i.status,
    attempts: i.attempts,
    alreadyGone: i.alreadyGone,
    method: i.method,
    upstreamStatus: i.upstreamStatus,
    error: i.errorCode ? { code: i.errorCode, message: i.errorMessage ?? '' } : null,
    finishedAt: iso(i.finishedAt),
  };
}
