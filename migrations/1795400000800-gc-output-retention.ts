import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * A finished GC run's output (up to 1 MiB) is dropped after GC_OUTPUT_RETENTION_DAYS; the run, its counts
 * and its audit events stay. `output_removed_at` says when, so a reader knows why there is none.
 */
export class GcOutputRetention1795400000800 implements MigrationInterface {
  name = 'GcOutputRetention1795400000800';

  async up(q: QueryRunner): Promise<void> {
    await q.query('ALTER TABLE gc_runs ADD COLUMN output_removed_at timestamptz NULL');
    await q.query(
      'CREATE INDEX gc_runs_output_age_idx ON gc_runs (finished_at) WHERE output IS NOT NULL AND finished_at IS NOT NULL',
    );
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query('DROP INDEX gc_runs_output_age_idx');
    await q.query('ALTER TABLE gc_runs DROP COLUMN output_removed_at');
  }
}
