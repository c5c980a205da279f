import { DataSource, DataSourceOptions } from 'typeorm';
import { Registries1763780000000 } from '../../migrations/1763780000000-registries.js';
import { AuditEvents1795327074457 } from '../../migrations/1795327074457-audit-events.js';
import { RegistrySettings1795400000000 } from '../../migrations/1795400000000-registry-settings.js';
import { Deletions1795400000100 } from '../../migrations/1795400000100-deletions.js';
import { AuditEventEntity } from '../audit/audit.entity.js';
import { DeletionItemEntity, DeletionRequestEntity } from '../deletions/deletion.entity.js';
import { RegistryEntity } from '../registries/registry.entity.js';

/** Entities and migrations as class lists (no globs) so sources under test and `dist` agree. */
export const entities = [RegistryEntity, AuditEventEntity, DeletionRequestEntity, DeletionItemEntity];
export const migrations = [
  Registries1763780000000,
  AuditEvents1795327074457,
  RegistrySettings1795400000000,
  Deletions1795400000100,
];

export function dataSourceOptions(url: string, poolSize = 10): DataSourceOptions {
  return {
    type: 'postgres',
    url,
    entities,
    migrations,
    synchronize: false,
    migrationsTableName: 'migrations',
    extra: { max: poolSize },
  };
}

export function createDataSource(url: string, poolSize?: number): DataSource {
  return new DataSource(dataSourceOptions(url, poolSize));
}
