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

type Connection = Pick<
  RegistryEntity,
  'id' | 'name' | 'url' | 'authType' | 'username' | 'passwordSealed' | 'tlsCaCert' | 'tlsInsecure'
>;

/** One connection of one registry: what `for()` hands out (`handle`) and the client behind it, if open. */
interface Entry {
  readonly registry: Connection;
  readonly connection: unknown[];
  readonly handle: RegistryClient;
  /** Open (or, once retired, closed) client; undefined while closed for idleness, until the next call. */
  client: RegistryClient | undefined;
  /** Calls of the client's methods that have not settled: while any runs, the client is not closed. */
  busy: number;
  /** When a call last started or settled (performance.now()). */
  lastUsed: number;
  /** forget(), a changed connection or shutdown closed it for good: calls fail as on a closed client. */
  retired: boolean;
}

/**
 * One client (one keep-alive pool, one token cache) per registry connection; replaced when that changes.
 *
 * A client no call has used for `upstream.clientIdleMs` is closed: its connections, token cache and
 * decrypted credentials go, and the registry's entry is dropped. That is how every process lets go of a
 * registry that another process removed or changed (forget() closes it at once only in the process that
 * removed it). What `for()` returns is a handle that reaches the registry's current client, opening one
 * when the last was closed for idleness; so a caller that holds it across long awaits (a GC run across
 * its collection, a deletion chunk waiting for delete slots) finds it working, and a call still running
 * (every method, counted until its promise settles) keeps the client open. RegistryClient.close() lets a
 * request in flight finish (undici's Agent.close), so a response body read after the call settled is
 * read whole too.
 */
