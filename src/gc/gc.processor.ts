import { InjectQueue } from '@nestjs/bullmq';
import { Injectable, Logger, OnApplicationBootstrap, OnApplicationShutdown } from '@nestjs/common';
import { EventEmitter2, OnEvent } from '@nestjs/event-emitter';
import { InjectDataSource } from '@nestjs/typeorm';
import { DelayedError, Job, Queue, Worker } from 'bullmq';
import { DataSource } from 'typeorm';
import { AppConfig } from '../config/app-config.js';
import { DomainError } from '../common/domain-error.js';
import { workerMetrics } from '../common/worker-metrics.js';
import { SYSTEM_CONTEXT } from '../common/request-context.js';
import { DELETION_SETTLED_EVENT, type DeletionSettledEvent } from '../deletions/deletion.service.js';
import { RegistryThrottle, type RegistryFence } from '../deletions/registry-throttle.js';
import { Jobs, Queues, type GcRegistryPayload, type GcRunPayload } from '../queue/queue.constants.js';
import { redisOptions } from '../queue/redis-options.js';
import type { RegistryClient } from '../registries/client/registry-client.js';
import { RegistriesService } from '../registries/registries.service.js';
import { RegistryClients } from '../registries/registry-clients.service.js';
import type { RegistryEntity } from '../registries/registry.entity.js';
import { type ExecResult, type GcCommandOptions, type GcExecutor } from './executors/gc-executor.js';
import { GcOutputParser, type GcOutputSummary, type RepositoryDigest } from './gc-output.js';
import { GcSettingsService } from './gc-settings.service.js';
import {
  blobDataPath,
  checkStorage,
  execLines,
  linkedIn,
  manifestFolders,
  MAX_PROBLEMS,
  missingBefore,
  readTagged,
  repositoriesMissing,
  sameFolders,
  snapshotInParts,
  statPaths,
  v2Root,
  verifyStorage,
  type StorageCheck,
  type StorageSnapshot,
  type TaggedImages,
  type WasMissing,
} from './gc-storage.js';
import {
  flushRedisCache,
  sample,
  verifyThroughRegistry,
  type TaggedSample,
  waitReady,
  type RegistryCheck,
} from './gc-verifier.js';
import {
  GcRunEntity,
  GcSettingsEntity,
  isGcRunFinished,
  type GcPhase,
  type GcVerification,
} from './gc.entity.js';
import { GC_FINISHED_EVENT, GcService } from './gc.service.js';

/** Repositories of the registry's catalog looked for in the storage when it holds no blob. */
const CATALOG_SAMPLE = 16;
const isCancel = (err: unknown) => err instanceof DomainError && err.code === 'GC_CANCELLED';
/** Live output kept on the run while the collector runs (the final output replaces it). */
const LIVE_OUTPUT_TAIL = 64 * 1024;
const sleep = (ms: number, signal?: AbortSignal) =>
  new Promise<void>((resolve, reject) => {
    const t = setTimeout(resolve, ms);
    signal?.addEventListener('abort', () => {
      clearTimeout(t);
      reject(signal.reason as Error);
    });
  });

interface Plan {
  /** Nothing was ever pushed: the collector fails on the missing repositories folder; nothing to do. */
  empty: boolean;
  summary: GcOutputSummary;
  output: ExecResult;
  /** Candidate blob digest -> size and modification time (seconds since the epoch). */
  blobs: Map<string, { size: number; mtime: number }>;
  bytesEstimated: number;
}

/** What the registry's API said after a run: the probes, its first catalog page, and in which mode. */
interface RegistryAnswers {
  api: RegistryCheck;
  catalog: string[];
  full: boolean;
}

/** Where a run stands, written to its row every GC_HEARTBEAT_MS so a reader sees progress and life. */
class Progress {
  /** Time per phase; a phase entered twice (planning again after a wait) adds up. */
  readonly phaseMs: Record<string, number> = {};
  private since = performance.now();
  /** The output's last chunks, at most LIVE_OUTPUT_TAIL characters past the first (joined when written). */
  private chunks: string[] = [];
  private chunkChars = 0;
  private live = false;
  private timer?: NodeJS.Timeout;
  private writing: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly ds: DataSource,
    private readonly runId: string,
    private readonly job: Job,
    private readonly abort: AbortController,
    /** The phase the run was claimed in. */
    public phase: GcPhase,
  ) {}

  start(everyMs: number) {
    this.timer = setInterval(() => void this.beat(), everyMs);
  }

  /** Enters a phase; its row is written in the background, in order with the heartbeats (see stop()). */
  to(phase: GcPhase) {
    this.close();
    this.phase = phase;
    void this.beat();
  }

  /** Books the time since the last phase change to the current phase. */
  close() {
    const now = performance.now();
    this.phaseMs[this.phase] = Math.round((this.phaseMs[this.phase] ?? 0) + now - this.since);
    this.since = now;
  }

  /** Called for every chunk the collector writes (thousands a second): keeps chunks, copies nothing. */
  output(chunk: string) {
    this.live = true;
    this.chunks.push(chunk);
    this.chunkChars += chunk.length;
    while (this.chunks.length > 1 && this.chunkChars - this.chunks[0].length >= LIVE_OUTPUT_TAIL)
      this.chunkChars -= this.chunks.shift()!.length;
  }

  /**
   * The collector's whole output, written once it has ended, in order with the heartbeats (which then
   * stop writing its tail): the run's final write need not carry it.
   */
  final(output: ExecResult): void {
    this.live = false;
    this.writing = this.writing
      .then(() =>
        this.ds.query(
          `UPDATE gc_runs SET output = $2, output_truncated = $3, exit_code = $4 WHERE id = $1 AND status = 'running'`,
          [this.runId, output.output, output.outputTruncated, output.exitCode],
        ),
      )
      // Not written now: the final write carries it.
      .catch(() => (this.unsaved = output));
  }

  /** The output final() could not write. */
  unsaved?: ExecResult;

  beat(): Promise<unknown> {
    const tail = this.live ? this.chunks.join('').slice(-LIVE_OUTPUT_TAIL) : null;
    this.writing = this.writing
      .then(async () => {
        const [rows] = (await this.ds.query(
          `UPDATE gc_runs SET heartbeat_at = now(), updated_at = now(), phase = $2, output = COALESCE($3, output)
            WHERE id = $1 AND status = 'running' RETURNING cancel_requested`,
          [this.runId, this.phase, tail],
        )) as [{ cancel_requested: boolean }[], number];
        // A cancel asked through any API replica reaches the worker at its next heartbeat.
        if (rows[0]?.cancel_requested && !this.abort.signal.aborted)
          this.abort.abort(new DomainError('GC_CANCELLED', 'the run was cancelled', 409));
        // No longer running: this worker lost the job (its lock lapsed, say, in a Redis outage) and another
        // worker recovered the run, restoring the registry and dropping the fence. Carrying on would collect
        // unfenced: stop here (the run's end is already written).
        if (!rows.length && !this.abort.signal.aborted)
          this.abort.abort(
            new DomainError(
              'WORKER_LOST',
              'the run was recovered by another worker while this one ran it',
              500,
            ),
          );
        await this.job.updateProgress({ phase: this.phase });
      })
      .catch(() => undefined);
    return this.writing;
  }

  async stop() {
    clearInterval(this.timer);
    await this.writing;
  }
}

