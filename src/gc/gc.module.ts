import { Module } from '@nestjs/common';
import { DeletionsModule, DeletionsWorkerModule } from '../deletions/deletions.module.js';
import { RegistriesModule } from '../registries/registries.module.js';
import { GcSettingsService } from './gc-settings.service.js';
import { GcController } from './gc.controller.js';
import { GcProcessor } from './gc.processor.js';
import { GcAuditResolver, GcProgressResolver } from './gc-progress.resolver.js';
import { GcResolver } from './gc.resolver.js';
import { ReclaimedResolver } from './reclaimed.resolver.js';
import { ReclaimedService } from './reclaimed.service.js';
import { GcService } from './gc.service.js';

/** API side: request, read and configure GC runs. */
@Module({
  imports: [RegistriesModule, DeletionsModule],
  controllers: [GcController],
  providers: [
    GcService,
    GcSettingsService,
    GcResolver,
    GcProgressResolver,
    GcAuditResolver,
    ReclaimedService,
    ReclaimedResolver,
  ],
})
export class GcModule {}

/** Worker side: the runs, the sweep, schedules and the debounced run after deletions. */
@Module({
  imports: [RegistriesModule, DeletionsWorkerModule],
  providers: [GcService, GcSettingsService, GcProcessor],
})
export class GcWorkerModule {}
