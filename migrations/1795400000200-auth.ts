import { MigrationInterface, QueryRunner } from 'typeorm';

export class Auth1795400000200 implements MigrationInterface {
  name = 'Auth1795400000200';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`
      CREATE TABLE service_accounts (
        id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
        name varchar(63) NOT NULL UNIQUE CHECK (name ~ '^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$'),
        description text,
        created_at timestamptz NOT NULL DEFAULT now(),
        created_by_type varchar(16) NOT NULL,
        created_by_id text,
        created_by_name text
      )`);
    // Only the token's sha256 is stored (API tokens carry 256 random bits, so a fast hash is enough and
    // lets a request find its token by index); the hint is the prefix shown in lists.
    await q.query(`
      CREATE TABLE service_account_tokens (
        id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
        service_account_id uuid NOT NULL REFERENCES service_accounts (id) ON DELETE CASCADE,
        name varchar(100),
        token_hash text NOT NULL UNIQUE CHECK (token_hash ~ '^[0-9a-f]{64}$'),
        token_hint varchar(16) NOT NULL,
        created_at timestamptz NOT NULL DEFAULT now(),
        expires_at timestamptz,
        last_used_at timestamptz,
        revoked_at timestamptz,
        created_by_type varchar(16) NOT NULL,
        created_by_id text,
        created_by_name text,
        CHECK (expires_at IS NULL OR expires_at > created_at)
      )`);
    await q.query(
      'CREATE INDEX service_account_tokens_account_idx ON service_account_tokens (service_account_id, created_at)',
    );
    // Registries are bound by name, like the audit trail names them: a binding may be made before the
    // registry is registered (registries file) and survives re-registration under the same name.
    await q.query(`
      CREATE TABLE role_bindings (
        id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
        subject_type varchar(16) NOT NULL CHECK (subject_type IN ('user', 'group', 'service_account')),
        subject text NOT NULL CHECK (length(subject) BETWEEN 1 AND 255),
        service_account_id uuid REFERENCES service_accounts (id) ON DELETE CASCADE,
        role varchar(16) NOT NULL CHECK (role IN ('admin', 'operator', 'deleter', 'auditor', 'viewer')),
        registry varchar(63),
        repository varchar(255),
        description text,
        created_at timestamptz NOT NULL DEFAULT now(),
        updated_at timestamptz NOT NULL DEFAULT now(),
        created_by_type varchar(16) NOT NULL,
        created_by_id text,
        created_by_name text,
        CHECK (repository IS NULL OR registry IS NOT NULL),
        CHECK ((subject_type = 'service_account') = (service_account_id IS NOT NULL)),
        CHECK (service_account_id IS NULL OR subject = service_account_id::text)
      )`);
    await q.query(`
      CREATE UNIQUE INDEX role_bindings_unique_idx ON role_bindings
        (subject_type, subject, role, coalesce(registry, ''), coalesce(repository, ''))`);
    await q.query('CREATE INDEX role_bindings_subject_idx ON role_bindings (subject_type, subject)');
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query('DROP TABLE role_bindings');
    await q.query('DROP TABLE service_account_tokens');
    await q.query('DROP TABLE service_accounts');
  }
}
