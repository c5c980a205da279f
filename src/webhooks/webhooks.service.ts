import { Injectable } from '@nestjs/common';
import { EventEmitter2 } from '@nestjs/event-emitter';
import { InjectDataSource } from '@nestjs/typeorm';
import { DataSource, EntityManager } from 'typeorm';
import { AUDIT_APPEND_LOCK, auditBase, recordAudit } from '../audit/audit-event.js';
import { decodeListCursor, encodeListCursor, type CursorScope } from '../common/cursor.js';
import { ConflictError, DomainError, NotFoundError } from '../common/domain-error.js';
import { checkRepositoryGlob } from '../common/glob-sql.js';
import type { RequestContext } from '../common/request-context.js';
import { withoutNulls } from '../common/list-filter.js';
import { SecretBox } from '../common/secret-box.js';
import { UUID_RE } from '../common/uuid-ids.js';
import { eventTypePatternProblem } from './webhook-events.js';
import { WebhookQueue } from './webhook-queue.js';
import { assertValidSecret, generateSecret } from './webhook-secret.js';
import { bodyOf } from './webhook-sender.js';
import { assertTargetResolvesPublic, originOf, parseTargetUrl, TargetPolicy } from './webhook-target.js';
import {
  AttemptView,
  CreateWebhookDto,
  DeliveryDetailView,
  DeliveryPage,
  DeliveryQueryDto,
  DeliveryView,
  RotateSecretDto,
  UpdateWebhookDto,
  WebhookView,
  WebhookWithSecretView,
} from './webhook.dto.js';
import { WebhookAttemptEntity, WebhookDeliveryEntity, WebhookSubscriptionEntity } from './webhook.entity.js';

const DEFAULT_KEEP_PREVIOUS_SECONDS = 86_400;

/** Subscriptions (every change audited in its own transaction), their deliveries and redelivery. */

const MAX_BIGINT = 2n ** 63n - 1n;
@Injectable()
export class WebhooksService {
  constructor(
    @InjectDataSource() private readonly ds: DataSource,
    private readonly events: EventEmitter2,
    private readonly box: SecretBox,
    private readonly policy: TargetPolicy,
    private readonly queue: WebhookQueue,
  ) {}

  async create(dto: CreateWebhookDto, ctx: RequestContext): Promise<WebhookWithSecretView> {
    const url = await this.checkedUrl(dto.url);
    const eventTypes = checkedEventTypes(dto.eventTypes);
    const repository = checkedRepository(dto.repository ?? null);
    const secret = dto.secret === undefined ? generateSecret() : assertValidSecret(dto.secret);
    const id = await this.ds.transaction(async (m) => {
      const sub = m.getRepository(WebhookSubscriptionEntity).create({
        url,
        description: dto.description ?? null,
        eventTypes,
        registry: dto.registry ?? null,
        repository,
        secretSealed: this.box.seal(secret),
        active: dto.active ?? true,
        createdByType: ctx.actor.type,
        createdById: ctx.actor.id,
        createdByName: ctx.actor.name ?? null,
      });
      await m.getRepository(WebhookSubscriptionEntity).insert(sub);
      await this.audit(m, ctx, 'webhook.created', sub.id, {
        target: originOf(url),
        eventTypes,
        registry: sub.registry,
        repository,
        active: sub.active,
        description: sub.description,
        secretGenerated: dto.secret === undefined,
      });
      return sub.id;
    });
    return { ...(await this.get(id)), secret };
  }

  async list(): Promise<WebhookView[]> {
    const subs = await this.ds
      .getRepository(WebhookSubscriptionEntity)
      .find({ order: { createdAt: 'ASC', id: 'ASC' } });
    const counts = await this.counts(subs.map((s) => s.id));
    return subs.map((s) => view(s, counts.get(s.id)));
  }

  async get(id: string): Promise<WebhookView> {
    const sub = await this.find(this.ds.manager, id);
    return view(sub, (await this.counts([id])).get(id));
  }

