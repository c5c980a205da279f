import { Inject, Injectable, OnApplicationShutdown } from '@nestjs/common';
import { Redis } from 'ioredis';
import { AppConfig } from '../config/app-config.js';
import { redisOptions } from './redis-options.js';

/**
 * One plain ioredis connection per process for what is not a queue: distributed semaphores and rate
 * limits. Keys are built with `key()`, under REDIS_PREFIX like BullMQ's.
 */
@Injectable()
export class RedisClient implements OnApplicationShutdown {
  readonly redis: Redis;

  constructor(@Inject(AppConfig) private readonly config: AppConfig) {
    this.redis = new Redis({ ...redisOptions(config.redis.url), lazyConnect: false });
  }

  key(...parts: string[]): string {
    return [this.config.redis.prefix, ...parts].join(':');
  }

  async onApplicationShutdown() {
    await this.redis.quit().catch(() => this.redis.disconnect());
  }
}
