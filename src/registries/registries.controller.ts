import { Body, Controller, Delete, Get, HttpCode, Param, Patch, Post } from '@nestjs/common';
import {
  ApiCreatedResponse,
  ApiNoContentResponse,
  ApiOkResponse,
  ApiOperation,
  ApiTags,
} from '@nestjs/swagger';
import { RequirePermission } from '../auth/auth.decorators.js';
import { ApiErrors } from '../common/api-errors.js';
import { Ctx, RequestContext } from '../common/request-context.js';
import { CreateRegistryDto, RegistryProbeView, RegistryView, UpdateRegistryDto } from './registry.dto.js';
import { RegistriesService } from './registries.service.js';

@ApiTags('registries')
@Controller('api/v1/registries')
export class RegistriesController {
  constructor(private readonly registries: RegistriesService) {}

  @Get()
  @RequirePermission('registries:read', { anyRepository: true })
  @ApiOperation({ summary: 'List registered registries (those the caller may read)' })
  @ApiOkResponse({ type: [RegistryView] })
  async list(@Ctx() ctx: RequestContext): Promise<{ items: RegistryView[] }> {
    const visible = (await this.registries.list()).filter((r) =>
      ctx.access?.canInRegistry('registries:read', r.name),
    );
    return { items: visible.map((r) => this.registries.toView(r)) };
  }

  @Post()
  @RequirePermission('registries:write')
  @ApiOperation({ summary: 'Register a registry; it is probed at once and the result returned' })
  @ApiCreatedResponse({ type: RegistryView })
  @ApiErrors({ 400: ['VALIDATION_FAILED'], 409: ['REGISTRY_EXISTS'] })
  async create(@Body() dto: CreateRegistryDto, @Ctx() ctx: RequestContext): Promise<RegistryView> {
    return this.registries.toView(await this.registries.create(dto, ctx));
  }

  @Get(':name')
  @RequirePermission('registries:read', { registryParam: 'name', anyRepository: true })
  @ApiOkResponse({ type: RegistryView })
  @ApiErrors({ 404: ['REGISTRY_NOT_FOUND'] })
  async get(@Param('name') name: string): Promise<RegistryView> {
    return this.registries.toView(await this.registries.get(name));
  }

  @Patch(':name')
  @RequirePermission('registries:write', { registryParam: 'name' })
  @ApiOperation({ summary: 'Change a registry (re-probed when its connection changes)' })
  @ApiOkResponse({ type: RegistryView })
  @ApiErrors({ 400: ['VALIDATION_FAILED'], 404: ['REGISTRY_NOT_FOUND'], 409: ['REGISTRY_MANAGED_BY_FILE'] })
  async update(
    @Param('name') name: string,
    @Body() dto: UpdateRegistryDto,
    @Ctx() ctx: RequestContext,
  ): Promise<RegistryView> {
    return this.registries.toView(await this.registries.update(name, dto, ctx));
  }

  @Delete(':name')
  @RequirePermission('registries:write', { registryParam: 'name' })
  @HttpCode(204)
  @ApiOperation({ summary: 'Unregister a registry (nothing on the registry itself changes)' })
  @ApiNoContentResponse()
  @ApiErrors({ 404: ['REGISTRY_NOT_FOUND'], 409: ['REGISTRY_MANAGED_BY_FILE'] })
  async remove(@Param('name') name: string, @Ctx() ctx: RequestContext): Promise<void> {
    await this.registries.remove(name, ctx);
  }

  @Get(':name/health')
  @RequirePermission('registries:read', { registryParam: 'name', anyRepository: true })
  @ApiOperation({
    summary: 'Probe the registry now',
    description:
      'Reachability, API version, whether the credentials work, whether deletes are enabled, disabled, read-only or impossible (pull-through cache), and the major distribution version. The probe deletes an absent digest and an absent tag, which changes nothing.',
  })
  @ApiOkResponse({ type: RegistryProbeView })
  @ApiErrors({ 404: ['REGISTRY_NOT_FOUND'] })
  async health(@Param('name') name: string): Promise<RegistryProbeView> {
    const probed = await this.registries.probe(await this.registries.get(name));
    return probed.probe!;
  }
}