@Injectable()
export class RegistryClients implements OnModuleDestroy {
  /** The current entry of each registry id, what `for()` answers from. */
  private readonly entries = new Map<string, Entry>();
  /** Entries whose client is open, in `entries` or held only by callers: what the sweep looks at. */
  private readonly opened = new Set<Entry>();
  /**
   * Per registry id, the connection `for()` last saw, or null once forgotten: a handle whose client was
   * closed for idleness (its entry dropped, so retire() could not reach it) and whose connection is no
   * longer this one must not open a client with settings that were replaced or removed.
   */
  private readonly latest = new Map<string, unknown[] | null>();
  private sweeper: NodeJS.Timeout | undefined;
  private destroyed = false;
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
    this.latest.set(registry.id, connection);
    const current = this.entries.get(registry.id);
    if (current && sameConnection(current.connection, connection)) {
      current.lastUsed = performance.now();
      return current.handle;
    }
    // The connection changed: the clients of the old one are closed, as calls through them would be stale.
    void this.retire(registry.id, connection).catch(() => undefined);
    // Dropped for idleness but opened again by a caller that held it: taken back, not opened twice.
    const entry =
      [...this.opened].find(
        (e) => e.registry.id === registry.id && sameConnection(e.connection, connection),
      ) ?? this.entry(registry, connection);
    entry.lastUsed = performance.now();
    this.entries.set(registry.id, entry);
    this.startSweeping();
    return entry.handle;
  }

  /** Closes the registry's clients in this process now (the registry was removed). */
  async forget(registryId: string): Promise<void> {
    this.latest.set(registryId, null);
    await this.retire(registryId);
  }

  async onModuleDestroy() {
    this.destroyed = true;
    this.stopSweeping();
    const all = new Set([...this.entries.values(), ...this.opened]);
    this.entries.clear();
    await Promise.all([...all].map((e) => this.closeForGood(e)));
  }

  private entry(registry: RegistryEntity, connection: unknown[]): Entry {
    const entry: Entry = {
      registry: {
        id: registry.id,
        name: registry.name,
        url: registry.url,
        authType: registry.authType,
        username: registry.username,
        passwordSealed: registry.passwordSealed,
        tlsCaCert: registry.tlsCaCert,
        tlsInsecure: registry.tlsInsecure,
      },
      connection,
      client: undefined,
      busy: 0,
      lastUsed: performance.now(),
      retired: false,
      // Only the prototype, for `instanceof`: every property is read from the entry's current client.
      handle: new Proxy(Object.create(RegistryClient.prototype) as RegistryClient, {
        get: (target, property) => {
          // Asked without a call to make: whether it is a promise (`await`), its name (logs), symbols
          // (inspection). No client is opened, no credential decrypted for that.
          if (property === 'then') return undefined;
          if (property === 'name') return entry.registry.name;
          if (typeof property === 'symbol') return Reflect.get(target, property) as unknown;
          const client = this.open(entry);
          const value: unknown = Reflect.get(client, property, client);
          if (typeof value !== 'function' || property === 'constructor') return value;
          // The method of the client open when it is called, not when it was read.
          return (...args: unknown[]) => this.call(entry, property, args);
        },
      }),
    };
    return entry;
  }

  /** The entry's client, a new one if the last was closed for idleness. */
  private open(entry: Entry): RegistryClient {
    entry.lastUsed = performance.now();
    if (entry.client) return entry.client;
    const latest = this.latest.get(entry.registry.id);
    if (latest === null || (latest && !sameConnection(latest, entry.connection))) entry.retired = true;
    const client = this.build(entry.registry);
    entry.client = client;
    // Retired while closed for idleness: fail as the client closed then would have.
    if (entry.retired || this.destroyed) void client.close().catch(() => undefined);
    else {
      this.opened.add(entry);
      this.startSweeping();
    }
    return client;
  }

  /** Calls a method of the entry's client, counted as use until it returns or its promise settles. */
  private call(entry: Entry, property: string | symbol, args: unknown[]): unknown {
    const client = this.open(entry);
    const method = Reflect.get(client, property, client) as (...args: unknown[]) => unknown;
    entry.busy++;
    const settled = () => {
      entry.busy--;
      entry.lastUsed = performance.now();
    };
    let result: unknown;
    try {
      result = method.apply(client, args);
    } catch (err) {
      settled();
      throw err;
    }
    if (result instanceof Promise) return result.finally(settled);
    settled();
    return result;
  }

  private build(registry: Connection): RegistryClient {
    return new RegistryClient(
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
  }

  /**
   * Closes the registry's clients for good, but those of the connection `keep`: the current entry's, and
   * those only callers hold.
   */
  private async retire(registryId: string, keep?: unknown[]): Promise<void> {
    const current = this.entries.get(registryId);
    const all = new Set([...this.opened].filter((e) => e.registry.id === registryId));
    if (current) all.add(current);
    const closing: Promise<void>[] = [];
    for (const entry of all) {
      if (keep && sameConnection(entry.connection, keep)) continue;
      if (this.entries.get(registryId) === entry) this.entries.delete(registryId);
      closing.push(this.closeForGood(entry));
    }
    await Promise.all(closing);
  }

  private async closeForGood(entry: Entry): Promise<void> {
    entry.retired = true;
    this.opened.delete(entry);
    await entry.client?.close();
  }

  /**
   * Closes the clients no call has used for the idle time, and drops such entries (opened or not) from
   * `entries`; a call still running keeps its client.
   */
  private sweep(): void {
    const now = performance.now();
    for (const entry of new Set([...this.entries.values(), ...this.opened])) {
      if (entry.busy > 0 || now - entry.lastUsed < this.config.upstream.clientIdleMs) continue;
      this.opened.delete(entry);
      if (this.entries.get(entry.registry.id) === entry) this.entries.delete(entry.registry.id);
      const client = entry.client;
      entry.client = undefined;
      void client?.close().catch(() => undefined);
    }
    if (!this.opened.size && !this.entries.size) this.stopSweeping();
  }

  private startSweeping(): void {
    if (this.sweeper) return;
    const every = Math.max(50, Math.floor(this.config.upstream.clientIdleMs / 2));
    this.sweeper = setInterval(() => this.sweep(), every);
    this.sweeper.unref();
  }

  private stopSweeping(): void {
    clearInterval(this.sweeper);
    this.sweeper = undefined;
  }
}