  async update(id: string, dto: UpdateWebhookDto, ctx: RequestContext): Promise<WebhookView> {
    const url = dto.url === undefined ? undefined : await this.checkedUrl(dto.url);
    const eventTypes = dto.eventTypes === undefined ? undefined : checkedEventTypes(dto.eventTypes);
    const repository = dto.repository === undefined ? undefined : checkedRepository(dto.repository);
    const retryNow = await this.ds.transaction(async (m) => {
      const sub = await this.find(m, id, true);
      const before = { ...sub };
      if (url !== undefined) sub.url = url;
      if (eventTypes !== undefined) sub.eventTypes = eventTypes;
      if (dto.registry !== undefined) sub.registry = dto.registry;
      if (repository !== undefined) sub.repository = repository;
      if (dto.description !== undefined) sub.description = dto.description;
      if (dto.active !== undefined && dto.active !== sub.active) {
        sub.active = dto.active;
        sub.deactivatedReason = null;
      }
      const changed = (
        ['url', 'eventTypes', 'registry', 'repository', 'description', 'active'] as const
      ).filter((k) => JSON.stringify(before[k]) !== JSON.stringify(sub[k]));
      if (changed.length === 0) return false;
      await m.query(
        `UPDATE webhook_subscriptions SET url = $2, event_types = $3, registry = $4, repository = $5,
           description = $6, active = $7, deactivated_reason = $8, updated_at = now() WHERE id = $1`,
        [
          id,
          sub.url,
          sub.eventTypes,
          sub.registry,
          sub.repository,
          sub.description,
          sub.active,
          sub.deactivatedReason,
        ],
      );
      // A new URL or a re-activation: whatever was backing off is tried again at once.
      const retry = sub.active && (!before.active || changed.includes('url'));
      if (retry)
        await m.query(
          `UPDATE webhook_deliveries SET next_attempt_at = now(), updated_at = now()
            WHERE subscription_id = $1 AND status = 'pending' AND next_attempt_at > now()`,
          [id],
        );
      await this.audit(m, ctx, 'webhook.updated', id, {
        changed,
        ...(changed.includes('url')
          ? { target: originOf(sub.url), previousTarget: originOf(before.url) }
          : {}),
        ...Object.fromEntries(
          changed.filter((k) => k !== 'url').map((k) => [k, { from: before[k], to: sub[k] }]),
        ),
      });
      return retry;
    });
    // Deliveries that waited while it was inactive, or for a URL that did not answer, go out now, in order.
    if (retryNow) await this.queue.wake(id, { now: true });
    return this.get(id);
  }

  async remove(id: string, ctx: RequestContext): Promise<void> {
    await this.ds.transaction(async (m) => {
      const sub = await this.find(m, id, true);
      // Its deliveries and their attempts go with it (ON DELETE CASCADE).
      await m.query('DELETE FROM webhook_subscriptions WHERE id = $1', [id]);
      await this.audit(m, ctx, 'webhook.deleted', id, {
        target: originOf(sub.url),
        eventTypes: sub.eventTypes,
      });
    });
  }

  async rotateSecret(id: string, dto: RotateSecretDto, ctx: RequestContext): Promise<WebhookWithSecretView> {
    const secret = dto.secret === undefined ? generateSecret() : assertValidSecret(dto.secret);
    const keep = dto.keepPreviousSeconds ?? DEFAULT_KEEP_PREVIOUS_SECONDS;
    await this.ds.transaction(async (m) => {
      const sub = await this.find(m, id, true);
      await m.query(
        `UPDATE webhook_subscriptions SET secret_sealed = $2,
           previous_secret_sealed = CASE WHEN $3::int > 0 THEN $4 END,
           previous_secret_expires_at = CASE WHEN $3::int > 0 THEN now() + make_interval(secs => $3::int) END,
           secret_rotated_at = now(), updated_at = now()
         WHERE id = $1`,
        [id, this.box.seal(secret), keep, sub.secretSealed],
      );
      await this.audit(m, ctx, 'webhook.secret.rotated', id, {
        target: originOf(sub.url),
        keepPreviousSeconds: keep,
        secretGenerated: dto.secret === undefined,
      });
    });
    return { ...(await this.get(id)), secret };
  }

