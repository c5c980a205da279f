import { Module } from '@nestjs/common';
import { TypeOrmModule } from '@nestjs/typeorm';
import { RegistryClients } from './registry-clients.service.js';
import { RegistryEntity } from './registry.entity.js';
import { RegistryProber } from './registry-prober.service.js';
import { RegistryProbeProcessor } from './registry-probe.processor.js';
import { RegistriesController } from './registries.controller.js';
import { RegistriesFileSync } from './registries-file.service.js';
import { RegistriesResolver } from './registries.resolver.js';
import { RegistriesService } from './registries.service.js';

@Module({
  imports: [TypeOrmModule.forFeature([RegistryEntity])],
  controllers: [RegistriesController],
  providers: [RegistriesService, RegistryClients, RegistryProber, RegistriesResolver],
  exports: [RegistriesService, RegistryClients],
})
export class RegistriesModule {}

/** The API process applies the REGISTRIES_FILE; workers only read registries. */
@Module({ imports: [RegistriesModule], providers: [RegistriesFileSync] })
export class RegistriesFileModule {}

/** Worker side: the scheduled re-probe of every registry. */
@Module({ imports: [RegistriesModule], providers: [RegistryProbeProcessor] })
export class RegistriesWorkerModule {}
