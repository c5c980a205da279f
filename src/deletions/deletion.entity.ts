import { Column, Entity, PrimaryGeneratedColumn } from 'typeorm';

export type DeletionStatus =
  'planned' | 'queued' | 'running' | 'succeeded' | 'partially_failed' | 'failed' | 'cancelled';

/**
 * `planned`: a dry run's plan, waiting for execute. `pending`: committed, its job queued (or about to be,
 * by the outbox sweep). `running`: claimed by a job. `skipped`: nothing to do (not found, already covered
 * by another item, or unsafe), decided while planning. The rest are final.
 */
export type DeletionItemStatus =
  'planned' | 'pending' | 'running' | 'succeeded' | 'failed' | 'skipped' | 'cancelled';

export type DeletionKind = 'manifest' | 'tag';

export const FINAL_ITEM_STATUSES: readonly DeletionItemStatus[] = [
  'succeeded',
  'failed',
  'skipped',
  'cancelled',
];

@Entity({ name: 'deletion_requests' })
export class DeletionRequestEntity {
  @PrimaryGeneratedColumn('uuid') id: string;
  @Column({ type: 'text' }) registry: string;
  @Column({ name: 'registry_id', type: 'uuid' }) registryId: string;
  @Column({ type: 'varchar', length: 24 }) status: DeletionStatus;
  @Column({ name: 'dry_run', type: 'boolean' }) dryRun: boolean;
  @Column({ type: 'text', nullable: true }) reason: string | null;
  @Column({ name: 'max_deletions', type: 'integer', nullable: true }) maxDeletions: number | null;
  @Column({ name: 'actor_type', type: 'varchar', length: 16 }) actorType: string;
  @Column({ name: 'actor_id', type: 'text', nullable: true }) actorId: string | null;
  @Column({ name: 'actor_name', type: 'text', nullable: true }) actorName: string | null;
  @Column({ name: 'source_ip', type: 'inet', nullable: true }) sourceIp: string | null;
  @Column({ name: 'request_id', type: 'text', nullable: true }) requestId: string | null;
  @Column({ name: 'item_count', type: 'integer' }) itemCount: number;
  /** bigint: the driver returns a string. */
  @Column({ name: 'estimated_bytes', type: 'bigint', default: 0 }) estimatedBytes: string;
  @Column({ name: 'created_at', type: 'timestamptz', default: () => 'now()' }) createdAt: Date;
  @Column({ name: 'updated_at', type: 'timestamptz', default: () => 'now()' }) updatedAt: Date;
  @Column({ name: 'executed_at', type: 'timestamptz', nullable: true }) executedAt: Date | null;
  @Column({ name: 'enqueued_at', type: 'timestamptz', nullable: true }) enqueuedAt: Date | null;
  @Column({ name: 'finished_at', type: 'timestamptz', nullable: true }) finishedAt: Date | null;
}

@Entity({ name: 'deletion_items' })
export class DeletionItemEntity {
  @PrimaryGeneratedColumn('uuid') id: string;
  @Column({ name: 'request_id', type: 'uuid' }) requestId: string;
  @Column({ type: 'integer' }) position: number;
  /** Items are executed in chunks, one queue job per chunk; the chunk number is the job's identity. */
  @Column({ type: 'integer' }) chunk: number;
  @Column({ type: 'text' }) repository: string;
  @Column({ type: 'text' }) reference: string;
  @Column({ type: 'varchar', length: 8 }) kind: DeletionKind;
  @Column({ type: 'text', nullable: true }) digest: string | null;
  @Column({ name: 'media_type', type: 'text', nullable: true }) mediaType: string | null;
  @Column({ type: 'text', array: true, default: () => "'{}'" }) tags: string[];
  @Column({ name: 'estimated_bytes', type: 'bigint', default: 0 }) estimatedBytes: string;
  @Column({ type: 'varchar', length: 16 }) status: DeletionItemStatus;
  @Column({ type: 'integer', default: 0 }) attempts: number;
  @Column({ name: 'already_gone', type: 'boolean', nullable: true }) alreadyGone: boolean | null;
  @Column({ type: 'varchar', length: 24, nullable: true }) method: string | null;
  @Column({ name: 'upstream_status', type: 'integer', nullable: true }) upstreamStatus: number | null;
  @Column({ name: 'error_code', type: 'varchar', length: 64, nullable: true }) errorCode: string | null;
  @Column({ name: 'error_message', type: 'text', nullable: true }) errorMessage: string | null;
  @Column({ name: 'updated_at', type: 'timestamptz', default: () => 'now()' }) updatedAt: Date;
  @Column({ name: 'finished_at', type: 'timestamptz', nullable: true }) finishedAt: Date | null;
}