/**
 * Runs GC jobs: fence (while the storage is measured and listed), plan (a dry run), wait out the grace
 * window, collect, clear the blob descriptor cache (while the storage is measured and checked again),
 * verify through the registry's API, unfence. Also the sweep (runs committed
 * but not queued; runs of crashed workers, whose registry is restored and whose run is failed), the
 * schedules and the debounced run after deletions.
 */
@Injectable()
export class GcProcessor implements OnApplicationBootstrap, OnApplicationShutdown {
  private readonly logger = new Logger(GcProcessor.name);
  private worker?: Worker;
  private readonly aborts = new Set<AbortController>();

  constructor(
    private readonly config: AppConfig,
    @InjectDataSource() private readonly ds: DataSource,
    private readonly events: EventEmitter2,
    private readonly registries: RegistriesService,
    private readonly clients: RegistryClients,
    private readonly settings: GcSettingsService,
    private readonly gc: GcService,
    private readonly throttle: RegistryThrottle,
    @InjectQueue(Queues.gc) private readonly queue: Queue,
  ) {}

  async onApplicationBootstrap() {
    const { lockMs } = this.config.queue;
    this.worker = new Worker(Queues.gc, (job: Job, token?: string) => this.process(job, token), {
      connection: redisOptions(this.config.redis.url),
      prefix: this.config.redis.prefix,
      // Runs of different registries in parallel; one registry never has two (unique index).
      concurrency: 4,
      lockDuration: lockMs,
      stalledInterval: lockMs,
      // A stalled run is handed out once more, and that attempt restores the registry and fails the run.
      maxStalledCount: 1,
    });
    this.worker.on('error', (err) => this.logger.error(`GC worker: ${err.message}`));
    await this.queue.upsertJobScheduler(
      Jobs.gcSweep,
      { every: this.config.gc.sweepEveryMs },
      { name: Jobs.gcSweep, opts: { removeOnComplete: { count: 10 }, removeOnFail: { count: 100 } } },
    );
    await this.settings
      .reconcileSchedules()
      .catch((err: Error) => this.logger.warn(`GC schedules not reconciled: ${err.message}`));
  }

  async onApplicationShutdown() {
    // A shutdown mid-run ends it as failed with the registry restored, rather than leaving it to the sweep.
    for (const a of this.aborts)
      a.abort(new DomainError('WORKER_SHUTDOWN', 'the worker is shutting down', 503));
    await this.worker?.close();
  }

  /** Deletions on a registry settled: (re)start its debounced automatic run. */
  @OnEvent(DELETION_SETTLED_EVENT)
  async onDeletionSettled(e: DeletionSettledEvent): Promise<void> {
    try {
      const s = await this.settings.find(e.registryId);
      if (!s?.afterDeletions) return;
      const delay = s.afterDeletionsDelaySeconds * 1000;
      await this.queue.add(Jobs.gcAfterDeletions, { registryId: e.registryId } satisfies GcRegistryPayload, {
        delay,
        deduplication: {
          id: `gc-after-deletions-${e.registryId}`,
          ttl: Math.max(1, delay),
          extend: true,
          replace: true,
        },
        removeOnComplete: { count: 100 },
        removeOnFail: { count: 100 },
      });
    } catch (err) {
      this.logger.warn(`GC after deletions not scheduled: ${(err as Error).message}`);
    }
  }

  async process(job: Job, token?: string): Promise<unknown> {
    switch (job.name) {
      case Jobs.gcSweep:
        return this.sweep();
      case Jobs.gcScheduled:
        return this.trigger((job.data as GcRegistryPayload).registryId, 'schedule');
      case Jobs.gcAfterDeletions: {
        const done = await this.trigger((job.data as GcRegistryPayload).registryId, 'after_deletions');
        if (!('deferred' in done) || !token) return done;
        // A dry run was active: asked again after the registry's delay (a second at least), the collection
        // the deletions want comes once it has ended.
        await job.moveToDelayed(Date.now() + done.retryMs, token);
        throw new DelayedError();
      }
      case Jobs.gcRun:
        return this.execute((job.data as GcRunPayload).runId, job);
      default:
        throw new Error(`unknown job ${job.name}`);
    }
  }

  private async trigger(
    registryId: string,
    trigger: 'schedule' | 'after_deletions',
  ): Promise<
    { skipped: string } | { deferred: string; retryMs: number } | { runId: string; created: boolean }
  > {
    const registry = (await this.registries.list()).find((r) => r.id === registryId);
    const s = registry && (await this.settings.find(registry.id));
    // A job queued before the operator turned the option off does not run.
    if (!registry || !s || (trigger === 'schedule' ? !s.schedule : !s.afterDeletions))
      return { skipped: 'not configured' };
    // The settings are the operator's standing decision, fence `none` included.
    const { run, created } = await this.gc.request(
      registry.name,
      {
        dryRun: false,
        deleteUntagged: trigger === 'schedule' && s.scheduleDeleteUntagged,
        allowUnfenced: true,
      },
      SYSTEM_CONTEXT,
      trigger,
    );
    // Another run was active; a dry run collects nothing, so deletions that settled still want one.
    if (!created && run.dryRun && trigger === 'after_deletions')
      return { deferred: run.id, retryMs: Math.max(1_000, s.afterDeletionsDelaySeconds * 1000) };
    return { runId: run.id, created };
  }

