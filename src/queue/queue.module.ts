import { BullModule } from '@nestjs/bullmq';
import { Global, Module } from '@nestjs/common';
import { AppConfig } from '../config/app-config.js';
import { Queues } from './queue.constants.js';
import { redisOptions } from './redis-options.js';
import { RedisClient } from './redis.provider.js';

/** BullMQ on the configured Redis, every key under REDIS_PREFIX; jobs keep a bounded history. */
@Global()
@Module({
  imports: [
    BullModule.forRootAsync({
      inject: [AppConfig],
      useFactory: (config: AppConfig) => ({
        connection: redisOptions(config.redis.url),
        prefix: config.redis.prefix,
        defaultJobOptions: {
          attempts: 5,
          backoff: { type: 'exponential', delay: 1000 },
          removeOnComplete: { age: 7 * 24 * 3600, count: 10_000 },
          removeOnFail: { age: 30 * 24 * 3600 },
        },
      }),
    }),
    BullModule.registerQueue(
      { name: Queues.maintenance },
      { name: Queues.deletions },
      { name: Queues.gc },
      { name: Queues.webhooks },
    ),
  ],
  providers: [RedisClient],
  exports: [BullModule, RedisClient],
})
export class QueueModule {}
