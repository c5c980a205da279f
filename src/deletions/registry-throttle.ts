import { Injectable, Logger } from '@nestjs/common';
import { RateLimiterRedis, RateLimiterRes } from 'rate-limiter-flexible';
import { MultiSemaphore, TimeoutError } from 'redis-semaphore';
import { DomainError } from '../common/domain-error.js';
import { AppConfig } from '../config/app-config.js';
import { RedisClient } from '../queue/redis.provider.js';
import { DEFAULT_DELETE_CONCURRENCY, type RegistryEntity } from '../registries/registry.entity.js';

const WAIT_FOR_SLOTS_MS = 15 * 60_000;

/** A garbage collection's hold on a registry: while it is up, no delete of the gateway's runs there. */
export interface RegistryFence {
  release(): Promise<void>;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Per-registry limits that hold across every worker process: at most `deleteConcurrency` deletes in
 * flight (a Redis semaphore whose permits expire if their holder dies) and at most
 * `deleteRatePerSecond` deletes started per second (a shared counter).
 */
@Injectable()
export class RegistryThrottle {
  private readonly logger = new Logger(RegistryThrottle.name);
  private readonly limiters = new Map<string, RateLimiterRedis>();

  /** A dead worker's slots come back after this long, like its jobs (QUEUE_LOCK_MS). */
  private readonly leaseMs: number;

  constructor(
    private readonly redis: RedisClient,
    config: AppConfig,
  ) {
    this.leaseMs = config.queue.lockMs;
  }

  /**
   * Holds `min(wanted, concurrency)` of the registry's delete slots while `fn` runs, and tells `fn` how
   * many it got: that is how many deletes it may run at once.
   */
  async withSlots<T>(
    registry: RegistryEntity,
    wanted: number,
    fn: (slots: number) => Promise<T>,
  ): Promise<T> {
    const limit = this.concurrencyOf(registry);
    const slots = Math.max(1, Math.min(wanted, limit));
    const semaphore = new MultiSemaphore(
      this.redis.redis,
      this.redis.key('deletes', registry.id),
      limit,
      slots,
      {
        lockTimeout: this.leaseMs,
        refreshInterval: Math.floor(this.leaseMs / 3),
        acquireTimeout: WAIT_FOR_SLOTS_MS,
        // Waiting chunks poll Redis: at 25 ms a hand-off between chunks left the registry idle for
        // about 0.7 s per 5,000 deletes; 5 ms costs a few hundred cheap Redis calls a second while contended.
        retryInterval: 5,
        // The lease expired (Redis stalled longer than the lease): another holder may start, the limit is briefly exceeded.
        onLockLost: (err) =>
          this.logger.warn(`delete slots of registry "${registry.name}" were lost: ${err.message}`),
      },
    );
    await semaphore.acquire();
    try {
      return await fn(slots);
    } finally {
      await semaphore.release().catch(() => undefined);
    }
  }

  /**
   * Raises the GC fence and drains: from now on delete jobs wait (`fencedBy`), and once every delete in
   * flight has finished the fence holds all of the registry's delete slots, so none can start until
   * `release`. The fence and the slots are leased like jobs: a crashed holder's lapse after QUEUE_LOCK_MS.
   */
  async fence(registry: RegistryEntity, holder: string, drainTimeoutMs: number): Promise<RegistryFence> {
    const key = this.redis.key('fence', registry.id);
    const lease = () => this.redis.redis.set(key, holder, 'PX', this.leaseMs);
    await lease();
    const refresh = setInterval(
      () => void lease().catch((err: Error) => this.logger.warn(`GC fence refresh: ${err.message}`)),
      Math.floor(this.leaseMs / 3),
    );
    const limit = this.concurrencyOf(registry);
    const slots = new MultiSemaphore(this.redis.redis, this.redis.key('deletes', registry.id), limit, limit, {
      lockTimeout: this.leaseMs,
      refreshInterval: Math.floor(this.leaseMs / 3),
      acquireTimeout: drainTimeoutMs,
      retryInterval: 50,
      onLockLost: (err) =>
        this.logger.warn(`GC fence of registry "${registry.name}" lost its delete slots: ${err.message}`),
    });
    const drop = async () => {
      clearInterval(refresh);
      await this.dropFence(registry.id, holder);
    };
    try {
      await slots.acquire();
    } catch (err) {
      await drop();
      if (err instanceof TimeoutError)
        throw new DomainError(
          'GC_DRAIN_TIMEOUT',
          `the deletes in flight on registry "${registry.name}" did not finish within ${Math.round(drainTimeoutMs / 1000)} s (GC_DRAIN_TIMEOUT_MS)`,
          503,
          { registry: registry.name, drainTimeoutMs },
        );
      throw err;
    }
    return {
      release: async () => {
        await slots.release().catch(() => undefined);
        await drop();
      },
    };
  }

  /** Drops the fence if `holder` still has it (a lapsed lease may have been taken over). */
  async dropFence(registryId: string, holder: string): Promise<void> {
    await this.redis.redis.eval(
      `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0`,
      1,
      this.redis.key('fence', registryId),
      holder,
    );
  }

  /** Who holds the registry's GC fence (a GC run id), or null. */
  async fencedBy(registryId: string): Promise<string | null> {
    return this.redis.redis.get(this.redis.key('fence', registryId));
  }

  /** How many deletes the registry takes at once. */
  concurrencyOf(registry: RegistryEntity): number {
    return Math.max(1, registry.deleteConcurrency ?? DEFAULT_DELETE_CONCURRENCY);
  }

  /** Waits until the registry's rate limit allows one more delete. */
  async admit(registry: RegistryEntity): Promise<void> {
    const rate = registry.deleteRatePerSecond;
    if (!rate) return;
    const key = `${registry.id}:${rate}`;
    let limiter = this.limiters.get(key);
    if (!limiter) {
      limiter = new RateLimiterRedis({
        storeClient: this.redis.redis,
        keyPrefix: this.redis.key('delete-rate'),
        points: rate,
        duration: 1,
      });
      this.limiters.set(key, limiter);
    }
    for (;;) {
      try {
        await limiter.consume(registry.id);
        return;
      } catch (res) {
        if (!(res instanceof RateLimiterRes)) throw res;
        await sleep(Math.max(5, res.msBeforeNext));
      }
    }
  }
}
