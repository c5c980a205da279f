import { Injectable, OnModuleDestroy } from '@nestjs/common';
import { AppConfig } from '../config/app-config.js';
import { histogram } from '../common/metrics.js';
import { SecretBox } from '../common/secret-box.js';
import { RegistryClient } from './client/registry-client.js';
import { RegistryEntity } from './registry.entity.js';

/**
 * What the client is built from. Compared instead of `updated_at`, so changing a registry's description
 * or delete settings keeps its keep-alive pool and token cache.
 */
export function connectionOf(e: RegistryEntity): unknown[] {
  return [e.name, e.url, e.authType, e.username, e.passwordSealed, e.tlsCaCert, e.tlsInsecure];
}

function sameConnection(a: unknown[], b: unknown[]): boolean {
  return a.length === b.length && a.every((v, i) => v === b[i]);
}

/** One client (one keep-alive pool, one token cache) per registry connection; replaced when that changes. */
@Injectable()
export class RegistryClients implements OnModuleDestroy {
  private readonly clients = new Map<string, { connection: unknown[]; client: RegistryClient }>();
  private readonly upstream = histogram(
    'gateway_upstream_request_duration_seconds',
    'Requests the gateway made to registries, by registry, method and status (0: network failure).',
    ['registry', 'method', 'status'],
    [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
  );

  constructor(
    private readonly config: AppConfig,
    private readonly secrets: SecretBox,
  ) {}

  for(registry: RegistryEntity): RegistryClient {
    const connection = connectionOf(registry);
    const cached = this.clients.get(registry.id);
    if (cached && sameConnection(cached.connection, connection)) return cached.client;
    if (cached) void cached.client.close();
    const client = new RegistryClient(
      {
        name: registry.name,
        url: registry.url,
        auth: {
          type: registry.authType,
          username: registry.username,
          password: registry.passwordSealed ? this.secrets.open(registry.passwordSealed) : null,
        },
        tls: { ca: registry.tlsCaCert, insecure: registry.tlsInsecure },
      },
      {
        timeoutMs: this.config.upstream.timeoutMs,
        connections: this.config.upstream.connections,
        observe: (method, status, seconds) =>
          this.upstream.observe({ registry: registry.name, method, status: String(status) }, seconds),
      },
    );
    this.clients.set(registry.id, { connection, client });
    return client;
  }

  async forget(registryId: string): Promise<void> {
    const cached = this.clients.get(registryId);
    this.clients.delete(registryId);
    await cached?.client.close();
  }

  async onModuleDestroy() {
    await Promise.all([...this.clients.values()].map((c) => c.client.close()));
    this.clients.clear();
  }
}
