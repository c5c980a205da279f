import { MigrationInterface, QueryRunner } from 'typeorm';

export class GarbageCollection1795400000300 implements MigrationInterface {
  name = 'GarbageCollection1795400000300';

  async up(q: QueryRunner): Promise<void> {
    // One row per registry that can be collected. Secrets (ssh keys, kubeconfig, TLS keys) are sealed.
    await q.query(`
      CREATE TABLE gc_settings (
        registry_id uuid PRIMARY KEY REFERENCES registries (id) ON DELETE CASCADE,
        executor jsonb NOT NULL,
        executor_secrets_sealed text,
        fence varchar(8) NOT NULL DEFAULT 'gateway' CHECK (fence IN ('gateway', 'readonly', 'stop', 'none')),
        cache jsonb NOT NULL DEFAULT '{"type":"inmemory"}',
        cache_secrets_sealed text,
        grace_seconds integer NOT NULL DEFAULT 3600 CHECK (grace_seconds >= 0),
        max_grace_wait_seconds integer NOT NULL DEFAULT 3600 CHECK (max_grace_wait_seconds >= 0),
        schedule text,
        schedule_timezone text,
        schedule_delete_untagged boolean NOT NULL DEFAULT false,
        after_deletions boolean NOT NULL DEFAULT false,
        after_deletions_delay_seconds integer NOT NULL DEFAULT 300 CHECK (after_deletions_delay_seconds >= 0),
        source varchar(8) NOT NULL DEFAULT 'api',
        created_at timestamptz NOT NULL DEFAULT now(),
        updated_at timestamptz NOT NULL DEFAULT now()
      )`);
    // Kept by registry name and id without a foreign key, like deletions: history outlives the registry.
    await q.query(`
      CREATE TABLE gc_runs (
        id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
        registry text NOT NULL,
        registry_id uuid NOT NULL,
        trigger varchar(16) NOT NULL CHECK (trigger IN ('manual', 'schedule', 'after_deletions')),
        actor_type varchar(16) NOT NULL,
        actor_id text,
        actor_name text,
        source_ip inet,
        request_id text,
        dry_run boolean NOT NULL,
        delete_untagged boolean NOT NULL,
        fence varchar(8) NOT NULL CHECK (fence IN ('gateway', 'readonly', 'stop', 'none')),
        unfenced_allowed boolean NOT NULL DEFAULT false,
        executor varchar(16) NOT NULL,
        status varchar(16) NOT NULL CHECK (status IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')),
        cancel_requested boolean NOT NULL DEFAULT false,
        phase varchar(24) NOT NULL,
        attempts integer NOT NULL DEFAULT 0,
        blobs_marked integer,
        blobs_deleted integer,
        manifests_deleted integer,
        bytes_before bigint,
        bytes_after bigint,
        bytes_freed bigint,
        bytes_estimated bigint,
        exit_code integer,
        output text,
        output_truncated boolean NOT NULL DEFAULT false,
        verification jsonb,
        phase_ms jsonb NOT NULL DEFAULT '{}',
        error_code text,
        error_message text,
        created_at timestamptz NOT NULL DEFAULT now(),
        updated_at timestamptz NOT NULL DEFAULT now(),
        enqueued_at timestamptz,
        started_at timestamptz,
        heartbeat_at timestamptz,
        finished_at timestamptz
      )`);
    // At most one run per registry that is not finished, whichever replica asked: the database decides.
    await q.query(`
      CREATE UNIQUE INDEX gc_runs_one_active_idx ON gc_runs (registry_id)
      WHERE status IN ('queued', 'running')`);
    await q.query('CREATE INDEX gc_runs_registry_idx ON gc_runs (registry, created_at DESC, id DESC)');
    await q.query('CREATE INDEX gc_runs_created_idx ON gc_runs (created_at DESC, id DESC)');
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query('DROP TABLE gc_runs');
    await q.query('DROP TABLE gc_settings');
  }
}
