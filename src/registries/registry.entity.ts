import { Column, CreateDateColumn, Entity, PrimaryGeneratedColumn, UpdateDateColumn } from 'typeorm';

export type RegistryAuthType = 'none' | 'basic' | 'bearer';
export type RegistrySource = 'api' | 'file';

/** The column default; also what the registries file resets to when it says nothing. */
export const DEFAULT_DELETE_CONCURRENCY = 8;
export const MAX_DELETE_CONCURRENCY = 256;

/** What the last probe learned about a registry; stored so deletes can fail fast without asking again. */
export interface RegistryProbe {
  checkedAt: string;
  reachable: boolean;
  latencyMs: number | null;
  apiVersion: string | null;
  auth: 'ok' | 'failed' | 'not-required' | 'unknown';
  /** `enabled`, `disabled` (storage.delete off), `read-only` (maintenance mode), `pull-through` (proxy cache), or unknown. */
  deletes: 'enabled' | 'disabled' | 'read-only' | 'pull-through' | 'unknown';
  /** Major distribution version as learned from behaviour (2.x answers a DELETE by tag with 400, 3.x does not). */
  distributionVersion: string | null;
  error: { code: string; message: string } | null;
}

@Entity({ name: 'registries' })
export class RegistryEntity {
  @PrimaryGeneratedColumn('uuid')
  id: string;

  @Column({ type: 'varchar', length: 63, unique: true })
  name: string;

  @Column({ type: 'text' })
  url: string;

  @Column({ type: 'text', nullable: true })
  description: string | null;

  @Column({ name: 'auth_type', type: 'varchar', length: 16, default: 'none' })
  authType: RegistryAuthType;

  @Column({ type: 'text', nullable: true })
  username: string | null;

  /** AES-256-GCM sealed by SecretBox; never returned. */
  @Column({ name: 'password_sealed', type: 'text', nullable: true })
  passwordSealed: string | null;

  @Column({ name: 'tls_ca_cert', type: 'text', nullable: true })
  tlsCaCert: string | null;

  @Column({ name: 'tls_insecure', type: 'boolean', default: false })
  tlsInsecure: boolean;

  @Column({ type: 'varchar', length: 8, default: 'api' })
  source: RegistrySource;

  @Column({ type: 'jsonb', nullable: true })
  probe: RegistryProbe | null;

  /** How many deletes the gateway sends this registry at once. */
  @Column({ name: 'delete_concurrency', type: 'integer', default: DEFAULT_DELETE_CONCURRENCY })
  deleteConcurrency: number;

  /** At most this many deletes per second; null is unlimited. */
  @Column({ name: 'delete_rate_per_second', type: 'integer', nullable: true })
  deleteRatePerSecond: number | null;

  /** sha256 (hex) of the bearer token the registry's notifications must carry; never returned. */
  @Column({ name: 'events_token_hash', type: 'text', nullable: true })
  eventsTokenHash: string | null;

  @CreateDateColumn({ name: 'created_at', type: 'timestamptz' })
  createdAt: Date;

  @UpdateDateColumn({ name: 'updated_at', type: 'timestamptz' })
  updatedAt: Date;
}
