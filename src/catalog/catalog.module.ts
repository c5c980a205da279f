import { Module } from '@nestjs/common';
import { RegistriesModule } from '../registries/registries.module.js';
import { CatalogController } from './catalog.controller.js';
import { CatalogResolver, RegistryCatalogResolver } from './catalog.resolver.js';
import { CatalogService } from './catalog.service.js';

@Module({
  imports: [RegistriesModule],
  controllers: [CatalogController],
  providers: [CatalogService, CatalogResolver, RegistryCatalogResolver],
  exports: [CatalogService],
})
export class CatalogModule {}
