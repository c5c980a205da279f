import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * A failed GC run keeps its error's details (which manifests --delete-untagged would have taken, the
 * collector's exit code and last output lines, ...), as an API error answers them, instead of only its
 * code and message.
 */
export class GcErrorDetails1795400001000 implements MigrationInterface {
  name = 'GcErrorDetails1795400001000';

  async up(q: QueryRunner): Promise<void> {
    await q.query('ALTER TABLE gc_runs ADD COLUMN error_details jsonb NULL');
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query('ALTER TABLE gc_runs DROP COLUMN error_details');
  }
}