  /**
   * Queues runs that never reached the queue; restores and fails runs whose worker died; drops the output
   * of runs that ended more than GC_OUTPUT_RETENTION_DAYS ago.
   */
  async sweep(): Promise<{ queued: string[]; recovered: string[]; outputsRemoved: number }> {
    const queued: string[] = [];
    const waiting = (await this.ds.query(
      `SELECT id FROM gc_runs WHERE status = 'queued' AND created_at < now() - interval '5 seconds' ORDER BY created_at`,
    )) as { id: string }[];
    for (const { id } of waiting) {
      const state = await this.queue.getJobState(id);
      if (state === 'completed' || state === 'failed') await this.queue.remove(id);
      else if (state !== 'unknown') continue;
      if (await this.gc.enqueue(id)) queued.push(id);
    }
    const recovered: string[] = [];
    const staleMs = 3 * Math.max(this.config.gc.heartbeatMs, this.config.queue.lockMs);
    const stale = (await this.ds.query(
      `SELECT id FROM gc_runs WHERE status = 'running'
          AND COALESCE(heartbeat_at, started_at, created_at) < now() - make_interval(secs => $1::float / 1000)`,
      [staleMs],
    )) as { id: string }[];
    for (const { id } of stale) {
      if ((await this.queue.getJobState(id)) === 'active') continue;
      const run = await this.claimForRecovery(id);
      if (run) {
        await this.recover(run);
        recovered.push(id);
      }
    }
    const [, outputsRemoved] = (await this.ds.query(
      `UPDATE gc_runs SET output = NULL, output_removed_at = now() WHERE id IN (
         SELECT id FROM gc_runs WHERE output IS NOT NULL AND finished_at IS NOT NULL
            AND finished_at < now() - make_interval(days => $1) LIMIT 1000)`,
      [this.config.gc.outputRetentionDays],
    )) as [unknown, number];
    return { queued, recovered, outputsRemoved };
  }

  private async claimForRecovery(id: string): Promise<GcRunEntity | null> {
    // Heartbeat bumped under the row lock: two sweeps never recover the same run at once.
    const rows = (await this.ds.query(
      `UPDATE gc_runs SET heartbeat_at = now() WHERE id = $1 AND status = 'running' RETURNING id`,
      [id],
    )) as [unknown[], number];
    return rows[1] ? this.gc.find(id) : null;
  }

  private async execute(runId: string, job: Job): Promise<unknown> {
    const claimed = await this.ds.transaction(async (m) => {
      // Taken only from `queued` (the update locks the row); otherwise what it is says why not.
      const [, taken] = (await m.query(
        // A dry run puts up no fence: it starts measuring.
        `UPDATE gc_runs SET status = 'running', phase = CASE WHEN dry_run THEN 'measuring' ELSE 'fencing' END,
           attempts = attempts + 1,
           started_at = now(), heartbeat_at = now(), updated_at = now() WHERE id = $1 AND status = 'queued'`,
        [runId],
      )) as [unknown, number];
      if (!taken) {
        const [row] = (await m.query(`SELECT status FROM gc_runs WHERE id = $1`, [runId])) as {
          status: string;
        }[];
        if (!row) return 'gone' as const;
        // Running: a worker that had it died (BullMQ handed the stalled job out again).
        return isGcRunFinished(row.status) ? ('finished' as const) : ('crashed' as const);
      }
      const run = await m.getRepository(GcRunEntity).findOneByOrFail({ id: runId });
      await this.gc.audit(m, run, 'gc.started', 'pending', this.contextOf(run), {
        fence: run.fence,
        dryRun: run.dryRun,
        deleteUntagged: run.deleteUntagged,
        executor: run.executor,
      });
      return run;
    });
    if (claimed === 'gone' || claimed === 'finished') return { runId, skipped: claimed };
    if (claimed === 'crashed') {
      // The worker that had it died (BullMQ handed the stalled job out again).
      await this.recover(await this.gc.find(runId));
      return { runId, recovered: true };
    }
    const abort = new AbortController();
    this.aborts.add(abort);
    const progress = new Progress(this.ds, runId, job, abort, claimed.phase);
    progress.start(this.config.gc.heartbeatMs);
    try {
      await this.run(claimed, progress, abort.signal);
    } catch (err) {
      await progress.stop();
      await this.finish(claimed.id, 'failed', {}, err);
    } finally {
      await progress.stop();
      this.aborts.delete(abort);
    }
    return { runId };
  }

