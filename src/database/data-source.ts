import { DataSource, DataSourceOptions } from 'typeorm';
import { Registries1763780000000 } from '../../migrations/1763780000000-registries.js';
import { AuditEvents1795327074457 } from '../../migrations/1795327074457-audit-events.js';
import { RegistrySettings1795400000000 } from '../../migrations/1795400000000-registry-settings.js';
import { Deletions1795400000100 } from '../../migrations/1795400000100-deletions.js';
import { Auth1795400000200 } from '../../migrations/1795400000200-auth.js';
import { GarbageCollection1795400000300 } from '../../migrations/1795400000300-gc.js';
import { Webhooks1795400000400 } from '../../migrations/1795400000400-webhooks.js';
import { AuditConsole1795400000500 } from '../../migrations/1795400000500-audit-console.js';
import { GcVerification1795400000600 } from '../../migrations/1795400000600-gc-verification.js';
import { RegistryEventsSeenAge1795400000700 } from '../../migrations/1795400000700-registry-events-seen-age.js';
import { GcOutputRetention1795400000800 } from '../../migrations/1795400000800-gc-output-retention.js';
import { GcOutputLz41795400000900 } from '../../migrations/1795400000900-gc-output-lz4.js';
import { GcErrorDetails1795400001000 } from '../../migrations/1795400001000-gc-error-details.js';
import { AuditEventEntity } from '../audit/audit.entity.js';
import { RoleBindingEntity, ServiceAccountEntity, ServiceAccountTokenEntity } from '../auth/auth.entity.js';
import { DeletionItemEntity, DeletionRequestEntity } from '../deletions/deletion.entity.js';
import { GcRunEntity, GcSettingsEntity } from '../gc/gc.entity.js';
import { RegistryEntity } from '../registries/registry.entity.js';
import {
  WebhookAttemptEntity,
  WebhookDeliveryEntity,
  WebhookSubscriptionEntity,
} from '../webhooks/webhook.entity.js';

/** Entities and migrations as class lists (no globs) so sources under test and `dist` agree. */
export const entities = [
  RegistryEntity,
  AuditEventEntity,
  DeletionRequestEntity,
  DeletionItemEntity,
  ServiceAccountEntity,
  ServiceAccountTokenEntity,
  RoleBindingEntity,
  GcSettingsEntity,
  GcRunEntity,
  WebhookSubscriptionEntity,
  WebhookDeliveryEntity,
  WebhookAttemptEntity,
];
export const migrations = [
  Registries1763780000000,
  AuditEvents1795327074457,
  RegistrySettings1795400000000,
  Deletions1795400000100,
  Auth1795400000200,
  GarbageCollection1795400000300,
  Webhooks1795400000400,
  AuditConsole1795400000500,
  GcVerification1795400000600,
  RegistryEventsSeenAge1795400000700,
  GcOutputRetention1795400000800,
  GcOutputLz41795400000900,
  GcErrorDetails1795400001000,
];

/**
 * `poolMin` connections stay open however long the process is idle (pg's pool closes the others after
 * 10 s): the first request after a quiet spell does not wait for a connection to be set up.
 */
export function dataSourceOptions(url: string, poolSize = 10, poolMin = 0): DataSourceOptions {
  return {
    type: 'postgres',
    url,
    entities,
    migrations,
    synchronize: false,
    migrationsTableName: 'migrations',
    extra: { max: poolSize, min: Math.min(poolMin, poolSize) },
  };
}

export function createDataSource(url: string, poolSize?: number): DataSource {
  return new DataSource(dataSourceOptions(url, poolSize));
}
