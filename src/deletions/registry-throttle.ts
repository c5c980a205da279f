import { Injectable, Logger } from '@nestjs/common';
import { RateLimiterRedis, RateLimiterRes } from 'rate-limiter-flexible';
import { MultiSemaphore } from 'redis-semaphore';
import { AppConfig } from '../config/app-config.js';
import { RedisClient } from '../queue/redis.provider.js';
import type { RegistryEntity } from '../registries/registry.entity.js';

const WAIT_FOR_SLOTS_MS = 15 * 60_000;

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
    const limit = Math.max(1, registry.deleteConcurrency ?? 8);
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
        retryInterval: 25,
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
