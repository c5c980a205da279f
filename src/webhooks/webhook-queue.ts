import { InjectQueue } from '@nestjs/bullmq';
import { Injectable, Logger } from '@nestjs/common';
import { InjectDataSource } from '@nestjs/typeorm';
import { JobsOptions, Queue } from 'bullmq';
import { DataSource } from 'typeorm';
import { Jobs, Queues, type WebhookDeliverPayload } from '../queue/queue.constants.js';

/**
 * One BullMQ job per subscription drains its waiting deliveries in order. BullMQ's deduplication with
 * `keepLastIfActive` is what keeps it to one: while a subscription's job waits, is delayed (backing off)
 * or runs, adding another is a no-op, except that an add during the run leaves one follow-up job to
 * start when it ends, so a delivery committed just as the job finished is not left behind. The outbox
 * rows are the truth; a missing job only delays them until the sweep (every WEBHOOK_SWEEP_EVERY_MS).
 */
@Injectable()
export class WebhookQueue {
  private readonly logger = new Logger(WebhookQueue.name);

  constructor(
    @InjectQueue(Queues.webhooks) private readonly queue: Queue,
    @InjectDataSource() private readonly ds: DataSource,
  ) {}

  static deduplicationId(subscriptionId: string): string {
    return `webhook-${subscriptionId}`;
  }

  jobOptions(subscriptionId: string): JobsOptions {
    return {
      deduplication: { id: WebhookQueue.deduplicationId(subscriptionId), keepLastIfActive: true },
      // Retries only cover a failing drain (Postgres gone); a failed delivery is the outbox's business.
      attempts: 5,
      backoff: { type: 'exponential', delay: 2000 },
      removeOnComplete: { age: 3600, count: 1000 },
      removeOnFail: { age: 7 * 24 * 3600 },
    };
  }

  /**
   * Makes sure the subscription's job exists; with `now`, a job backing off is started at once (a manual
   * redelivery, or the sweep finding the head due). Never throws: what fails here is left to the sweep.
   */
  async wake(subscriptionId: string, opts: { now?: boolean } = {}): Promise<void> {
    try {
      const job = await this.queue.add(
        Jobs.webhookDeliver,
        { subscriptionId } satisfies WebhookDeliverPayload,
        this.jobOptions(subscriptionId),
      );
      if (opts.now && job.id) {
        const existing = await this.queue.getJob(job.id);
        if (existing && (await existing.isDelayed())) await existing.promote().catch(() => undefined);
      }
    } catch (err) {
      this.logger.warn(
        `webhook subscription ${subscriptionId} has deliveries waiting but could not be queued (${(err as Error).message}); the sweep will queue it`,
      );
    }
  }

  /**
   * Queues every active subscription with waiting deliveries, promoting those whose oldest waiting
   * delivery is due (a job lost with Redis, or a crash between commit and queueing, ends here).
   */
  async sweep(): Promise<{ woken: number }> {
    const rows = (await this.ds.query(
      `SELECT DISTINCT ON (d.subscription_id) d.subscription_id, d.next_attempt_at <= now() AS due
         FROM webhook_deliveries d JOIN webhook_subscriptions s ON s.id = d.subscription_id AND s.active
        WHERE d.status = 'pending'
        ORDER BY d.subscription_id, d.seq`,
    )) as { subscription_id: string; due: boolean }[];
    for (const r of rows) await this.wake(r.subscription_id, { now: r.due });
    return { woken: rows.length };
  }
}
