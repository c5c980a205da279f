import { InjectQueue } from '@nestjs/bullmq';
import { Injectable, Logger, OnApplicationBootstrap, OnApplicationShutdown } from '@nestjs/common';
import { EventEmitter2 } from '@nestjs/event-emitter';
import { InjectDataSource } from '@nestjs/typeorm';
import { DelayedError, Job, Queue, Worker } from 'bullmq';
import pLimit from 'p-limit';
import { DataSource } from 'typeorm';
import { AuditableEvent, AuditOutcome, recordAuditBatch } from '../audit/audit-event.js';
import { AppConfig } from '../config/app-config.js';
import { DomainError } from '../common/domain-error.js';
import { workerMetrics } from '../common/worker-metrics.js';
import type { RequestContext } from '../common/request-context.js';
import { DeleteChunkPayload, Jobs, Queues } from '../queue/queue.constants.js';
import { redisOptions } from '../queue/redis-options.js';
import { RegistryClient } from '../registries/client/registry-client.js';
import { unlessGone, UpstreamError } from '../registries/client/upstream-error.js';
import { RegistriesService } from '../registries/registries.service.js';
import { RegistryClients } from '../registries/registry-clients.service.js';
import { RegistryEntity } from '../registries/registry.entity.js';
import { DeletionQueue } from './deletion-queue.js';
import { DELETION_SETTLED_EVENT, DeletionService, type DeletionSettledEvent } from './deletion.service.js';
import { DeletionKind, DeletionRequestEntity, DeletionStatus } from './deletion.entity.js';
import { RegistryThrottle } from './registry-throttle.js';

interface ClaimedItem {
  id: string;
  position: number;
  repository: string;
  reference: string;
  kind: DeletionKind;
  digest: string | null;
  tags: string[];
  attempts: number;
}

interface Outcome {
  result: 'succeeded' | 'failed' | 'retry';
  upstreamStatus: number | null;
  alreadyGone: boolean | null;
  method: string | null;
  error: { code: string; message: string } | null;
}

/** How often a chunk held back by a GC fence looks again. */
const FENCE_RECHECK_MS = 2_000;

const COMPLETION_OUTCOME: Record<DeletionStatus, AuditOutcome> = {
  succeeded: 'success',
  partially_failed: 'failure',
  failed: 'failure',
  cancelled: 'info',
  planned: 'info',
  queued: 'info',
  running: 'info',
};

/**
 * Executes deletion chunks. A job claims its chunk's waiting items, deletes them upstream within the
 * registry's limits, and records every outcome with its audit event in one transaction. Transient
 * failures (network, 5xx, 429) put the items back and fail the job, so BullMQ retries it with backoff;
 * a manifest already gone counts as deleted, so a job re-run after a crash deletes nothing twice.
 */
@Injectable()
export class DeletionProcessor implements OnApplicationBootstrap, OnApplicationShutdown {
  private readonly logger = new Logger(DeletionProcessor.name);
  private worker?: Worker;

  constructor(
    private readonly config: AppConfig,
    @InjectDataSource() private readonly ds: DataSource,
    private readonly events: EventEmitter2,
    private readonly registries: RegistriesService,
    private readonly clients: RegistryClients,
    private readonly throttle: RegistryThrottle,
    private readonly deletions: DeletionService,
    private readonly outbox: DeletionQueue,
    @InjectQueue(Queues.deletions) private readonly queue: Queue,
  ) {}

  async onApplicationBootstrap() {
    const { lockMs } = this.config.queue;
    const { backoffMs, backoffMaxMs, workerConcurrency, recoverEveryMs } = this.config.deletions;
    // Created by hand rather than with @Processor: lock and concurrency come from the configuration.
    this.worker = new Worker(Queues.deletions, (job: Job, token?: string) => this.process(job, token), {
      connection: redisOptions(this.config.redis.url),
      prefix: this.config.redis.prefix,
      concurrency: workerConcurrency,
      lockDuration: lockMs,
      stalledInterval: lockMs,
      // A stall is a crashed worker; the job is idempotent, so it may be taken over many times.
      maxStalledCount: 20,
      settings: {
        backoffStrategy: (attemptsMade: number) =>
          Math.min(backoffMaxMs, backoffMs * 2 ** Math.max(0, attemptsMade - 1)),
      },
    });
    this.worker.on('error', (err) => this.logger.error(`deletions worker: ${err.message}`));
    await this.queue.upsertJobScheduler(
      Jobs.recoverDeletions,
      { every: recoverEveryMs },
      { name: Jobs.recoverDeletions },
    );
  }

