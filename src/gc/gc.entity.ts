import {
  Column,
  CreateDateColumn,
  Entity,
  PrimaryColumn,
  PrimaryGeneratedColumn,
  UpdateDateColumn,
} from 'typeorm';
import type { GcExecutorConfig, GcExecutorType } from './executors/gc-executor.js';

export type GcFence = 'gateway' | 'readonly' | 'stop' | 'none';
export type GcTrigger = 'manual' | 'schedule' | 'after_deletions';
export type GcStatus = 'queued' | 'running' | 'succeeded' | 'failed' | 'cancelled';

const GC_FINISHED_STATUSES: ReadonlySet<string> = new Set<GcStatus>(['succeeded', 'failed', 'cancelled']);

/** A run that has ended: it changes no more. */
export function isGcRunFinished(status: string): boolean {
  return GC_FINISHED_STATUSES.has(status);
}
export type GcPhase =
  | 'queued'
  | 'fencing'
  | 'measuring'
  | 'planning'
  | 'waiting-grace'
  | 'collecting'
  | 'clearing-cache'
  | 'verifying'
  | 'unfencing'
  | 'done';

/** Where the registry keeps its blob descriptor cache, which must be emptied after a collection. */
export interface GcCacheSettings {
  /** `inmemory` (the default config: restart the registry), `redis` (flush its keys) or `none`. */
  type: 'inmemory' | 'redis' | 'none';
  /** redis: `host:port` as in the registry's config (`redis.addr`). The password is a sealed secret. */
  addr?: string;
  db?: number;
  tls?: boolean;
}

@Entity({ name: 'gc_settings' })
export class GcSettingsEntity {
  @PrimaryColumn({ name: 'registry_id', type: 'uuid' })
  registryId: string;

  @Column({ type: 'jsonb' })
  executor: GcExecutorConfig;

  @Column({ name: 'executor_secrets_sealed', type: 'text', nullable: true })
  executorSecretsSealed: string | null;

  @Column({ type: 'varchar', length: 8, default: 'gateway' })
  fence: GcFence;

  @Column({ type: 'jsonb', default: () => `'{"type":"inmemory"}'` })
  cache: GcCacheSettings;

  @Column({ name: 'cache_secrets_sealed', type: 'text', nullable: true })
  cacheSecretsSealed: string | null;

  @Column({ name: 'grace_seconds', type: 'integer', default: 3600 })
  graceSeconds: number;

  @Column({ name: 'max_grace_wait_seconds', type: 'integer', default: 3600 })
  maxGraceWaitSeconds: number;

  @Column({ type: 'varchar', length: 8, default: 'sample' })
  verification: GcVerificationMode;

  @Column({ type: 'text', nullable: true })
  schedule: string | null;

  @Column({ name: 'schedule_timezone', type: 'text', nullable: true })
  scheduleTimezone: string | null;

  @Column({ name: 'schedule_delete_untagged', type: 'boolean', default: false })
  scheduleDeleteUntagged: boolean;

  @Column({ name: 'after_deletions', type: 'boolean', default: false })
  afterDeletions: boolean;

  @Column({ name: 'after_deletions_delay_seconds', type: 'integer', default: 300 })
  afterDeletionsDelaySeconds: number;

  @Column({ type: 'varchar', length: 8, default: 'api' })
  source: 'api' | 'file';

  @CreateDateColumn({ name: 'created_at', type: 'timestamptz' })
  createdAt: Date;

  @UpdateDateColumn({ name: 'updated_at', type: 'timestamptz' })
  updatedAt: Date;
}

/** How a run checks the registry's API after the storage-side check (which is always whole). */
export type GcVerificationMode = 'sample' | 'full';
export const GC_VERIFICATION_MODES: GcVerificationMode[] = ['sample', 'full'];

/** Something the storage-side check found wrong. */
export interface GcStorageProblem {
  repository: string;
  tag?: string;
  /** The manifest the problem belongs to (or the deleted blob). */
  digest: string;
  /** What is missing (or, for a deleted blob, still there). */
  blob: string;
  problem: string;
}

/** What verification after a collection found. */
export interface GcVerification {
  ok: boolean;
  /** `sample`: the registry's API is asked about a random sample; `full`: about everything. */
  mode: GcVerificationMode;
  /** Checked on the storage through the executor, after the collection: every tag, manifest and blob. */
  storage: {
    tagsChecked: number;
    manifestsChecked: number;
    blobsChecked: number;
    deletedBlobsChecked: number;
    problems: GcStorageProblem[];
    /**
     * Found missing, but missing before the collection too (not in the storage read before it, not among
     * what the collector removed): damage the run did not do, which does not fail it. Absent in runs
     * recorded by earlier versions (read as empty).
     */
    preexisting: GcStorageProblem[];
  };
  /** Deleted blobs checked through the registry's API (each must now be 404). */
  deletedBlobsChecked: number;
  stillServed: { repository: string; digest: string; status: number }[];
  /** Tagged manifests whose blobs were all fetched through the registry's API. */
  manifestsChecked: number;
  blobsChecked: number;
  missing: { repository: string; tag: string; digest: string; blob: string; status: number }[];
  /** Not served through the API, and missing from the storage before the collection too (as storage.preexisting). */
  preexisting: { repository: string; tag: string; digest: string; blob: string; status: number }[];
  /**
   * Every line the collector announced was read (its summary's counts match the digests listed). When
   * not (lines lost: a full disk under the worker's temporary directory, say), the deleted blobs checked
   * are those the storage lost, and nothing is taken for pre-existing. Absent in runs recorded by earlier
   * versions (read as true).
   */
  outputComplete: boolean;
  /** More problems than listed. */
  truncated: boolean;
}

