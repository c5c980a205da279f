import { InjectQueue } from '@nestjs/bullmq';
import { Injectable, Logger } from '@nestjs/common';
import { InjectDataSource } from '@nestjs/typeorm';
import { JobsOptions, Queue } from 'bullmq';
import { DataSource } from 'typeorm';
import { AppConfig } from '../config/app-config.js';
import { DeleteChunkPayload, Jobs, Queues } from '../queue/queue.constants.js';

/** BullMQ ids may not contain ':'; the id makes queueing a chunk twice a no-op. */
export const chunkJobId = (requestId: string, chunk: number) => `${requestId}-${chunk}`;

/**
 * The outbox between Postgres and the queue. Requests and items are committed first; `enqueue` then adds
 * one job per chunk (idempotent: the job id is fixed) and stamps `enqueued_at`. If the process dies or
 * Redis is down in between, `recover` (run by every worker on a schedule) finds the request and queues it.
 */
@Injectable()
export class DeletionQueue {
  private readonly logger = new Logger(DeletionQueue.name);

  constructor(
    @InjectQueue(Queues.deletions) private readonly queue: Queue,
    @InjectDataSource() private readonly ds: DataSource,
    private readonly config: AppConfig,
  ) {}

  jobOptions(requestId: string, chunk: number): JobsOptions {
    const { attempts, backoffMs } = this.config.deletions;
    return {
      jobId: chunkJobId(requestId, chunk),
      attempts,
      backoff: { type: 'capped-exponential', delay: backoffMs },
      removeOnComplete: { age: 24 * 3600, count: 10_000 },
      removeOnFail: { age: 7 * 24 * 3600 },
    };
  }

  /** Queues every chunk with waiting items. Never throws: what fails here is left to `recover`. */
  async enqueue(requestId: string): Promise<boolean> {
    try {
      const chunks = await this.openChunks(requestId);
      await this.queue.addBulk(
        chunks.map((chunk) => ({
          name: Jobs.deleteChunk,
          data: { requestId, chunk } satisfies DeleteChunkPayload,
          opts: this.jobOptions(requestId, chunk),
        })),
      );
      await this.ds.query('UPDATE deletion_requests SET enqueued_at = now() WHERE id = $1', [requestId]);
      return true;
    } catch (err) {
      this.logger.warn(
        `deletion ${requestId} is stored but not queued yet (${(err as Error).message}); the recovery sweep will queue it`,
      );
      return false;
    }
  }

  /**
   * Queues requests that were committed but never queued, and re-queues chunks whose job is gone (Redis
   * lost it) or ended without settling its items. A chunk whose job is waiting, delayed or active is left alone.
   */
  async recover(staleAfterMs = 120_000): Promise<{ requeued: string[] }> {
    const rows = (await this.ds.query(
      `SELECT id, enqueued_at IS NULL AS never FROM deletion_requests
        WHERE status IN ('queued', 'running')
          AND ((enqueued_at IS NULL AND updated_at < now() - interval '5 seconds')
               OR updated_at < now() - make_interval(secs => $1::float / 1000))
        ORDER BY created_at LIMIT 1000`,
      [staleAfterMs],
    )) as { id: string; never: boolean }[];
    const requeued: string[] = [];
    for (const { id } of rows) {
      let added = 0;
      for (const chunk of await this.openChunks(id)) {
        const jobId = chunkJobId(id, chunk);
        const state = await this.queue.getJobState(jobId);
        if (state === 'completed' || state === 'failed') await this.queue.remove(jobId);
        else if (state !== 'unknown') continue;
        await this.queue.add(
          Jobs.deleteChunk,
          { requestId: id, chunk } satisfies DeleteChunkPayload,
          this.jobOptions(id, chunk),
        );
        added++;
      }
      await this.ds.query(
        'UPDATE deletion_requests SET enqueued_at = now(), updated_at = now() WHERE id = $1',
        [id],
      );
      if (added) requeued.push(id);
    }
    if (requeued.length)
      this.logger.warn(`queued ${requeued.length} deletion request(s) whose jobs were missing`);
    return { requeued };
  }

  private async openChunks(requestId: string): Promise<number[]> {
    const rows = (await this.ds.query(
      `SELECT DISTINCT chunk FROM deletion_items
        WHERE request_id = $1 AND status IN ('pending', 'running') ORDER BY chunk`,
      [requestId],
    )) as { chunk: number }[];
    return rows.map((r) => r.chunk);
  }
}
