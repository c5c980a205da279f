import { Module } from '@nestjs/common';
import { RegistriesModule } from '../registries/registries.module.js';
import { DeletionPlanner } from './deletion-planner.js';
import { DeletionQueue } from './deletion-queue.js';
import { DeletionController } from './deletion.controller.js';
import { DeletionProcessor } from './deletion.processor.js';
import { DeletionService } from './deletion.service.js';
import { ImageDeleteController } from './image-delete.controller.js';
import { RegistryThrottle } from './registry-throttle.js';

const providers = [DeletionService, DeletionPlanner, DeletionQueue];

/** API side: plan, store, queue, read. */
@Module({
  imports: [RegistriesModule],
  controllers: [DeletionController, ImageDeleteController],
  providers,
  exports: [DeletionService],
})
export class DeletionsModule {}

/** Worker side: the delete jobs and the outbox sweep. */
@Module({
  imports: [RegistriesModule],
  providers: [...providers, RegistryThrottle, DeletionProcessor],
})
export class DeletionsWorkerModule {}
