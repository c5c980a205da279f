import { Column, Entity, PrimaryColumn } from 'typeorm';

/**
 * One row of the append-only trail. The database rejects UPDATE, DELETE and TRUNCATE, and checks on
 * INSERT that the row extends the chain (see the audit migration), so this entity is only ever read or
 * inserted.
 */
@Entity({ name: 'audit_events' })
export class AuditEventEntity {
  @PrimaryColumn('uuid')
  id: string;

  /** Position in the chain: 1, 2, 3, ... with no gaps. bigint, so the driver returns a string. */
  @Column({ type: 'bigint', unique: true })
  seq: string;

  @Column({ name: 'occurred_at', type: 'timestamptz' })
  occurredAt: Date;

  @Column({ type: 'varchar', length: 100 })
  action: string;

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

  @Column({ type: 'text', nullable: true })
  registry: string | null;

  @Column({ type: 'text', nullable: true })
  repository: string | null;

  @Column({ type: 'text', array: true, default: () => "'{}'" })
  tags: string[];

  @Column({ type: 'text', nullable: true })
  digest: string | null;

  @Column({ type: 'varchar', length: 16 })
  outcome: string;

  @Column({ name: 'upstream_status', type: 'integer', nullable: true })
  upstreamStatus: number | null;

  @Column({ name: 'subject_type', type: 'text', nullable: true })
  subjectType: string | null;

  @Column({ name: 'subject_id', type: 'text', nullable: true })
  subjectId: string | null;

  @Column({ type: 'jsonb', nullable: true })
  details: Record<string, unknown> | null;

  @Column({ name: 'prev_hash', type: 'text', nullable: true })
  prevHash: string | null;

  @Column({ type: 'text' })
  hash: string;
}
