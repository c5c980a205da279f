import { MigrationInterface, QueryRunner } from 'typeorm';

export class AuditEvents1795327074457 implements MigrationInterface {
  name = 'AuditEvents1795327074457';

  async up(q: QueryRunner): Promise<void> {
    // No foreign keys: the trail must outlive what it mentions, and a cascade would need an UPDATE or
    // DELETE here. No defaults on occurred_at or hash: the writer hashes exactly the values it stores.
    await q.query(`
      CREATE TABLE audit_events (
        id uuid PRIMARY KEY,
        seq bigint NOT NULL UNIQUE CHECK (seq > 0),
        occurred_at timestamptz NOT NULL,
        action varchar(100) NOT NULL CHECK (action ~ '^[a-z][a-z0-9_-]*(\\.[a-z][a-z0-9_-]*)+$'),
        actor_type varchar(16) NOT NULL CHECK (actor_type IN ('user', 'service', 'system', 'anonymous')),
        actor_id text,
        actor_name text,
        source_ip inet,
        request_id text,
        registry text,
        repository text,
        tags text[] NOT NULL DEFAULT '{}' CHECK (array_position(tags, NULL) IS NULL),
        digest text,
        outcome varchar(16) NOT NULL CHECK (outcome IN ('success', 'failure', 'pending', 'info')),
        upstream_status integer CHECK (upstream_status BETWEEN 100 AND 599),
        subject_type text,
        subject_id text,
        details jsonb CHECK (jsonb_typeof(details) = 'object'),
        prev_hash text CHECK ((seq = 1) = (prev_hash IS NULL)),
        hash text NOT NULL CHECK (hash ~ '^[0-9a-f]{64}$')
      )`);
    await q.query('CREATE INDEX audit_events_occurred_at_idx ON audit_events (occurred_at)');
    await q.query('CREATE INDEX audit_events_repository_idx ON audit_events (registry, repository, seq)');
    await q.query('CREATE INDEX audit_events_actor_idx ON audit_events (actor_id, seq)');
    await q.query('CREATE INDEX audit_events_action_idx ON audit_events (action, seq)');
    await q.query('CREATE INDEX audit_events_subject_idx ON audit_events (subject_type, subject_id, seq)');

    // Statement-level, so even an UPDATE or DELETE that matches no row is refused.
    await q.query(`
      CREATE FUNCTION audit_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN
        RAISE EXCEPTION 'audit_events is append-only: % is not allowed', TG_OP
          USING ERRCODE = 'insufficient_privilege';
      END
      $$`);
    await q.query(`
      CREATE TRIGGER audit_events_no_update_delete BEFORE UPDATE OR DELETE ON audit_events
      FOR EACH STATEMENT EXECUTE FUNCTION audit_events_append_only()`);
    await q.query(`
      CREATE TRIGGER audit_events_no_truncate BEFORE TRUNCATE ON audit_events
      FOR EACH STATEMENT EXECUTE FUNCTION audit_events_append_only()`);

    // The writer serializes appends with an advisory lock; this makes a writer that forgets the lock,
    // or links to the wrong row, fail instead of forking the chain.
    await q.query(`
      CREATE FUNCTION audit_events_extend_chain() RETURNS trigger LANGUAGE plpgsql AS $$
      DECLARE
        head record;
      BEGIN
        SELECT seq, hash INTO head FROM audit_events ORDER BY seq DESC LIMIT 1;
        IF NEW.seq IS DISTINCT FROM COALESCE(head.seq, 0) + 1 OR NEW.prev_hash IS DISTINCT FROM head.hash THEN
          RAISE EXCEPTION 'audit_events row % does not extend the chain (head is %)', NEW.seq, COALESCE(head.seq, 0)
            USING ERRCODE = 'integrity_constraint_violation';
        END IF;
        RETURN NEW;
      END
      $$`);
    await q.query(`
      CREATE TRIGGER audit_events_extend_chain BEFORE INSERT ON audit_events
      FOR EACH ROW EXECUTE FUNCTION audit_events_extend_chain()`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query('DROP TABLE audit_events');
    await q.query('DROP FUNCTION audit_events_extend_chain()');
    await q.query('DROP FUNCTION audit_events_append_only()');
  }
}
