import { InjectQueue } from '@nestjs/bullmq';
import { Injectable, Logger, OnApplicationBootstrap, OnApplicationShutdown } from '@nestjs/common';
import { EventEmitter2 } from '@nestjs/event-emitter';
import { InjectDataSource } from '@nestjs/typeorm';
import { DelayedError, Job, Queue, Worker } from 'bullmq';
import { DataSource } from 'typeorm';
import { AUDIT_APPEND_LOCK, recordAudit } from '../audit/audit-event.js';
import { SYSTEM_CONTEXT } from '../common/request-context.js';
import { SecretBox } from '../common/secret-box.js';
import { AppConfig } from '../config/app-config.js';
import { Jobs, Queues, type WebhookDeliverPayload } from '../queue/queue.constants.js';
import { redisOptions } from '../queue/redis-options.js';
import { WebhookQueue } from './webhook-queue.js';
import { AttemptOutcome, WebhookSender } from './webhook-sender.js';
import { originOf } from './webhook-target.js';
import { WebhookSubscriptionEntity } from './webhook.entity.js';
import { workerMetrics } from '../common/worker-metrics.js';

/** A job hands over to a fresh one after this many deliveries or this long, so others get the slot. */
const DRAIN_MAX_DELIVERIES = 200;
const DRAIN_MAX_MS = 60_000;
/** Share of random extra delay on each backoff, so subscriptions of one receiver do not retry in step. */
const JITTER = 0.1;

interface Head {
  id: string;
  event_type: string;
  occurred_at: Date;
  data: Record<string, unknown>;
  wait_ms: number;
}

/** Postgres text cannot hold NUL; a receiver may answer anything. */
const clean = (s: string | null) => (s === null ? null : s.replaceAll('\u0000', ''));

/**
 * Sends webhook deliveries. One job per subscription (see WebhookQueue) takes the oldest waiting
 * delivery, POSTs it, records the attempt, and goes on to the next; when the oldest one failed, the job
 * waits (delayed, not holding a worker slot) until its retry is due, so later deliveries never overtake
 * it. A delivery out of attempts is dead-lettered and the next one goes out.
 */
@Injectable()
export class WebhookDeliveryProcessor implements OnApplicationBootstrap, OnApplicationShutdown {
  private readonly logger = new Logger(WebhookDeliveryProcessor.name);
  private worker?: Worker;

  constructor(
    private readonly config: AppConfig,
    @InjectDataSource() private readonly ds: DataSource,
    private readonly events: EventEmitter2,
    private readonly box: SecretBox,
    private readonly wakes: WebhookQueue,
    private readonly sender: WebhookSender,
    @InjectQueue(Queues.webhooks) private readonly queue: Queue,
  ) {}

  async onApplicationBootstrap() {
    const { lockMs } = this.config.queue;
    const { workerConcurrency, sweepEveryMs } = this.config.webhooks;
    this.worker = new Worker(Queues.webhooks, (job: Job, token?: string) => this.process(job, token), {
      connection: redisOptions(this.config.redis.url),
      prefix: this.config.redis.prefix,
      concurrency: workerConcurrency,
      lockDuration: lockMs,
      stalledInterval: lockMs,
      // A stall is a crashed worker: the job is handed out again and resends at most the one delivery
      // it was sending (receivers deduplicate by webhook-id).
      maxStalledCount: 20,
    });
    this.worker.on('error', (err) => this.logger.error(`webhooks worker: ${err.message}`));
    await this.queue.upsertJobScheduler(
      Jobs.webhookSweep,
      { every: sweepEveryMs },
      { name: Jobs.webhookSweep },
    );
  }

  async onApplicationShutdown() {
    await this.worker?.close();
    await this.sender.close();
  }

  async process(job: Job, token?: string): Promise<unknown> {
    if (job.name === Jobs.webhookSweep) return this.sweep();
    if (job.name !== Jobs.webhookDeliver) throw new Error(`unknown job ${job.name}`);
    return this.drain(job, token);
  }

  /** Wakes deliveries nobody queued, deletes old deliveries and old registry notification ids. */
  async sweep() {
    const { woken } = await this.wakes.sweep();
    const [, deleted] = (await this.ds.query(
      `DELETE FROM webhook_deliveries WHERE id IN (
         SELECT id FROM webhook_deliveries
          WHERE status <> 'pending' AND created_at < now() - make_interval(days => $1) LIMIT 10000)`,
      [this.config.webhooks.retentionDays],
    )) as [unknown, number];
    await this.ds.query(
      `UPDATE webhook_subscriptions SET previous_secret_sealed = NULL, previous_secret_expires_at = NULL
        WHERE previous_secret_expires_at < now()`,
    );
    // Ids of registry notifications, kept to skip redeliveries: a registry retries for as long as its
    // endpoint fails, not for weeks.
    const [, forgotten] = (await this.ds.query(
      `DELETE FROM registry_events_seen WHERE (registry, event_id) IN (
         SELECT registry, event_id FROM registry_events_seen
          WHERE received_at < now() - make_interval(days => $1) LIMIT 10000)`,
      [this.config.webhooks.registryEventsDedupDays],
    )) as [unknown, number];
    return { woken, deleted, forgotten };
  }