  private async run(run: GcRunEntity, progress: Progress, signal: AbortSignal): Promise<void> {
    // Read beside the registry (the run names its id); a replaced registry is the error to report first.
    const settingsRead = this.settings.require({ id: run.registryId, name: run.registry });
    settingsRead.catch(() => undefined);
    const registry = await this.registries.get(run.registry);
    if (registry.id !== run.registryId)
      throw new DomainError('REGISTRY_NOT_FOUND', `registry "${run.registry}" was replaced`, 404);
    const settings = await settingsRead;
    const executor = await this.settings.executorFor(settings);
    const client = this.clients.for(registry);
    const root = executor.storagePath;
    let fence: RegistryFence | undefined;
    let snapshotBefore: Promise<StorageSnapshot> | undefined;
    let state: 'normal' | 'readonly' | 'stopped' = 'normal';
    /** The registry was put read-only, stopped or restarted: what a probe saw meanwhile is stale. */
    let lifecycleTouched = false;
    const fields: Partial<Record<string, unknown>> = {};
    let failure: unknown;
    let collecting = false;
    let cacheCleared = false;
    // Reads of the storage that run beside another step; settled before the executor is closed.
    const beside: Promise<unknown>[] = [];
    const alongside = <T>(p: Promise<T>): Promise<T> => {
      beside.push(p.catch(() => undefined));
      return p;
    };
    /**
     * The registry serving writes again: started after `stop`, out of read-only mode, and with `emptyCache`
     * its blob descriptor cache emptied (Redis keys flushed, or a restart for the in-memory one). A Redis
     * cache that cannot be emptied fails the run (CACHE_FLUSH_FAILED), but only once the registry is back.
     */
    const serveAgain = async (emptyCache: boolean) => {
      const flushFailure =
        emptyCache && settings.cache.type === 'redis'
          ? await flushRedisCache(settings.cache, this.settings.cachePassword(settings)).then(
              () => undefined,
              (err: unknown) => err,
            )
          : undefined;
      if (state === 'stopped') await executor.start({ readOnly: false });
      else if (state === 'readonly' || (emptyCache && settings.cache.type === 'inmemory')) {
        lifecycleTouched = true;
        await executor.restart({ readOnly: false });
      }
      state = 'normal';
      if (flushFailure) throw flushFailure;
    };
    try {
      // The storage is measured and listed while the fence goes up. Distribution 2.x's collector, without
      // --delete-untagged, deletes nothing but blobs, and only after it has marked every manifest and
      // listed every blob itself: the walks then run beside it, `blobs` first (and that the walk saw every
      // blob the collector deleted is checked after), and the tags and manifests are read beside it too.
      // The folders a manifest push writes into are read beside it too, before `repositories` is walked,
      // to tell afterwards whether `repositories` changed since. Otherwise (3.x removes layer links under
      // `repositories`) everything is read before it starts.
      const v3 = registry.probe?.distributionVersion?.startsWith('3') ?? false;
      const v2 = registry.probe?.distributionVersion?.startsWith('2') ?? false;
      const overlap = !run.dryRun && !run.deleteUntagged && v2;
      const parts = snapshotInParts(executor, root, signal, {
        besideCollector: overlap,
        beforeRepositories: overlap ? () => manifestFolders(executor, root, signal) : undefined,
      });
      const folders = parts.first && alongside(parts.first);
      snapshotBefore = alongside(parts.whole);
      // Read beside the collector: the folders a push writes into (before `repositories`), the tags and
      // manifests.
      const beside = folders
        ? {
            folders,
            tagged: alongside(parts.whole.then((b) => readTagged(executor, root, b.tags, signal))),
          }
        : undefined;
      // Beside the collector, the walk of `blobs` starts first.
      const reading = alongside<unknown>(beside ? parts.blobsStarted : parts.whole);
      if (!run.dryRun) {
        progress.to('fencing');
        if (run.fence !== 'none')
          fence = await this.throttle.fence(registry, run.id, this.config.gc.drainTimeoutMs);
        if (run.fence === 'readonly') {
          state = 'readonly';
          lifecycleTouched = true;
          await executor.restart({ readOnly: true });
          await waitReady(client, this.config.gc.readyTimeoutMs, signal);
        } else if (run.fence === 'stop') {
          state = 'stopped';
          lifecycleTouched = true;
          await executor.stop();
        }
      }

      // The blobs written within the grace window are listed once the fence is up (after the drain, which may
      // take minutes, and the read-only restart): an upload that finished before then is among them.
      const youngRead =
        !run.dryRun && settings.graceSeconds > 0
          ? alongside(this.youngBlobs(executor, root, settings.graceSeconds, signal))
          : Promise.resolve(new Set<string>());
      progress.to('measuring');
      const [, young] = await Promise.all([reading, youngRead]);
      // Not a blob where the executor reads: a fresh registry, or a storagePath that is not where this
      // registry keeps its data (another folder, an object store). Told apart before anything is deleted.
      if (parts.partial.blobs.size === 0 && state !== 'stopped') {
        await parts.outsideRepositories;
        if (parts.partial.blobs.size === 0) await this.expectEmptyRegistry(client, executor, root, signal);
      }
      // Taken after the collection when the collector ran beside the walks.
      if (!overlap) fields.bytes_before = (await snapshotBefore).bytes;

      progress.to('planning');
      // A dry run first only when something must be known before anything is deleted: whether a young
      // blob (grace window) or an index's child (--delete-untagged on 2.x) is among the candidates.
      let plan: Plan | null = null;
      if (run.dryRun || young.size > 0 || (run.deleteUntagged && !v3)) {
        plan = await this.plan(executor, root, run, signal, (out) =>
          Object.assign(fields, {
            exit_code: out.exitCode,
            output: out.output,
            output_truncated: out.outputTruncated,
          }),
        );
        fields.bytes_estimated = plan.bytesEstimated;
        fields.blobs_marked = plan.summary.blobsMarked;
        if (run.deleteUntagged && !v3)
          await this.guardUntagged(registry, client, plan.summary, state === 'stopped');
        if (run.dryRun || plan.empty) {
          // What a real run would delete; nothing changed (or nothing to collect in an empty registry).
          Object.assign(fields, {
            blobs_deleted: plan.blobs.size,
            manifests_deleted: plan.summary.manifestsDeleted.length,
            exit_code: plan.output.exitCode,
            output: plan.output.output,
            output_truncated: plan.output.outputTruncated,
          });
          return;
        }
        plan = await this.waitForGrace(executor, root, run, settings, plan, progress, signal);
        fields.bytes_estimated = plan.bytesEstimated;
      }

      progress.to('collecting');
      collecting = true;
      const { out, summary } = await this.collect(executor, {
        dryRun: false,
        deleteUntagged: run.deleteUntagged,
        onOutput: (chunk) => progress.output(chunk),
        signal,
      });
      progress.final(out);
      Object.assign(fields, {
        blobs_marked: summary.blobsMarked,
        blobs_deleted: summary.blobsDeleted.length,
        manifests_deleted: summary.manifestsDeleted.length,
      });
      const before = await snapshotBefore;
      // Beside the collector, the walk must have reached every blob before the collector deleted it; one
      // it missed leaves the size before unknown (and the estimate short by that blob).
      const unseen = overlap ? summary.blobsDeleted.filter((d) => !before.blobs.has(d)) : [];
      if (unseen.length && unseen.length < summary.blobsDeleted.length) {
        fields.bytes_before = null;
        this.logger.warn(
          `GC run ${run.id}: the collector of registry "${registry.name}" deleted ${unseen.length} blob(s) before the storage walk beside it reached them (${unseen.slice(0, 3).join(', ')}${unseen.length > 3 ? ', ...' : ''}); bytesBefore and bytesFreed are not known for this run`,
        );
      } else fields.bytes_before = before.bytes;
      if (out.exitCode !== 0 && summary.nothingStored) {
        Object.assign(fields, { exit_code: 0, blobs_deleted: 0, manifests_deleted: 0, bytes_estimated: 0 });
        return;
      }
      if (out.exitCode !== 0 || summary.errors.length)
        throw new DomainError(
          'GC_COMMAND_FAILED',
          `garbage-collect exited with ${out.exitCode}${summary.errors.length ? `: ${summary.errors[0]}` : ''}`,
          502,
          { exitCode: out.exitCode },
        );
      if (!summary.complete)
        this.logger.warn(
          `GC run ${run.id}: the collector of registry "${registry.name}" announced ${summary.blobsEligible ?? 'an unknown number of'} blob(s) for deletion and its output listed ${summary.blobsDeleted.length}: lines were lost (a full disk under the worker's temporary directory?); what it deleted is taken from what the storage lost`,
        );
      // What the run finds missing that was missing before it too is listed apart: it did not do that. Told
      // only from the collector's whole list of what it removed.
      const wasMissing = summary.complete
        ? missingBefore(before, {
            blobs: summary.blobsDeleted,
            manifests: summary.manifestsDeleted,
            layerLinks: summary.layerLinksDeleted,
          })
        : undefined;
      if (overlap && (summary.layerLinksDeleted.length || summary.manifestsDeleted.length))
        // Not a 2.x collector after all (the probe's guess): its removals under `repositories` may have
        // come before the walk of that tree did, so the measurement can miss a few KiB of links.
        this.logger.warn(
          `GC run ${run.id}: the collector of registry "${registry.name}" removed ${summary.layerLinksDeleted.length} layer link(s) and ${summary.manifestsDeleted.length} manifest(s) while the storage was measured; bytesBefore may be short by their links`,
        );
      // The estimate: what the blobs the collector listed took on disk before.
      if (!plan)
        fields.bytes_estimated = summary.blobsDeleted.reduce((n, d) => n + (before.blobs.get(d) ?? 0), 0);

      progress.to('clearing-cache');
      // The cache is emptied (the registry restarted, say) and the storage measured and checked meanwhile:
      // reading the storage needs no registry. The restart's command is started first, as it is what the
      // API check waits for.
      const clearing = serveAgain(true);
      // Awaited below; the reads started meanwhile must not leave its failure unhandled.
      clearing.catch(() => undefined);
      // Whether `repositories` stayed as read beside the collector: no manifest came or went meanwhile, and
      // the collector removed nothing there (a 3.x one after all removes layer links, which the folders
      // compared do not show).
      const untouched = !summary.layerLinksDeleted.length && !summary.manifestsDeleted.length;
      const kept: Promise<TaggedImages | null> = alongside(
        beside && untouched
          ? Promise.all([beside.folders, manifestFolders(executor, root, signal, { urgent: true })]).then(
              ([was, now]) => (sameFolders(was, now) ? beside.tagged : null),
            )
          : Promise.resolve(null),
      );
      const checking = alongside(
        this.checkStorageAfter(executor, root, summary.blobsDeleted, signal, before, kept, wasMissing),
      );
      // The blobs the collector deleted: those it listed, and when lines of its list were lost, every blob
      // the storage lost meanwhile (nothing else removes blobs but the expiry of a pull-through cache, whose
      // blobs the API check then finds served again: a failure, the safe side).
      const deletedBlobs = summary.complete
        ? Promise.resolve(summary.blobsDeleted)
        : checking.then(({ after }) => [
            ...new Set([
              ...summary.blobsDeleted,
              ...[...before.blobs.keys()].filter((d) => !after.blobs.has(d)),
            ]),
          ]);
      // Awaited below; a failure before must not be left unhandled.
      deletedBlobs.catch(() => undefined);
      await clearing;
      cacheCleared = true;
      await waitReady(client, this.config.gc.readyTimeoutMs, signal);

      progress.to('verifying');
      // The registry is asked while the storage check may still run: one waits on the registry, the
      // other on the executor.
      const [{ after, storage }, answers] = await Promise.all([
        checking,
        this.askRegistry(client, settings, before, deletedBlobs, signal, kept, wasMissing),
      ]);
      if (!summary.complete) {
        const deleted = await deletedBlobs;
        fields.blobs_deleted = summary.blobsEligible ?? deleted.length;
        if (!plan) fields.bytes_estimated = deleted.reduce((n, d) => n + (before.blobs.get(d) ?? 0), 0);
      }
      Object.assign(fields, {
        bytes_after: after.bytes,
        bytes_freed: fields.bytes_before === null ? null : Math.max(0, before.bytes - after.bytes),
      });
      const verification = await this.verify(
        root,
        before,
        after,
        storage,
        answers,
        summary,
        executor,
        signal,
      );
      fields.verification = verification;

      progress.to('unfencing');
      await fence?.release();
      fence = undefined;
      if (!verification.ok) throw verificationFailed(verification);
    } catch (err) {
      // An aborted run fails with why it was aborted (cancelled, the worker shutting down), not with what the
      // abort made a step throw (the executor's EXECUTOR_ABORTED, say).
      failure = signal.aborted && signal.reason instanceof DomainError ? signal.reason : err;
    } finally {
      // Whatever happened, the registry goes back to serving writes (with an empty blob descriptor cache
      // once the collector touched the storage) and the gateway to deleting.
      await serveAgain(collecting && !cacheCleared).catch((err: Error) =>
        this.logger.error(`GC run ${run.id}: registry "${registry.name}" not restored: ${err.message}`),
      );
      await fence?.release().catch(() => undefined);
      await Promise.all(beside);
      if (!('bytes_before' in fields))
        fields.bytes_before = (await snapshotBefore?.catch(() => undefined))?.bytes;
      await executor.close().catch(() => undefined);
      progress.close();
      // The last phase write lands before the final one.
      await progress.stop();
      if (progress.unsaved)
        Object.assign(fields, {
          output: progress.unsaved.output,
          output_truncated: progress.unsaved.outputTruncated,
          exit_code: fields.exit_code ?? progress.unsaved.exitCode,
        });
      fields.phase_ms = progress.phaseMs;
      await this.finish(
        run.id,
        failure === undefined ? 'succeeded' : isCancel(failure) ? 'cancelled' : 'failed',
        fields,
        failure,
        progress.phase,
      );
      // A probe that ran while the registry was read-only, stopped or restarting stored that: deletes would
      // be refused (REGISTRY_READ_ONLY) until the next scheduled probe. Probed again now it serves again.
      if (lifecycleTouched)
        void this.registries
          .probe(registry)
          .catch((err: Error) =>
            this.logger.warn(`registry "${registry.name}" not probed after GC run ${run.id}: ${err.message}`),
          );
    }
  }

