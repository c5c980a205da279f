import { Injectable, OnModuleDestroy } from '@nestjs/common';
import { AppConfig } from '../config/app-config.js';
import { SecretBox } from '../common/secret-box.js';
import { RegistryClient } from './client/registry-client.js';
import { RegistryEntity } from './registry.entity.js';

/** One client (one keep-alive pool, one token cache) per registry version; replaced when the row changes. */
@Injectable()
export class RegistryClients implements OnModuleDestroy {
  private readonly clients = new Map<string, { stamp: number; client: RegistryClient }>();

  constructor(
    private readonly config: AppConfig,
    private readonly secrets: SecretBox,
  ) {}

  for(registry: RegistryEntity): RegistryClient {
    const stamp = registry.updatedAt.getTime();
    const cached = this.clients.get(registry.id);
    if (cached && cached.stamp === stamp) return cached.client;
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
      { timeoutMs: this.config.upstream.timeoutMs, connections: this.config.upstream.connections },
    );
    this.clients.set(registry.id, { stamp, client });
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