  async listDeliveries(id: string, given: DeliveryQueryDto): Promise<DeliveryPage> {
    const q = withoutNulls(given);
    await this.find(this.ds.manager, id);
    const limit = q.limit ?? 50;
    const scope = deliveriesCursorScope(id, q);
    // A position in the bigint sequence: digits, no larger than the column takes.
    const after = decodeListCursor(q.cursor, scope, (v): v is { seq: string } => {
      const seq = String((v as { seq?: unknown })?.seq);
      return /^\d{1,19}$/.test(seq) && BigInt(seq) <= MAX_BIGINT;
    });
    const qb = this.ds
      .getRepository(WebhookDeliveryEntity)
      .createQueryBuilder('d')
      .where('d.subscriptionId = :id', { id });
    if (q.status !== undefined) qb.andWhere('d.status = :status', { status: q.status });
    if (q.eventType !== undefined) qb.andWhere('d.eventType = :type', { type: q.eventType });
    if (after) qb.andWhere('d.seq < :seq', { seq: after.seq });
    const rows = await qb
      .orderBy('d.seq', 'DESC')
      .take(limit + 1)
      .getMany();
    const page = rows.slice(0, limit);
    const last = page.at(-1);
    return {
      items: page.map(deliveryView),
      nextCursor: rows.length > limit && last ? encodeListCursor(scope, { seq: last.seq }) : null,
    };
  }

  async getDelivery(id: string, deliveryId: string): Promise<DeliveryDetailView> {
    const d = await this.findDelivery(this.ds.manager, id, deliveryId);
    const attempts = await this.ds
      .getRepository(WebhookAttemptEntity)
      .find({ where: { deliveryId }, order: { attempt: 'ASC' } });
    return {
      ...deliveryView(d),
      payload: JSON.parse(
        bodyOf({ id: d.id, type: d.eventType, occurredAt: d.occurredAt, data: d.data }),
      ) as Record<string, unknown>,
      attempts: attempts.map(attemptView),
    };
  }

  /**
   * Sends a delivery again, whatever its state, with the same webhook-id and a fresh attempt schedule. It
   * is older than the subscription's waiting deliveries, so it goes out before them.
   */
  async redeliver(id: string, deliveryId: string, ctx: RequestContext): Promise<DeliveryDetailView> {
    await this.ds.transaction(async (m) => {
      const sub = await this.find(m, id, true);
      if (!sub.active)
        throw new ConflictError(
          'WEBHOOK_INACTIVE',
          'the subscription is inactive: activate it first (PATCH active: true), then redeliver',
          { id },
        );
      const d = await this.findDelivery(m, id, deliveryId);
      await m.query(
        `UPDATE webhook_deliveries SET status = 'pending', failures = 0, next_attempt_at = now(),
           redeliveries = redeliveries + 1, updated_at = now() WHERE id = $1`,
        [deliveryId],
      );
      await this.audit(m, ctx, 'webhook.delivery.redelivered', id, {
        deliveryId,
        eventType: d.eventType,
        previousStatus: d.status,
        attempts: d.attempts,
      });
    });
    await this.queue.wake(id, { now: true });
    return this.getDelivery(id, deliveryId);
  }

  private async checkedUrl(raw: string): Promise<string> {
    const url = parseTargetUrl(raw, this.policy);
    await assertTargetResolvesPublic(url, this.policy);
    return raw;
  }

  /**
   * Locks the subscription for a change. The audit append lock comes first: the outbox takes it before
   * it references a subscription row (its INSERT's foreign key check), and every change here ends with
   * an audit event that takes it anyway. In the other order a change and an audited transaction that
   * delivers to this subscription would deadlock.
   */
  private async find(m: EntityManager, id: string, lock = false): Promise<WebhookSubscriptionEntity> {
    if (!UUID_RE.test(id)) throw notFound(id);
    if (lock) await m.query('SELECT pg_advisory_xact_lock($1::bigint)', [AUDIT_APPEND_LOCK]);
    const qb = m.getRepository(WebhookSubscriptionEntity).createQueryBuilder('s').where('s.id = :id', { id });
    if (lock) qb.setLock('pessimistic_write');
    const found = await qb.getOne();
    if (!found) throw notFound(id);
    return found;
  }

  private async findDelivery(
    m: EntityManager,
    id: string,
    deliveryId: string,
  ): Promise<WebhookDeliveryEntity> {
    if (!UUID_RE.test(id)) throw notFound(id);
    const found = UUID_RE.test(deliveryId)
      ? await m.getRepository(WebhookDeliveryEntity).findOneBy({ id: deliveryId, subscriptionId: id })
      : null;
    if (!found)
      throw new NotFoundError('WEBHOOK_DELIVERY_NOT_FOUND', `no delivery ${deliveryId} of webhook ${id}`, {
        id,
        deliveryId,
      });
    return found;
  }