@Entity({ name: 'gc_runs' })
export class GcRunEntity {
  @PrimaryGeneratedColumn('uuid')
  id: string;

  @Column({ type: 'text' })
  registry: string;

  @Column({ name: 'registry_id', type: 'uuid' })
  registryId: string;

  @Column({ type: 'varchar', length: 16 })
  trigger: GcTrigger;

  @Column({ name: 'actor_type', type: 'varchar', length: 16 })
  actorType: string;

  @Column({ name: 'actor_id', type: 'text', nullable: true })
  actorId: string | null;

  @Column({ name: 'actor_name', type: 'text', nullable: true })
  actorName: string | null;

  @Column({ name: 'source_ip', type: 'inet', nullable: true })
  sourceIp: string | null;

  @Column({ name: 'request_id', type: 'text', nullable: true })
  requestId: string | null;

  @Column({ name: 'dry_run', type: 'boolean' })
  dryRun: boolean;

  @Column({ name: 'delete_untagged', type: 'boolean' })
  deleteUntagged: boolean;

  @Column({ type: 'varchar', length: 8 })
  fence: GcFence;

  @Column({ name: 'unfenced_allowed', type: 'boolean', default: false })
  unfencedAllowed: boolean;

  @Column({ type: 'varchar', length: 16 })
  executor: GcExecutorType;

  @Column({ type: 'varchar', length: 16 })
  status: GcStatus;

  @Column({ type: 'varchar', length: 24 })
  phase: GcPhase;

  @Column({ name: 'cancel_requested', type: 'boolean', default: false })
  cancelRequested: boolean;

  @Column({ type: 'integer', default: 0 })
  attempts: number;

  @Column({ name: 'blobs_marked', type: 'integer', nullable: true })
  blobsMarked: number | null;

  @Column({ name: 'blobs_deleted', type: 'integer', nullable: true })
  blobsDeleted: number | null;

  @Column({ name: 'manifests_deleted', type: 'integer', nullable: true })
  manifestsDeleted: number | null;

  @Column({ name: 'bytes_before', type: 'bigint', nullable: true })
  bytesBefore: string | null;

  @Column({ name: 'bytes_after', type: 'bigint', nullable: true })
  bytesAfter: string | null;

  @Column({ name: 'bytes_freed', type: 'bigint', nullable: true })
  bytesFreed: string | null;

  @Column({ name: 'bytes_estimated', type: 'bigint', nullable: true })
  bytesEstimated: string | null;

  @Column({ name: 'exit_code', type: 'integer', nullable: true })
  exitCode: number | null;

  /** Up to 1 MiB: read only where one run is shown whole (GcService.find, getFor, active); null elsewhere. */
  @Column({ type: 'text', nullable: true, select: false })
  output?: string | null;

  @Column({ name: 'output_truncated', type: 'boolean', default: false })
  outputTruncated: boolean;

  /** When the output was dropped (GC_OUTPUT_RETENTION_DAYS after the run ended). */
  @Column({ name: 'output_removed_at', type: 'timestamptz', nullable: true })
  outputRemovedAt: Date | null;

  @Column({ type: 'jsonb', nullable: true })
  verification: GcVerification | null;

  /** Milliseconds spent in each phase, for operators (and the bench) to see where a run's time went. */
  @Column({ name: 'phase_ms', type: 'jsonb', default: () => `'{}'` })
  phaseMs: Record<string, number>;

  @Column({ name: 'error_code', type: 'text', nullable: true })
  errorCode: string | null;

  @Column({ name: 'error_message', type: 'text', nullable: true })
  errorMessage: string | null;

  @Column({ name: 'error_details', type: 'jsonb', nullable: true })
  errorDetails: Record<string, unknown> | null;

  @CreateDateColumn({ name: 'created_at', type: 'timestamptz' })
  createdAt: Date;

  @UpdateDateColumn({ name: 'updated_at', type: 'timestamptz' })
  updatedAt: Date;

  @Column({ name: 'enqueued_at', type: 'timestamptz', nullable: true })
  enqueuedAt: Date | null;

  @Column({ name: 'started_at', type: 'timestamptz', nullable: true })
  startedAt: Date | null;

  @Column({ name: 'heartbeat_at', type: 'timestamptz', nullable: true })
  heartbeatAt: Date | null;

  @Column({ name: 'finished_at', type: 'timestamptz', nullable: true })
  finishedAt: Date | null;
}