  /**
   * The storage the executor reads holds no blob: the registry must then hold nothing the storage does not
   * either. The first catalog page's repositories are looked for under `repositories`; with none of them
   * there, the collector would work on a storage the run can neither measure nor check (STORAGE_NOT_FOUND).
   */
  private async expectEmptyRegistry(
    client: RegistryClient,
    executor: GcExecutor,
    root: string,
    signal: AbortSignal,
  ): Promise<void> {
    const listed = (await client.catalogPage(CATALOG_SAMPLE).catch(() => null))?.repositories ?? [];
    if (!listed.length) return;
    if ((await repositoriesMissing(executor, root, listed, signal)).length < listed.length) return;
    throw new DomainError(
      'STORAGE_NOT_FOUND',
      `the storage the executor reads (${root}) holds no blob and none of the repositories the registry lists (${listed.slice(0, 3).join(', ')}${listed.length > 3 ? ', ...' : ''}): executor.storagePath is not where this registry keeps its data (another folder, or an object store, which GC through the gateway cannot read); nothing was collected`,
      409,
      { storagePath: root, repositories: listed.slice(0, 5) },
    );
  }

  /**
   * The storage after a collection, measured and checked. When the collector ran beside the walks (2.x
   * without --delete-untagged: it left `repositories` alone), `kept` is what was read beside it, if no
   * manifest came or went meanwhile (manifestFolders the same before and after): then that stands for
   * `repositories`, and only `blobs` and the rest are walked. Otherwise everything is read again.
   */
  private async checkStorageAfter(
    executor: GcExecutor,
    root: string,
    deleted: string[],
    signal: AbortSignal,
    before: StorageSnapshot,
    kept: Promise<TaggedImages | null>,
    wasMissing: WasMissing | undefined,
  ): Promise<{ after: StorageSnapshot; storage: StorageCheck }> {
    const after = await snapshotInParts(executor, root, signal, {
      repositories: kept.then((k) => (k ? before : null)),
    }).whole;
    const tagged = await kept;
    const storage = tagged
      ? await checkStorage(executor, root, tagged, after, deleted, signal, wasMissing)
      : await verifyStorage(executor, root, after, deleted, signal, wasMissing);
    return { after, storage };
  }

