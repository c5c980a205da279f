import { Module } from '@nestjs/common';
import { RegistriesModule } from '../registries/registries.module.js';
import { DeletionPlanner } from './deletion-planner.js';
import { DeletionQueue } from './deletion-queue.js';
import { DeletionController } from './deletion.controller.js';
import { DeletionReader } from './deletion-reader.js';
import { DeletionAuditResolver, DeletionResolver } from './deletion.resolver.js';
import { DeletionProcessor } from './deletion.processor.js';
import { DeletionService } from './deletion.service.js';
import { ImageDeleteController } from './image-delete.controller.js';
import { RegistryThrottle } from './registry-throttle.js';

const providers = [DeletionService, DeletionPlanner, DeletionQueue, RegistryThrottle];

/** API side: plan, store, queue, read. */
@Module({
  imports: [RegistriesModule],
  controllers: [DeletionController, ImageDeleteController],
  providers: [...providers, DeletionReader, DeletionResolver, DeletionAuditResolver],
  exports: [DeletionService, RegistryThrottle],
})
export class DeletionsModule {}

/** Worker side: the delete jobs and the outbox sweep. */
@Module({
  imports: [RegistriesModule],
  providers: [...providers, DeletionProcessor],
  exports: [DeletionService, RegistryThrottle],
})
export class DeletionsWorkerModule {}
