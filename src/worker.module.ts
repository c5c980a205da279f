import { DynamicModule, Module } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { EventEmitterModule } from '@nestjs/event-emitter';
import { Logger } from 'nestjs-pino';
import { AuditModule } from './audit/audit.module.js';
import { CommonModule } from './common/common.module.js';
import { LoggingModule } from './common/logging.module.js';
import { WorkerMetricsServer } from './common/worker-metrics.js';
import { AppConfig } from './config/app-config.js';
import { AppConfigModule } from './config/config.module.js';
import { DatabaseModule } from './database/database.module.js';
import { DeletionsWorkerModule } from './deletions/deletions.module.js';
import { GcWorkerModule } from './gc/gc.module.js';
import { QueueModule } from './queue/queue.module.js';
import { RegistriesModule, RegistriesWorkerModule } from './registries/registries.module.js';
import { WebhooksWorkerModule } from './webhooks/webhooks.module.js';

/*
 * The worker's application, apart from the API's (app.module.ts, which builds on `core` here): a worker
 * process loads neither Apollo, Fastify, Swagger nor the API-only modules, whose code would only sit in
 * its heap.
 */

/** What both processes share: config, logging, Postgres, Redis/BullMQ, domain events. */
export function core(config: AppConfig) {
  return [
    AppConfigModule.forRoot(config),
    CommonModule,
    LoggingModule,
    DatabaseModule,
    QueueModule,
    EventEmitterModule.forRoot(),
  ];
}

/** The worker process: BullMQ consumers only, no HTTP. */
@Module({})
export class WorkerModule {
  static forRoot(config: AppConfig): DynamicModule {
    return {
      module: WorkerModule,
      imports: [
        ...core(config),
        RegistriesModule,
        RegistriesWorkerModule,
        DeletionsWorkerModule,
        GcWorkerModule,
        AuditModule,
        WebhooksWorkerModule,
      ],
      providers: [WorkerMetricsServer],
    };
  }
}

export async function createWorkerApp(config: AppConfig) {
  const app = await NestFactory.createApplicationContext(WorkerModule.forRoot(config), { bufferLogs: true });
  app.useLogger(app.get(Logger));
  app.enableShutdownHooks();
  await app.init();
  return app;
}
