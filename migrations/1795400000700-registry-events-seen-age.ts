import { MigrationInterface, QueryRunner } from 'typeorm';

/** Registry notification ids are forgotten after REGISTRY_EVENTS_DEDUP_DAYS: the sweep deletes by age. */
export class RegistryEventsSeenAge1795400000700 implements MigrationInterface {
  name = 'RegistryEventsSeenAge1795400000700';

  async up(q: QueryRunner): Promise<void> {
    await q.query('CREATE INDEX registry_events_seen_received_at ON registry_events_seen (received_at)');
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query('DROP INDEX registry_events_seen_received_at');
  }
}