  async onApplicationShutdown() {
    await this.worker?.close();
  }

  async process(job: Job, token?: string): Promise<unknown> {
    if (job.name === Jobs.recoverDeletions)
      return this.outbox.recover(Math.max(120_000, 3 * this.config.queue.lockMs));
    if (job.name !== Jobs.deleteChunk) throw new Error(`unknown job ${job.name}`);
    const { requestId, chunk } = job.data as DeleteChunkPayload;
    const request = await this.ds.getRepository(DeletionRequestEntity).findOneBy({ id: requestId });
    if (!request) return { requestId, chunk, gone: true };
    // A garbage collection holds the registry: wait it out without spending an attempt.
    if (await this.throttle.fencedBy(request.registryId)) {
      await job.moveToDelayed(Date.now() + FENCE_RECHECK_MS, token);
      throw new DelayedError();
    }
    const items = await this.claim(requestId, chunk);
    if (items.length === 0) {
      // Everything was cancelled or settled by an earlier run; make sure the request is settled too.
      await this.settle(request, [], [], true);
      return { requestId, chunk, items: 0 };
    }
    const outcomes = await this.run(request, items);
    const final = job.attemptsMade + 1 >= (job.opts.attempts ?? 1);
    const retry = await this.settle(request, items, outcomes, final);
    if (retry > 0) {
      const first = outcomes.find((o) => o.result === 'retry')?.error;
      throw new Error(
        `${retry} of ${items.length} deletes will be retried: ${first?.code} ${first?.message}`,
      );
    }
    return { requestId, chunk, items: items.length };
  }

  /** Takes the chunk's waiting items; items left `running` by a crashed run are taken over. */
  private async claim(requestId: string, chunk: number): Promise<ClaimedItem[]> {
    const [rows] = (await this.ds.query(
      `UPDATE deletion_items SET status = 'running', attempts = attempts + 1, updated_at = now()
        WHERE request_id = $1 AND chunk = $2 AND status IN ('pending', 'running')
        RETURNING id, position, repository, reference, kind, digest, tags, attempts`,
      [requestId, chunk],
    )) as [ClaimedItem[], number];
    if (rows.length)
      await this.ds.query(
        `UPDATE deletion_requests SET status = 'running', updated_at = now() WHERE id = $1 AND status = 'queued'`,
        [requestId],
      );
    return rows.sort((a, b) => a.position - b.position);
  }

  private async run(request: DeletionRequestEntity, items: ClaimedItem[]): Promise<Outcome[]> {
    let registry: RegistryEntity;
    try {
      registry = await this.registries.get(request.registry);
      if (registry.id !== request.registryId)
        throw new DomainError('REGISTRY_NOT_FOUND', `registry "${request.registry}" was replaced`, 404);
    } catch (err) {
      return items.map(() => failure(err));
    }
    const client = this.clients.for(registry);
    const unplanned = await this.unplannedTags(client, request.id, items);
    return this.throttle.withSlots(registry, items.length, (slots) => {
      const limit = pLimit(slots);
      return Promise.all(
        items.map((item) => {
          const found = unplanned.get(item.id);
          if (found instanceof Error) return failure(found);
          if (found) return tagAdded(item, found);
          return limit(() => this.deleteOne(client, registry, item));
        }),
      );
    });
  }

