import { MigrationInterface, QueryRunner } from 'typeorm';

export class Webhooks1795400000400 implements MigrationInterface {
  name = 'Webhooks1795400000400';

  async up(q: QueryRunner): Promise<void> {
    // Secrets are sealed (SecretBox); the previous one is kept for a grace period after a rotation, so
    // receivers can switch keys without dropping a delivery.
    await q.query(`
      CREATE TABLE webhook_subscriptions (
        id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
        url text NOT NULL CHECK (length(url) BETWEEN 1 AND 2048),
        description text,
        event_types text[] NOT NULL CHECK (cardinality(event_types) BETWEEN 1 AND 50),
        registry varchar(63),
        repository varchar(255),
        secret_sealed text NOT NULL,
        previous_secret_sealed text,
        previous_secret_expires_at timestamptz,
        secret_rotated_at timestamptz,
        active boolean NOT NULL DEFAULT true,
        deactivated_reason text,
        created_at timestamptz NOT NULL DEFAULT now(),
        updated_at timestamptz NOT NULL DEFAULT now(),
        created_by_type varchar(16) NOT NULL,
        created_by_id text,
        created_by_name text,
        CHECK ((previous_secret_sealed IS NULL) = (previous_secret_expires_at IS NULL))
      )`);
    // The outbox: rows are written in the transaction of the change they report (see
    // webhook-outbox.listener.ts). `seq` is taken under the audit trail's append lock, so it follows
    // commit order and a subscription's deliveries go out in the order their changes committed.
    await q.query(`
      CREATE TABLE webhook_deliveries (
        id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
        seq bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
        subscription_id uuid NOT NULL REFERENCES webhook_subscriptions (id) ON DELETE CASCADE,
        event_type text NOT NULL,
        dedupe_key text NOT NULL,
        occurred_at timestamptz NOT NULL,
        data jsonb NOT NULL,
        registry text,
        status varchar(16) NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'succeeded', 'dead')),
        attempts integer NOT NULL DEFAULT 0,
        failures integer NOT NULL DEFAULT 0,
        redeliveries integer NOT NULL DEFAULT 0,
        next_attempt_at timestamptz NOT NULL DEFAULT now(),
        last_attempt_at timestamptz,
        last_status_code integer,
        last_error_code text,
        last_error_message text,
        delivered_at timestamptz,
        created_at timestamptz NOT NULL DEFAULT now(),
        updated_at timestamptz NOT NULL DEFAULT now()
      )`);
    // One delivery per event and subscription, even if the trail records an ending twice.
    await q.query(
      'CREATE UNIQUE INDEX webhook_deliveries_dedupe_idx ON webhook_deliveries (subscription_id, dedupe_key)',
    );
    await q.query(
      `CREATE INDEX webhook_deliveries_pending_idx ON webhook_deliveries (subscription_id, seq) WHERE status = 'pending'`,
    );
    await q.query(
      'CREATE INDEX webhook_deliveries_subscription_idx ON webhook_deliveries (subscription_id, seq DESC)',
    );
    await q.query(
      `CREATE INDEX webhook_deliveries_finished_idx ON webhook_deliveries (created_at) WHERE status <> 'pending'`,
    );
    await q.query(`
      CREATE TABLE webhook_delivery_attempts (
        id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        delivery_id uuid NOT NULL REFERENCES webhook_deliveries (id) ON DELETE CASCADE,
        attempt integer NOT NULL,
        redelivery integer NOT NULL DEFAULT 0,
        started_at timestamptz NOT NULL,
        duration_ms integer NOT NULL,
        status_code integer,
        response_body text,
        response_truncated boolean NOT NULL DEFAULT false,
        error_code text,
        error_message text,
        succeeded boolean NOT NULL,
        UNIQUE (delivery_id, attempt)
      )`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query('DROP TABLE webhook_delivery_attempts');
    await q.query('DROP TABLE webhook_deliveries');
    await q.query('DROP TABLE webhook_subscriptions');
  }
}
