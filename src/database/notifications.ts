import { Global, Injectable, Logger, Module, OnModuleDestroy } from '@nestjs/common';
import pg from 'pg';
import { AppConfig } from '../config/app-config.js';

/** Channels the database triggers notify on (migration 1795400000500); the payload is the row id. */
export const Channels = {
  deletion: 'rg_deletion_changed',
  gcRun: 'rg_gc_run_changed',
} as const;
export type Channel = (typeof Channels)[keyof typeof Channels];

/** `id` is null after a reconnect: notifications may have been missed, so every listener re-reads. */
export type ChangeListener = (id: string | null) => void;

const RECONNECT_MIN_MS = 250;
const RECONNECT_MAX_MS = 10_000;

/**
 * Postgres LISTEN on one dedicated connection per API process, opened when the first listener arrives.
 * The rows change in worker processes; their triggers NOTIFY at commit, so every replica hears every
 * change without the workers knowing anyone listens.
 */
@Injectable()
export class PgNotifications implements OnModuleDestroy {
  private readonly logger = new Logger(PgNotifications.name);
  private readonly listeners = new Map<Channel, Map<string | null, Set<ChangeListener>>>();
  private client?: pg.Client;
  private connecting?: Promise<void>;
  private closed = false;
  private retryMs = RECONNECT_MIN_MS;
  private retryTimer?: NodeJS.Timeout;
  private everConnected = false;

  constructor(private readonly config: AppConfig) {}

  /**
   * Calls `listener` when the row `id` of `channel` changes (`id` null: any row), and with null after a
   * reconnect. Resolves once the LISTEN is in place, so a read made after it cannot miss a change.
   */
  async listen(channel: Channel, id: string | null, listener: ChangeListener): Promise<() => void> {
    const byId = this.listeners.get(channel) ?? new Map<string | null, Set<ChangeListener>>();
    this.listeners.set(channel, byId);
    const set = byId.get(id) ?? new Set<ChangeListener>();
    byId.set(id, set);
    set.add(listener);
    const remove = () => {
      set.delete(listener);
      if (set.size === 0 && byId.get(id) === set) byId.delete(id);
    };
    try {
      await this.connect();
    } catch (err) {
      // The listener still gets null once the connection is back; callers poll meanwhile.
      this.logger.warn(`LISTEN is not available yet: ${(err as Error).message}`);
    }
    return remove;
  }

  async onModuleDestroy() {
    this.closed = true;
    clearTimeout(this.retryTimer);
    const client = this.client;
    this.client = undefined;
    await client?.end().catch(() => undefined);
  }

  private connect(): Promise<void> {
    if (this.client) return Promise.resolve();
    this.connecting ??= this.open().finally(() => (this.connecting = undefined));
    return this.connecting;
  }

  private async open(): Promise<void> {
    if (this.closed) return;
    const client = new pg.Client({ connectionString: this.config.database.url });
    client.on('notification', (n) => this.dispatch(n.channel as Channel, n.payload ?? null));
    client.on('error', (err) => this.lost(client, err));
    client.on('end', () => this.lost(client));
    try {
      await client.connect();
      for (const channel of Object.values(Channels)) await client.query(`LISTEN ${channel}`);
    } catch (err) {
      await client.end().catch(() => undefined);
      this.scheduleReconnect();
      throw err;
    }
    const wasReconnect = this.everConnected;
    this.client = client;
    this.everConnected = true;
    this.retryMs = RECONNECT_MIN_MS;
    if (wasReconnect) for (const channel of Object.values(Channels)) this.dispatch(channel, null);
  }

  private lost(client: pg.Client, err?: Error) {
    if (this.client !== client) return;
    this.client = undefined;
    if (this.closed) return;
    this.logger.warn(`LISTEN connection lost${err ? `: ${err.message}` : ''}; reconnecting`);
    client.end().catch(() => undefined);
    this.scheduleReconnect();
  }

  private scheduleReconnect() {
    if (this.closed || this.retryTimer) return;
    const delay = this.retryMs;
    this.retryMs = Math.min(RECONNECT_MAX_MS, this.retryMs * 2);
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      if (!this.hasListeners()) return;
      this.connect().catch(() => undefined);
    }, delay);
    this.retryTimer.unref();
  }

  private hasListeners(): boolean {
    return [...this.listeners.values()].some((byId) => byId.size > 0);
  }

  private dispatch(channel: Channel, id: string | null) {
    const byId = this.listeners.get(channel);
    if (!byId) return;
    const targets = id === null ? [...byId.values()] : [byId.get(id), byId.get(null)];
    for (const set of targets)
      for (const listener of set ?? []) {
        try {
          listener(id);
        } catch (err) {
          this.logger.error(`change listener failed: ${(err as Error).message}`);
        }
      }
  }
}

/** Global, so any feature's resolver can stream changes; only the API process loads it. */
@Global()
@Module({ providers: [PgNotifications], exports: [PgNotifications] })
export class NotificationsModule {}