  /**
   * Tags the plan did not show that now point at an image this chunk deletes by digest. The registry removes
   * every tag of a digest it deletes, so such a delete would take a tag nobody was shown: a rollback that
   * re-tagged an old image while the request waited (behind a GC, retries, the rate limit), say. One
   * tags/list per repository, and a read of each tag that no item of the request names. For an item
   * whose repository could not be read, the error (retried as any other).
   */
  private async unplannedTags(
    client: RegistryClient,
    requestId: string,
    items: ClaimedItem[],
  ): Promise<Map<string, string[] | Error>> {
    const found = new Map<string, string[] | Error>();
    const byRepository = new Map<string, ClaimedItem[]>();
    for (const item of items)
      if (item.kind === 'manifest' && item.digest)
        byRepository.set(item.repository, [...(byRepository.get(item.repository) ?? []), item]);
    if (!byRepository.size) return found;
    // The tags the request deletes in these repositories, in any of its chunks: those were shown.
    const rows = (await this.ds.query(
      `SELECT DISTINCT repository, unnest(tags) AS tag FROM deletion_items
        WHERE request_id = $1 AND repository = ANY($2::text[])`,
      [requestId, [...byRepository.keys()]],
    )) as { repository: string; tag: string }[];
    const shown = new Set(rows.map((r) => `${r.repository}:${r.tag}`));
    const limit = pLimit(this.config.upstream.concurrency);
    await Promise.all(
      [...byRepository].map(async ([repository, deleting]) => {
        try {
          const tags = await client.listTags(repository).catch(unlessGone([] as string[]));
          const digests = new Map(deleting.map((i) => [i.digest!, i]));
          await Promise.all(
            tags
              .filter((tag) => !shown.has(`${repository}:${tag}`))
              .map((tag) =>
                limit(async () => {
                  const now = await client.tagTarget(repository, tag);
                  const item = now && digests.get(now.digest);
                  if (item) found.set(item.id, [...((found.get(item.id) as string[]) ?? []), tag].sort());
                }),
              ),
          );
        } catch (err) {
          for (const item of deleting) found.set(item.id, err as Error);
        }
      }),
    );
    return found;
  }

  private async deleteOne(
    client: RegistryClient,
    registry: RegistryEntity,
    item: ClaimedItem,
  ): Promise<Outcome> {
    try {
      // Inside the try: a rate limit that cannot be read (Redis failing) is this item's retry, not a
      // rejection of the whole chunk, which would release the slots while the chunk's other deletes run
      // and lose their outcomes.
      await this.throttle.admit(registry);
      if (item.kind === 'tag') {
        const r = await client.deleteTag(item.repository, item.reference, {
          distributionVersion: registry.probe?.distributionVersion ?? null,
          expectDigest: item.digest ?? undefined,
        });
        return {
          result: 'succeeded',
          upstreamStatus: 202,
          alreadyGone: r.alreadyGone,
          method: r.method,
          error: null,
        };
      }
      const r = await client.deleteManifest(item.repository, item.digest!);
      return {
        result: 'succeeded',
        upstreamStatus: r.status,
        alreadyGone: r.alreadyGone,
        method: 'manifest-delete',
        error: null,
      };
    } catch (err) {
      return failure(err);
    }
  }