  /**
   * The registry's API part: deleted blobs (HEAD) in a repository that linked them, tagged images read
   * whole, the first catalog page. A sample of the tags the storage held before the run, or everything.
   * With the tags and manifests already read from the storage (`tagged`, once it settles: the deleted
   * blobs and the catalog are asked for meanwhile), a sampled image's blobs are asked for beside its
   * manifest.
   */
  private async askRegistry(
    client: RegistryClient,
    settings: GcSettingsEntity,
    before: StorageSnapshot,
    deleted: Promise<string[]>,
    signal: AbortSignal,
    kept: Promise<TaggedImages | null>,
    wasMissing: WasMissing | undefined,
  ): Promise<RegistryAnswers> {
    const full = settings.verification === 'full';
    const n = this.config.gc.verifySample;
    const images = this.config.gc.verifySampleImages;
    const deletedPairs = linkedIn(before, await deleted);
    const [api, catalog] = await Promise.all([
      verifyThroughRegistry(client, {
        deleted: full ? deletedPairs : sample(deletedPairs, n),
        tagged: full
          ? 'catalog'
          : kept.then((tagged) =>
              tagged
                ? sample(tagged.tags, images).map((t): TaggedSample => {
                    const references = tagged.references.get(t.digest);
                    return { ...t, expected: references && { digest: t.digest, references } };
                  })
                : sample(before.tags, images),
            ),
        concurrency: this.config.gc.verifyConcurrency,
        signal,
        wasMissing,
      }),
      // A registry that keeps its catalog from this client only loses this cross-check.
      client.catalogPage(n).catch(() => ({ repositories: [] as string[] })),
    ]);
    return { api, catalog: catalog.repositories, full };
  }

  /**
   * The verdict: the storage check's problems, what the registry answered, and their cross-checks.
   * The storage-side check is whole; the registry's API is then asked about a sample of it (`sample`) or
   * about everything (`full`). The API check is what ties the storage the executor reads to the registry
   * that serves: deleted blobs it still claims (a stale cache), blobs of tagged images it cannot read,
   * repositories it lists that the storage does not hold (a storagePath pointing elsewhere).
   */
  private async verify(
    root: string,
    before: StorageSnapshot,
    after: StorageSnapshot,
    storage: StorageCheck,
    { api, catalog, full }: RegistryAnswers,
    collector: GcOutputSummary,
    executor: GcExecutor,
    signal: AbortSignal,
  ): Promise<GcVerification> {
    const deleted = collector.blobsDeleted;
    const problems = storage.problems;
    if (deleted.length && !deleted.some((d) => before.blobs.has(d)))
      problems.unshift({
        repository: '',
        digest: '',
        blob: '',
        problem: `none of the ${deleted.length} blob(s) the collector deleted was in the storage the executor reads (${root}): executor.storagePath is not this registry's storage`,
      });
    const held = (r: string) =>
      after.layers.has(r) || after.revisions.has(r) || after.tags.some((t) => t.repository === r);
    const notHeld = catalog.filter((r) => !held(r));
    for (const r of await repositoriesMissing(executor, root, notHeld, signal))
      if (problems.length < MAX_PROBLEMS)
        problems.push({
          repository: r,
          digest: '',
          blob: '',
          problem: `the registry lists the repository, the storage the executor reads (${root}) does not hold it`,
        });
    return {
      ok: !problems.length && !api.stillServed.length && !api.missing.length,
      mode: full ? 'full' : 'sample',
      storage: {
        tagsChecked: storage.tagsChecked,
        manifestsChecked: storage.manifestsChecked,
        blobsChecked: storage.blobsChecked,
        deletedBlobsChecked: storage.deletedBlobsChecked,
        problems,
        preexisting: storage.preexisting,
      },
      deletedBlobsChecked: api.deletedBlobsChecked,
      stillServed: api.stillServed,
      manifestsChecked: api.manifestsChecked,
      blobsChecked: api.blobsChecked,
      missing: api.missing,
      preexisting: api.preexisting,
      outputComplete: collector.complete,
      truncated: storage.truncated || api.truncated,
    };
  }

  /**
   * Runs the collector. What it deleted (or would) is read from its whole output as it streams: the run
   * keeps only GC_OUTPUT_CAP_BYTES of it, and on a big registry the middle cut out of that holds the summary
   * and most of the digests.
   */
  private async collect(
    executor: GcExecutor,
    opts: GcCommandOptions,
  ): Promise<{ out: ExecResult; summary: GcOutputSummary }> {
    const parser = new GcOutputParser();
    const out = await executor.garbageCollect({
      ...opts,
      outputCap: this.config.gc.outputCapBytes,
      onOutput: (chunk, stream) => {
        parser.write(chunk, stream);
        opts.onOutput?.(chunk, stream);
      },
    });
    return { out, summary: parser.end() };
  }

