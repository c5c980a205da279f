import { DataSource, Migration } from 'typeorm';

// Same number in every process: API replicas and workers starting together take turns.
const MIGRATION_LOCK = 0x7267_6d69_6772;

/** Runs pending migrations under a Postgres advisory lock, each in its own transaction. */
export async function runMigrationsLocked(ds: DataSource): Promise<Migration[]> {
  const runner = ds.createQueryRunner();
  await runner.connect();
  try {
    await runner.query('SELECT pg_advisory_lock($1)', [MIGRATION_LOCK]);
    return await ds.runMigrations({ transaction: 'each' });
  } finally {
    await runner.query('SELECT pg_advisory_unlock($1)', [MIGRATION_LOCK]).catch(() => undefined);
    await runner.release();
  }
}
