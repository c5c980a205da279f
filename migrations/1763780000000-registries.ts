import { MigrationInterface, QueryRunner } from 'typeorm';

export class Registries1763780000000 implements MigrationInterface {
  name = 'Registries1763780000000';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`
      CREATE TABLE registries (
        id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
        name varchar(63) NOT NULL UNIQUE CHECK (name ~ '^[a-z0-9]([a-z0-9-]*[a-z0-9])?$'),
        url text NOT NULL,
        description text,
        auth_type varchar(16) NOT NULL DEFAULT 'none' CHECK (auth_type IN ('none', 'basic', 'bearer')),
        username text,
        password_sealed text,
        tls_ca_cert text,
        tls_insecure boolean NOT NULL DEFAULT false,
        source varchar(8) NOT NULL DEFAULT 'api' CHECK (source IN ('api', 'file')),
        probe jsonb,
        created_at timestamptz NOT NULL DEFAULT now(),
        updated_at timestamptz NOT NULL DEFAULT now()
      )`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query('DROP TABLE registries');
  }
}