  /** A dry run of the collector: what a real run would delete, with disk usage and ages from the storage. */
  private async plan(
    executor: GcExecutor,
    root: string,
    run: GcRunEntity,
    signal: AbortSignal,
    /** Told the collector's output and exit code when they fail the plan: the run keeps them. */
    failedWith?: (output: ExecResult) => void,
  ): Promise<Plan> {
    const { out: output, summary } = await this.collect(executor, {
      dryRun: true,
      deleteUntagged: run.deleteUntagged,
      signal,
    });
    if (output.exitCode !== 0 && summary.nothingStored)
      return { empty: true, summary, output, blobs: new Map(), bytesEstimated: 0 };
    if (output.exitCode !== 0 || summary.errors.length || !summary.complete) failedWith?.(output);
    if (output.exitCode !== 0 || summary.errors.length)
      throw new DomainError(
        'GC_COMMAND_FAILED',
        `garbage-collect --dry-run exited with ${output.exitCode}${summary.errors.length ? `: ${summary.errors[0]}` : ''}`,
        502,
        // Its output is the run's (failedWith), read with GET /gc-runs/:id/output.
        { exitCode: output.exitCode },
      );
    // A plan missing some of the candidates could let a young blob or an index's child through unchecked.
    if (!summary.complete)
      throw new DomainError(
        'GC_OUTPUT_INCOMPLETE',
        summary.summarySeen
          ? `garbage-collect --dry-run announced ${summary.blobsEligible} blob(s) and ${summary.manifestsEligible ?? 0} manifest(s) eligible for deletion, and its output listed ${summary.blobsDeleted.length} and ${summary.manifestsDeleted.length}: lines were lost (is the disk under the worker's temporary directory full?), so what a run would delete is not known`
          : `garbage-collect --dry-run exited with 0 without the summary line ("... blobs marked, ... eligible for deletion"): its output was lost or is not a collector's, so what a run would delete is not known`,
        502,
        { blobsEligible: summary.blobsEligible, blobsListed: summary.blobsDeleted.length },
      );
    const blobs = await this.statBlobs(executor, root, summary.blobsDeleted, signal);
    let bytesEstimated = 0;
    for (const b of blobs.values()) bytesEstimated += b.size;
    return { empty: false, summary, output, blobs, bytesEstimated };
  }

  private async statBlobs(
    executor: GcExecutor,
    root: string,
    digests: string[],
    signal: AbortSignal,
  ): Promise<Map<string, { size: number; mtime: number }>> {
    const out = new Map<string, { size: number; mtime: number }>();
    const byPath = new Map(digests.map((d) => [blobDataPath(root, d), d]));
    // Allocated blocks x block size: disk usage, the unit `du` measures the storage in, so estimated and
    // freed bytes compare.
    await statPaths(executor, [...byPath.keys()], '%b %B %Y %n', signal, (line) => {
      const m = /^(\d+) (\d+) (\d+) (.+)$/.exec(line.trim());
      const digest = m && byPath.get(m[4]);
      if (digest) out.set(digest, { size: Number(m[1]) * Number(m[2]), mtime: Number(m[3]) });
    });
    // Blobs the collector lists but stat did not find still count, with no size known.
    for (const d of digests) if (!out.has(d)) out.set(d, { size: 0, mtime: 0 });
    return out;
  }

  /**
   * A blob written less than graceSeconds ago may be the upload of an image whose manifest is still to
   * come: the run waits until every candidate is older, planning again, for at most maxGraceWaitSeconds.
   */
  private async waitForGrace(
    executor: GcExecutor,
    root: string,
    run: GcRunEntity,
    settings: GcSettingsEntity,
    plan: Plan,
    progress: Progress,
    signal: AbortSignal,
  ): Promise<Plan> {
    const deadline = Date.now() + settings.maxGraceWaitSeconds * 1000;
    for (;;) {
      const cutoff = Date.now() / 1000 - settings.graceSeconds;
      const young = [...plan.blobs].filter(([, b]) => b.mtime > cutoff);
      if (!young.length) return plan;
      const newest = Math.max(...young.map(([, b]) => b.mtime));
      const waitMs = (newest + settings.graceSeconds) * 1000 - Date.now() + 1000;
      if (Date.now() + waitMs > deadline)
        throw new DomainError(
          'GRACE_WINDOW_BLOCKED',
          `${young.length} blob(s) the collector would delete were written less than ${settings.graceSeconds} s ago (an upload may still be waiting for its manifest); waiting for them would exceed maxGraceWaitSeconds (${settings.maxGraceWaitSeconds} s)`,
          409,
          { blobs: young.slice(0, 20).map(([d]) => d), graceSeconds: settings.graceSeconds },
        );
      progress.to('waiting-grace');
      await sleep(Math.max(1000, waitMs), signal);
      progress.to('planning');
      plan = await this.plan(executor, root, run, signal);
    }
  }

  /** Blobs written within the grace window. */
  private async youngBlobs(
    executor: GcExecutor,
    root: string,
    graceSeconds: number,
    signal: AbortSignal,
  ): Promise<Set<string>> {
    const re = /\/blobs\/([a-z0-9]+)\/[0-9a-f]{2}\/([0-9a-f]+)\/data$/;
    const young = new Set<string>();
    await execLines(
      executor,
      [
        'find',
        // The trailing slash follows a `blobs` that is a symlink (moved to another disk), as the registry does.
        `${v2Root(root)}/blobs/`,
        '-type',
        'f',
        '-name',
        'data',
        '-mmin',
        `-${Math.ceil(graceSeconds / 60)}`,
      ],
      signal,
      (line) => {
        const m = re.exec(line);
        if (m) young.add(`${m[1]}:${m[2]}`);
      },
    );
    return young;
  }

  /**
   * `--delete-untagged` on Distribution 2.x deletes the platform manifests of multi-arch images. Allowed
   * only when no index references a candidate: the collector's own listing (2.8 marks what the tagged
   * index keeps) and, with the registry up, the indexes of every candidate's repository.
   */
  private async guardUntagged(
    registry: RegistryEntity,
    client: RegistryClient,
    summary: GcOutputSummary,
    stopped: boolean,
  ): Promise<void> {
    if (registry.probe?.distributionVersion?.startsWith('3')) return;
    const unsafe: RepositoryDigest[] = [...summary.referencedManifestsDeleted];
    if (!stopped) {
      const byRepo = new Map<string, Set<string>>();
      for (const c of summary.manifestsDeleted)
        byRepo.set(c.repository, (byRepo.get(c.repository) ?? new Set()).add(c.digest));
      for (const [repository, candidates] of byRepo) {
        for (const tag of await client.listTags(repository).catch(() => [] as string[])) {
          const m = await client.getManifest(repository, tag).catch(() => null);
          const children = m?.json && 'manifests' in m.json ? (m.json.manifests ?? []) : [];
          for (const child of children)
            if (candidates.has(child.digest) && !unsafe.some((u) => u.digest === child.digest))
              unsafe.push({ repository, digest: child.digest });
        }
      }
    }
    if (unsafe.length)
      throw new DomainError(
        'DELETE_UNTAGGED_UNSAFE',
        `--delete-untagged would delete ${unsafe.length} manifest(s) that a tagged image index references (Distribution ${registry.probe?.distributionVersion ?? 'unknown version'} deletes multi-arch platform manifests); nothing was deleted`,
        409,
        { manifests: unsafe.slice(0, 100), manifestsTotal: unsafe.length },
      );
  }

