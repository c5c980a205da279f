import { Column, Entity, PrimaryGeneratedColumn } from 'typeorm';
import type { Role } from './permissions.js';

export type BindingSubjectType = 'user' | 'group' | 'service_account';

@Entity({ name: 'service_accounts' })
export class ServiceAccountEntity {
  @PrimaryGeneratedColumn('uuid') id: string;
  @Column({ type: 'varchar', length: 63 }) name: string;
  @Column({ type: 'text', nullable: true }) description: string | null;
  @Column({ name: 'created_at', type: 'timestamptz', default: () => 'now()' }) createdAt: Date;
  @Column({ name: 'created_by_type', type: 'varchar', length: 16 }) createdByType: string;
  @Column({ name: 'created_by_id', type: 'text', nullable: true }) createdById: string | null;
  @Column({ name: 'created_by_name', type: 'text', nullable: true }) createdByName: string | null;
}

@Entity({ name: 'service_account_tokens' })
export class ServiceAccountTokenEntity {
  @PrimaryGeneratedColumn('uuid') id: string;
  @Column({ name: 'service_account_id', type: 'uuid' }) serviceAccountId: string;
  @Column({ type: 'varchar', length: 100, nullable: true }) name: string | null;
  /** sha256 of the token, hex. The token itself is never stored. */
  @Column({ name: 'token_hash', type: 'text' }) tokenHash: string;
  @Column({ name: 'token_hint', type: 'varchar', length: 16 }) tokenHint: string;
  @Column({ name: 'created_at', type: 'timestamptz', default: () => 'now()' }) createdAt: Date;
  @Column({ name: 'expires_at', type: 'timestamptz', nullable: true }) expiresAt: Date | null;
  @Column({ name: 'last_used_at', type: 'timestamptz', nullable: true }) lastUsedAt: Date | null;
  @Column({ name: 'revoked_at', type: 'timestamptz', nullable: true }) revokedAt: Date | null;
  @Column({ name: 'created_by_type', type: 'varchar', length: 16 }) createdByType: string;
  @Column({ name: 'created_by_id', type: 'text', nullable: true }) createdById: string | null;
  @Column({ name: 'created_by_name', type: 'text', nullable: true }) createdByName: string | null;
}

@Entity({ name: 'role_bindings' })
export class RoleBindingEntity {
  @PrimaryGeneratedColumn('uuid') id: string;
  @Column({ name: 'subject_type', type: 'varchar', length: 16 }) subjectType: BindingSubjectType;
  /** The user's `sub`, the group name, or the service account's id. */
  @Column({ type: 'text' }) subject: string;
  @Column({ name: 'service_account_id', type: 'uuid', nullable: true }) serviceAccountId: string | null;
  @Column({ type: 'varchar', length: 16 }) role: Role;
  /** null: every registry. */
  @Column({ type: 'varchar', length: 63, nullable: true }) registry: string | null;
  /** A picomatch glob of repository names; null: the whole registry. */
  @Column({ type: 'varchar', length: 255, nullable: true }) repository: string | null;
  @Column({ type: 'text', nullable: true }) description: string | null;
  @Column({ name: 'created_at', type: 'timestamptz', default: () => 'now()' }) createdAt: Date;
  @Column({ name: 'updated_at', type: 'timestamptz', default: () => 'now()' }) updatedAt: Date;
  @Column({ name: 'created_by_type', type: 'varchar', length: 16 }) createdByType: string;
  @Column({ name: 'created_by_id', type: 'text', nullable: true }) createdById: string | null;
  @Column({ name: 'created_by_name', type: 'text', nullable: true }) createdByName: string | null;
}
