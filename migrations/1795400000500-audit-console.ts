import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * The audit console: indexes for the filtered, paged audit and deletion queries and the reclaimed-space
 * report, and NOTIFY triggers that tell every API replica when a deletion request or a GC run changed,
 * whichever worker process changed it (GraphQL subscriptions stream from them).
 */
export class AuditConsole1795400000500 implements MigrationInterface {
  name = 'AuditConsole1795400000500';

  async up(q: QueryRunner): Promise<void> {
    // Audit lists are keyset-paged on seq; each filter gets an index that ends in seq, so a page is one
    // index range read whichever way it is sorted (see README, "Query speed").
    await q.query('CREATE INDEX audit_events_registry_seq_idx ON audit_events (registry, seq)');
    // Byte order (COLLATE "C"), so a glob's literal prefix (team-a/**) and an action prefix (deletion.*)
    // are index ranges whatever the database's collation; equality uses them as well.
    await q.query('DROP INDEX audit_events_repository_idx');
    await q.query(
      'CREATE INDEX audit_events_repository_idx ON audit_events (registry, repository COLLATE "C", seq)',
    );
    await q.query('DROP INDEX audit_events_action_idx');
    await q.query('CREATE INDEX audit_events_action_idx ON audit_events (action COLLATE "C", seq)');
    await q.query('CREATE INDEX audit_events_outcome_seq_idx ON audit_events (outcome, seq)');
    // action and outcome go together (deletion.item.failed is always a failure): without this the planner
    // multiplies their selectivities, expects a handful of rows, and reads thousands through a bitmap
    // instead of the first page of the (action, seq) index.
    await q.query(
      'CREATE STATISTICS audit_events_action_outcome_stats (dependencies, mcv) ON action, outcome FROM audit_events',
    );
    // Time ranges become seq ranges (occurred_at never decreases along the chain).
    await q.query('CREATE INDEX audit_events_occurred_seq_idx ON audit_events (occurred_at, seq)');
    await q.query('DROP INDEX audit_events_occurred_at_idx');

    // Reclaimed space: the manifests deleted per registry and day/week.
    // Covering, so the report reads a year of items from the index alone.
    await q.query(`
      CREATE INDEX deletion_items_succeeded_idx ON deletion_items (finished_at)
      INCLUDE (request_id, kind, already_gone) WHERE status = 'succeeded'`);
    await q.query(`
      CREATE INDEX gc_runs_finished_idx ON gc_runs (finished_at)
      WHERE status = 'succeeded' AND NOT dry_run`);

    // Payload: the row id. NOTIFY is sent at commit, once per distinct payload per transaction, so a
    // worker settling a chunk of 50 items notifies once.
    await q.query(`
      CREATE FUNCTION notify_row_changed() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN
        PERFORM pg_notify(TG_ARGV[0], NEW.id::text);
        RETURN NULL;
      END
      $$`);
    await q.query(`
      CREATE TRIGGER deletion_requests_notify AFTER UPDATE ON deletion_requests
      FOR EACH ROW EXECUTE FUNCTION notify_row_changed('rg_deletion_changed')`);
    await q.query(`
      CREATE TRIGGER gc_runs_notify AFTER INSERT OR UPDATE ON gc_runs
      FOR EACH ROW EXECUTE FUNCTION notify_row_changed('rg_gc_run_changed')`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query('DROP TRIGGER gc_runs_notify ON gc_runs');
    await q.query('DROP TRIGGER deletion_requests_notify ON deletion_requests');
    await q.query('DROP FUNCTION notify_row_changed()');
    await q.query('DROP INDEX gc_runs_finished_idx');
    await q.query('DROP INDEX deletion_items_succeeded_idx');
    await q.query('CREATE INDEX audit_events_occurred_at_idx ON audit_events (occurred_at)');
    await q.query('DROP INDEX audit_events_occurred_seq_idx');
    await q.query('DROP STATISTICS audit_events_action_outcome_stats');
    await q.query('DROP INDEX audit_events_outcome_seq_idx');
    await q.query('DROP INDEX audit_events_action_idx');
    await q.query('CREATE INDEX audit_events_action_idx ON audit_events (action, seq)');
    await q.query('DROP INDEX audit_events_repository_idx');
    await q.query('CREATE INDEX audit_events_repository_idx ON audit_events (registry, repository, seq)');
    await q.query('DROP INDEX audit_events_registry_seq_idx');
  }
}
