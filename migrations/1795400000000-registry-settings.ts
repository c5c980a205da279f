import { MigrationInterface, QueryRunner } from 'typeorm';

export class RegistrySettings1795400000000 implements MigrationInterface {
  name = 'RegistrySettings1795400000000';

  async up(q: QueryRunner): Promise<void> {
    // NULL rate: unlimited. The token is only ever stored as its sha256, as hex.
    await q.query(`
      ALTER TABLE registries
        ADD COLUMN delete_concurrency integer NOT NULL DEFAULT 8
          CHECK (delete_concurrency BETWEEN 1 AND 256),
        ADD COLUMN delete_rate_per_second integer NULL CHECK (delete_rate_per_second > 0),
        ADD COLUMN events_token_hash text NULL CHECK (events_token_hash ~ '^[0-9a-f]{64}$')`);
    // Distribution retries a notification until it gets a 2xx, so one event can arrive many times.
    await q.query(`
      CREATE TABLE registry_events_seen (
        registry text NOT NULL,
        event_id text NOT NULL,
        received_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (registry, event_id)
      )`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query('DROP TABLE registry_events_seen');
    await q.query(`
      ALTER TABLE registries
        DROP COLUMN events_token_hash,
        DROP COLUMN delete_rate_per_second,
        DROP COLUMN delete_concurrency`);
  }
}
