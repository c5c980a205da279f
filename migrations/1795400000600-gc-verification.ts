import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * GC verification mode per registry: `sample` (the storage is checked whole through the executor, the
 * registry's API for a random sample) or `full` (the API for every tag and blob as well).
 */
export class GcVerification1795400000600 implements MigrationInterface {
  name = 'GcVerification1795400000600';

  async up(q: QueryRunner): Promise<void> {
    await q.query(
      `ALTER TABLE gc_settings ADD COLUMN verification varchar(8) NOT NULL DEFAULT 'sample'
         CHECK (verification IN ('sample', 'full'))`,
    );
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query('ALTER TABLE gc_settings DROP COLUMN verification');
  }
}
