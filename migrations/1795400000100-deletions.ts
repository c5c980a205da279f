import { MigrationInterface, QueryRunner } from 'typeorm';

export class Deletions1795400000100 implements MigrationInterface {
  name = 'Deletions1795400000100';

  async up(q: QueryRunner): Promise<void> {
    // The registry is kept by name (and id, without a foreign key): a request and its history must stay
    // readable after the registry is unregistered, like the audit trail that mentions them.
    await q.query(`
      CREATE TABLE deletion_requests (
        id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
        registry text NOT NULL,
        registry_id uuid NOT NULL,
        status varchar(24) NOT NULL CHECK (status IN
          ('planned', 'queued', 'running', 'succeeded', 'partially_failed', 'failed', 'cancelled')),
        dry_run boolean NOT NULL,
        reason text,
        max_deletions integer CHECK (max_deletions > 0),
        actor_type varchar(16) NOT NULL,
        actor_id text,
        actor_name text,
        source_ip inet,
        request_id text,
        item_count integer NOT NULL CHECK (item_count >= 0),
        estimated_bytes bigint NOT NULL DEFAULT 0,
        created_at timestamptz NOT NULL DEFAULT now(),
        updated_at timestamptz NOT NULL DEFAULT now(),
        executed_at timestamptz,
        enqueued_at timestamptz,
        finished_at timestamptz
      )`);
    await q.query(
      'CREATE INDEX deletion_requests_created_idx ON deletion_requests (created_at DESC, id DESC)',
    );
    await q.query(
      'CREATE INDEX deletion_requests_registry_idx ON deletion_requests (registry, created_at DESC)',
    );
    await q.query(
      'CREATE INDEX deletion_requests_actor_idx ON deletion_requests (actor_id, created_at DESC)',
    );
    // The outbox: requests whose jobs may not be in the queue yet.
    await q.query(`
      CREATE INDEX deletion_requests_open_idx ON deletion_requests (created_at)
      WHERE status IN ('queued', 'running')`);

    await q.query(`
      CREATE TABLE deletion_items (
        id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
        request_id uuid NOT NULL REFERENCES deletion_requests (id) ON DELETE CASCADE,
        position integer NOT NULL,
        chunk integer NOT NULL,
        repository text NOT NULL,
        reference text NOT NULL,
        kind varchar(8) NOT NULL CHECK (kind IN ('manifest', 'tag')),
        digest text,
        media_type text,
        tags text[] NOT NULL DEFAULT '{}',
        estimated_bytes bigint NOT NULL DEFAULT 0,
        status varchar(16) NOT NULL CHECK (status IN
          ('planned', 'pending', 'running', 'succeeded', 'failed', 'skipped', 'cancelled')),
        attempts integer NOT NULL DEFAULT 0,
        already_gone boolean,
        method varchar(24),
        upstream_status integer,
        error_code varchar(64),
        error_message text,
        updated_at timestamptz NOT NULL DEFAULT now(),
        finished_at timestamptz,
        UNIQUE (request_id, position)
      )`);
    await q.query('CREATE INDEX deletion_items_chunk_idx ON deletion_items (request_id, chunk)');
    await q.query('CREATE INDEX deletion_items_repository_idx ON deletion_items (repository, request_id)');
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query('DROP TABLE deletion_items');
    await q.query('DROP TABLE deletion_requests');
  }
}