  /**
   * A run whose worker died: put the registry back (start it, or restart it out of read-only mode and
   * with an empty cache), drop the fence, and fail the run. Idempotent: restoring twice is harmless.
   */
  private async recover(run: GcRunEntity): Promise<void> {
    const problems: string[] = [];
    try {
      const registry = await this.registries.get(run.registry);
      const settings = await this.settings.require(registry);
      const executor = await this.settings.executorFor(settings);
      const client = this.clients.for(registry);
      try {
        const up = await waitReady(client, 2000).then(
          () => true,
          () => false,
        );
        const touched = ['collecting', 'clearing-cache', 'verifying', 'unfencing', 'measuring'].includes(
          run.phase,
        );
        if (!up && executor.capabilities.stop) await executor.start({ readOnly: false });
        else if (run.fence === 'readonly' || (touched && settings.cache.type === 'inmemory'))
          await executor.restart({ readOnly: false });
        if (touched && settings.cache.type === 'redis')
          await flushRedisCache(settings.cache, this.settings.cachePassword(settings));
        await waitReady(client, this.config.gc.readyTimeoutMs);
      } finally {
        await executor.close().catch(() => undefined);
      }
    } catch (err) {
      problems.push((err as Error).message);
    }
    await this.throttle.dropFence(run.registryId, run.id).catch(() => undefined);
    await this.finish(
      run.id,
      'failed',
      {},
      new DomainError(
        'WORKER_LOST',
        `the worker running this GC stopped during phase ${run.phase}; the registry was restored${problems.length ? ` except: ${problems.join('; ')}` : ''}`,
        500,
      ),
      run.phase,
    );
  }

  private async finish(
    runId: string,
    status: 'succeeded' | 'failed' | 'cancelled',
    fields: Partial<Record<string, unknown>>,
    err?: unknown,
    phase?: GcPhase,
  ): Promise<void> {
    const error = err === undefined ? null : errorOf(err);
    const run = await this.ds.transaction(async (m) => {
      const cols = Object.keys(fields);
      const values = cols.map((c) =>
        c === 'verification' || c === 'phase_ms' ? JSON.stringify(fields[c]) : fields[c],
      );
      // Only a run still active (the update locks the row: two finishes never both write).
      const [, updated] = (await m.query(
        `UPDATE gc_runs SET status = $2, phase = $3, error_code = $4, error_message = $5, error_details = $6,
           finished_at = now(), updated_at = now()${cols.map((c, i) => `, ${c} = $${i + 7}`).join('')}
         WHERE id = $1 AND status IN ('queued', 'running')`,
        [
          runId,
          status,
          status === 'succeeded' ? 'done' : (phase ?? 'done'),
          error?.code ?? null,
          error?.message ?? null,
          error?.details ? JSON.stringify(error.details) : null,
          ...values,
        ],
      )) as [unknown, number];
      if (!updated) return null;
      // Read back without the output (up to 1 MiB: not read unless asked for), which nothing here needs.
      const saved = await m.getRepository(GcRunEntity).findOneByOrFail({ id: runId });
      await this.gc.audit(
        m,
        saved,
        status === 'succeeded' ? 'gc.succeeded' : 'gc.failed',
        status === 'succeeded' ? 'success' : 'failure',
        this.contextOf(saved),
        {
          dryRun: saved.dryRun,
          status: saved.status,
          phase: saved.phase,
          blobsDeleted: saved.blobsDeleted,
          manifestsDeleted: saved.manifestsDeleted,
          bytesFreed: saved.bytesFreed === null ? null : Number(saved.bytesFreed),
          bytesEstimated: saved.bytesEstimated === null ? null : Number(saved.bytesEstimated),
          verified: saved.verification?.ok ?? null,
          error,
        },
      );
      return saved;
    });
    if (run) {
      const labels = { registry: run.registry, status: run.status };
      workerMetrics.gcRuns().inc({ ...labels, dry_run: String(run.dryRun) });
      if (run.bytesFreed !== null)
        workerMetrics.gcBytesFreed().inc({ registry: run.registry }, Number(run.bytesFreed));
      if (run.startedAt && run.finishedAt)
        workerMetrics
          .gcDuration()
          .observe(labels, (run.finishedAt.getTime() - run.startedAt.getTime()) / 1000);
      this.events.emit(GC_FINISHED_EVENT, run);
    }
  }

  private contextOf(run: GcRunEntity) {
    return {
      actor: { type: run.actorType as 'user', id: run.actorId, name: run.actorName },
      sourceIp: run.sourceIp,
      requestId: run.requestId,
    };
  }
}

function verificationFailed(v: GcVerification): DomainError {
  const parts: string[] = [];
  const more = v.truncated ? '+' : '';
  const [p] = v.storage.problems;
  if (p)
    parts.push(
      `${v.storage.problems.length}${more} problem(s) in the storage, e.g. ${p.problem}${p.repository ? ` (${p.repository}${p.tag ? `:${p.tag}` : ''}${p.blob ? ` ${p.blob}` : ''})` : ''}`,
    );
  if (v.stillServed.length)
    parts.push(
      `${v.stillServed.length}${more} deleted blob(s) still claimed by the registry, e.g. ${v.stillServed[0].repository}@${v.stillServed[0].digest}`,
    );
  if (v.missing.length)
    parts.push(
      `${v.missing.length}${more} blob(s) of tagged images not served, e.g. ${v.missing[0].repository}:${v.missing[0].tag} needs ${v.missing[0].blob}`,
    );
  return new DomainError('GC_VERIFICATION_FAILED', `verification after GC failed: ${parts.join('; ')}`, 500);
}

function errorOf(err: unknown): { code: string; message: string; details?: Record<string, unknown> } {
  if (err instanceof DomainError)
    return {
      code: err.code,
      message: err.message.slice(0, 4000),
      ...(err.details && { details: boundedDetails(err.details) }),
    };
  return { code: 'INTERNAL', message: (err instanceof Error ? err.message : String(err)).slice(0, 4000) };
}

/**
 * An error's details as the run, the audit trail and the gc.failed webhook keep them: lists of at most 100
 * entries (with `<key>Total`), texts of at most 4000 characters, and not what commands printed or were run
 * with (`output`, `argv` of a lifecycle command), which would reach every gc:read and audit:read reader and
 * outlive GC_OUTPUT_RETENTION_DAYS (the collector's output is the run's, GET /gc-runs/:id/output).
 */
function boundedDetails(details: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(details)) {
    if (key === 'output' || key === 'argv') continue;
    if (Array.isArray(value) && value.length > 100) {
      out[key] = value.slice(0, 100);
      out[`${key}Total`] = value.length;
    } else if (typeof value === 'string' && value.length > 4000) out[key] = value.slice(-4000);
    else out[key] = value;
  }
  return out;
}