  private async counts(ids: string[]): Promise<Map<string, { pending: number; dead: number }>> {
    if (ids.length === 0) return new Map();
    const rows = (await this.ds.query(
      `SELECT subscription_id,
              count(*) FILTER (WHERE status = 'pending')::int AS pending,
              count(*) FILTER (WHERE status = 'dead')::int AS dead
         FROM webhook_deliveries WHERE subscription_id = ANY($1::uuid[]) AND status <> 'succeeded'
        GROUP BY subscription_id`,
      [ids],
    )) as { subscription_id: string; pending: number; dead: number }[];
    return new Map(rows.map((r) => [r.subscription_id, { pending: r.pending, dead: r.dead }]));
  }

  private audit(
    m: EntityManager,
    ctx: RequestContext,
    action: string,
    id: string,
    details: Record<string, unknown>,
  ) {
    return recordAudit(this.events, {
      action,
      ...auditBase(ctx, m),
      outcome: 'success',
      subject: { type: 'webhook_subscription', id },
      details,
    });
  }
}

/** A subscription's deliveries, newest first: a cursor continues only its own subscription and filter. */
export function deliveriesCursorScope(
  subscriptionId: string,
  q: Pick<DeliveryQueryDto, 'status' | 'eventType'>,
): CursorScope {
  return {
    list: 'webhook-deliveries',
    order: 'desc',
    filter: { status: q.status, eventType: q.eventType },
    parent: { kind: 'webhook subscription', id: subscriptionId },
  };
}

function notFound(id: string): DomainError {
  return new NotFoundError('WEBHOOK_NOT_FOUND', `no webhook subscription ${id}`, { id });
}

function checkedEventTypes(types: string[]): string[] {
  const unique = [...new Set(types.map((t) => t.trim()))];
  const problems = unique.map(eventTypePatternProblem).filter((p): p is string => p !== null);
  if (problems.length)
    throw new DomainError('WEBHOOK_EVENT_TYPE_INVALID', problems.join('; '), 400, {
      field: 'eventTypes',
      problems,
    });
  return unique;
}

function checkedRepository(glob: string | null): string | null {
  if (glob === null) return null;
  checkRepositoryGlob(glob);
  return glob;
}

function view(s: WebhookSubscriptionEntity, counts?: { pending: number; dead: number }): WebhookView {
  return {
    id: s.id,
    url: s.url,
    description: s.description,
    eventTypes: s.eventTypes,
    registry: s.registry,
    repository: s.repository,
    active: s.active,
    deactivatedReason: s.deactivatedReason,
    secretRotatedAt: s.secretRotatedAt,
    previousSecretExpiresAt:
      s.previousSecretExpiresAt && s.previousSecretExpiresAt.getTime() > Date.now()
        ? s.previousSecretExpiresAt
        : null,
    pendingDeliveries: counts?.pending ?? 0,
    deadDeliveries: counts?.dead ?? 0,
    createdBy: { type: s.createdByType, id: s.createdById, name: s.createdByName },
    createdAt: s.createdAt,
    updatedAt: s.updatedAt,
  };
}

function deliveryView(d: WebhookDeliveryEntity): DeliveryView {
  return {
    id: d.id,
    webhookId: d.subscriptionId,
    eventType: d.eventType,
    status: d.status,
    attemptCount: d.attempts,
    redeliveries: d.redeliveries,
    occurredAt: d.occurredAt,
    nextAttemptAt: d.status === 'pending' ? d.nextAttemptAt : null,
    lastAttemptAt: d.lastAttemptAt,
    lastStatusCode: d.lastStatusCode,
    lastError: d.lastErrorCode ? { code: d.lastErrorCode, message: d.lastErrorMessage ?? '' } : null,
    deliveredAt: d.deliveredAt,
    createdAt: d.createdAt,
  };
}

function attemptView(a: WebhookAttemptEntity): AttemptView {
  return {
    attempt: a.attempt,
    redelivery: a.redelivery,
    startedAt: a.startedAt,
    durationMs: a.durationMs,
    statusCode: a.statusCode,
    responseBody: a.responseBody,
    responseTruncated: a.responseTruncated,
    error: a.errorCode ? { code: a.errorCode, message: a.errorMessage ?? '' } : null,
    succeeded: a.succeeded,
  };
}