  private async drain(job: Job, token?: string): Promise<unknown> {
    const { subscriptionId } = job.data as WebhookDeliverPayload;
    const started = Date.now();
    let sent = 0;
    for (;;) {
      const sub = await this.ds.getRepository(WebhookSubscriptionEntity).findOneBy({ id: subscriptionId });
      if (!sub || !sub.active) return { subscriptionId, sent, stopped: sub ? 'inactive' : 'deleted' };
      const [head] = (await this.ds.query(
        `SELECT id, event_type, occurred_at, data,
                greatest(0, ceil(extract(epoch FROM next_attempt_at - now()) * 1000))::float AS wait_ms
           FROM webhook_deliveries WHERE subscription_id = $1 AND status = 'pending'
          ORDER BY seq LIMIT 1`,
        [subscriptionId],
      )) as Head[];
      if (!head) return { subscriptionId, sent };
      if (head.wait_ms > 0) {
        // Backing off: the job sleeps in Redis until the oldest delivery is due, keeping the order.
        await job.moveToDelayed(Date.now() + head.wait_ms, token);
        throw new DelayedError();
      }
      if (sent >= DRAIN_MAX_DELIVERIES || Date.now() - started > DRAIN_MAX_MS) {
        // Queued as this job's follow-up (deduplication keeps it to one), so the order holds.
        await this.wakes.wake(subscriptionId);
        return { subscriptionId, sent, more: true };
      }
      const outcome = await this.sender.send(sub.url, this.secretsOf(sub), {
        id: head.id,
        type: head.event_type,
        occurredAt: head.occurred_at,
        data: head.data,
      });
      await this.record(sub, head, outcome);
      sent++;
    }
  }

  private secretsOf(sub: WebhookSubscriptionEntity): string[] {
    const secrets = [this.box.open(sub.secretSealed)];
    if (
      sub.previousSecretSealed &&
      sub.previousSecretExpiresAt &&
      sub.previousSecretExpiresAt.getTime() > Date.now()
    )
      secrets.push(this.box.open(sub.previousSecretSealed));
    return secrets;
  }

  /** The attempt, the delivery's new state and, on 410 Gone, the subscription's deactivation: one transaction. */
  private async record(sub: WebhookSubscriptionEntity, head: Head, o: AttemptOutcome): Promise<void> {
    const { attempts: maxAttempts, backoffMs, backoffMaxMs } = this.config.webhooks;
    const state = await this.ds.transaction(async (m) => {
      // A 410 deactivates the subscription with an audit event: the append lock first, before the rows,
      // in the order every transaction touching subscriptions takes them (see WebhooksService.find).
      if (o.statusCode === 410)
        await m.query('SELECT pg_advisory_xact_lock($1::bigint)', [AUDIT_APPEND_LOCK]);
      const [rows] = (await m.query(
        `UPDATE webhook_deliveries SET
           attempts = attempts + 1,
           failures = CASE WHEN $2::boolean THEN failures ELSE failures + 1 END,
           status = CASE WHEN $2::boolean THEN 'succeeded' WHEN failures + 1 >= $3::int THEN 'dead' ELSE 'pending' END,
           next_attempt_at = CASE WHEN NOT $2::boolean AND failures + 1 < $3::int
             THEN now() + make_interval(secs => least($5::float,
                    $4::float * power(2, failures) * (1 + random() * $6::float)) / 1000)
             ELSE next_attempt_at END,
           last_attempt_at = $7, last_status_code = $8, last_error_code = $9, last_error_message = $10,
           delivered_at = CASE WHEN $2::boolean THEN now() ELSE delivered_at END,
           updated_at = now()
         WHERE id = $1 AND status = 'pending'
         RETURNING attempts, redeliveries, status`,
        [
          head.id,
          o.succeeded,
          maxAttempts,
          backoffMs,
          backoffMaxMs,
          JITTER,
          o.startedAt,
          o.statusCode,
          o.error?.code ?? null,
          clean(o.error?.message ?? null),
        ],
      )) as [{ attempts: number; redeliveries: number; status: string }[], number];
      // Deleted with its subscription, or redelivered, while the request was out.
      if (rows.length === 0) return null;
      const { attempts, redeliveries, status } = rows[0];
      await m.query(
        `INSERT INTO webhook_delivery_attempts (delivery_id, attempt, redelivery, started_at, duration_ms,
           status_code, response_body, response_truncated, error_code, error_message, succeeded)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)`,
        [
          head.id,
          attempts,
          redeliveries,
          o.startedAt,
          o.durationMs,
          o.statusCode,
          clean(o.responseBody),
          o.responseTruncated,
          o.error?.code ?? null,
          clean(o.error?.message ?? null),
          o.succeeded,
        ],
      );
      // 410 Gone: the receiver says this endpoint is no more. Stop sending; what waits is kept and goes
      // out in order if someone activates the subscription again.
      if (o.statusCode === 410) {
        const [gone] = (await m.query(
          `UPDATE webhook_subscriptions SET active = false, deactivated_reason = 'gone', updated_at = now()
            WHERE id = $1 AND active RETURNING id`,
          [sub.id],
        )) as [unknown[], number];
        if (gone.length)
          await recordAudit(this.events, {
            action: 'webhook.deactivated',
            actor: SYSTEM_CONTEXT.actor,
            outcome: 'info',
            upstreamStatus: 410,
            subject: { type: 'webhook_subscription', id: sub.id },
            details: { reason: 'gone', target: originOf(sub.url), deliveryId: head.id },
            manager: m,
          });
      }
      return status;
    });
    if (state)
      workerMetrics
        .webhookAttempts()
        .inc({ result: o.succeeded ? 'delivered' : state === 'dead' ? 'dead' : 'failed' });
    if (state === 'dead')
      this.logger.warn(
        `webhook delivery ${head.id} (${head.event_type}) to ${originOf(sub.url)} is dead after ${maxAttempts} attempts: ${o.error?.code} ${o.error?.message}`,
      );
    if (o.statusCode === 410)
      this.logger.warn(`webhook subscription ${sub.id} deactivated: ${originOf(sub.url)} answered 410 Gone`);
  }
}