  /**
   * Records the outcomes (final ones with their audit events), puts retryable items back, and settles the
   * request when nothing is left. One transaction, the request row locked. Returns how many will be retried.
   */
  private async settle(
    request: DeletionRequestEntity,
    items: ClaimedItem[],
    outcomes: Outcome[],
    final: boolean,
  ): Promise<number> {
    const ctx: RequestContext = {
      actor: {
        type: request.actorType as RequestContext['actor']['type'],
        id: request.actorId,
        name: request.actorName,
      },
      sourceIp: request.sourceIp,
      requestId: request.requestId,
    };
    const status = items.map((_, i) =>
      outcomes[i].result === 'retry' ? (final ? 'failed' : 'pending') : outcomes[i].result,
    );
    const { retry, settled } = await this.ds.transaction(async (m) => {
      await this.deletions.lock(m, request.id);
      if (items.length) {
        await m.query(
          `UPDATE deletion_items i SET
             status = u.status, upstream_status = u.upstream_status, already_gone = u.already_gone,
             method = u.method, error_code = u.error_code, error_message = u.error_message, updated_at = now(),
             finished_at = CASE WHEN u.status IN ('succeeded', 'failed') THEN now() END
           FROM unnest($1::uuid[], $2::text[], $3::int[], $4::bool[], $5::text[], $6::text[], $7::text[])
             AS u(id, status, upstream_status, already_gone, method, error_code, error_message)
           WHERE i.id = u.id AND i.status = 'running'`,
          [
            items.map((i) => i.id),
            status,
            outcomes.map((o) => o.upstreamStatus),
            outcomes.map((o) => o.alreadyGone),
            outcomes.map((o) => o.method),
            outcomes.map((o) => o.error?.code ?? null),
            outcomes.map((o) => o.error?.message ?? null),
          ],
        );
        await m.query('UPDATE deletion_requests SET updated_at = now() WHERE id = $1', [request.id]);
      }
      const events: AuditableEvent[] = [];
      for (const [i, item] of items.entries()) {
        if (status[i] !== 'pending')
          events.push(this.itemEvent(request, ctx, item, outcomes[i], status[i] === 'succeeded'));
      }
      const settled = await this.deletions.settleStatus(m, request.id);
      if (settled) {
        events.push({
          action: 'deletion.completed',
          ...this.deletions.auditBase(request, ctx),
          outcome: COMPLETION_OUTCOME[settled.status],
          details: { status: settled.status, counts: settled.counts },
        });
      }
      await recordAuditBatch(this.events, { events, manager: m });
      return { retry: status.filter((s) => s === 'pending').length, settled };
    });
    for (const s of status)
      workerMetrics
        .deletionItems()
        .inc({ registry: request.registry, outcome: s === 'pending' ? 'retried' : s });
    if (settled)
      this.events.emit(DELETION_SETTLED_EVENT, {
        requestId: request.id,
        registryId: request.registryId,
        registry: request.registry,
        status: settled.status,
      } satisfies DeletionSettledEvent);
    return retry;
  }

  private itemEvent(
    request: DeletionRequestEntity,
    ctx: RequestContext,
    item: ClaimedItem,
    o: Outcome,
    ok: boolean,
  ): AuditableEvent {
    return {
      action: ok ? 'deletion.item.succeeded' : 'deletion.item.failed',
      ...this.deletions.auditBase(request, ctx),
      repository: item.repository,
      tags: item.tags,
      digest: item.digest,
      outcome: ok ? 'success' : 'failure',
      upstreamStatus: o.upstreamStatus,
      details: {
        position: item.position,
        reference: item.reference,
        kind: item.kind,
        method: o.method,
        alreadyGone: o.alreadyGone,
        attempts: item.attempts,
        error: o.error,
      },
    };
  }
}

/** The item is not deleted: tags the plan did not show now point at its image. */
function tagAdded(item: ClaimedItem, tags: string[]): Outcome {
  const one = tags.length === 1;
  return {
    result: 'failed',
    upstreamStatus: null,
    alreadyGone: null,
    method: null,
    error: {
      code: 'TAG_ADDED',
      message: `${tags.map((t) => `${item.repository}:${t}`).join(', ')} now point${one ? 's' : ''} at ${item.digest}, which the plan did not show: deleting the image would remove ${one ? 'it' : 'them'}. Nothing was deleted; plan again`,
    },
  };
}

/** Transient upstream trouble is retried; a refusal (4xx, delete disabled, read-only) is final at once. */
function failure(err: unknown): Outcome {
  const upstream = err instanceof UpstreamError ? err : undefined;
  const cause =
    err instanceof DomainError && err.code === 'TAG_DELETE_INCOMPLETE'
      ? (err.details?.cause as { retryable?: boolean })
      : undefined;
  const known = err instanceof DomainError;
  const retryable = upstream ? upstream.retryable : cause ? !!cause.retryable : !known;
  const status = upstream?.upstreamStatus ?? null;
  return {
    result: retryable ? 'retry' : 'failed',
    upstreamStatus: status !== null && status >= 100 && status <= 599 ? status : null,
    alreadyGone: null,
    method: null,
    error: {
      code: known ? err.code : 'INTERNAL',
      message: (err instanceof Error ? err.message : String(err)).slice(0, 2000),
    },
  };
}
