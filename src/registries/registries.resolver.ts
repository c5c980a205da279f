import { Args, Mutation, Query, Resolver } from '@nestjs/graphql';
import { RequirePermission } from '../auth/auth.decorators.js';
import { Ctx, RequestContext } from '../common/request-context.js';
import { CreateRegistryDto, RegistryProbeView, RegistryView, UpdateRegistryDto } from './registry.dto.js';
import { RegistriesService } from './registries.service.js';

@Resolver(() => RegistryView)
export class RegistriesResolver {
  constructor(private readonly service: RegistriesService) {}

  @Query(() => [RegistryView], {
    description: 'Every registered registry the caller may read (needs registries:read on it).',
  })
  @RequirePermission('registries:read', { anyRepository: true })
  async registries(@Ctx() ctx: RequestContext): Promise<RegistryView[]> {
    return (await this.service.list())
      .filter((r) => ctx.access?.canInRegistry('registries:read', r.name))
      .map((r) => this.service.toView(r));
  }

  @Query(() => RegistryView, { description: 'One registry by name (needs registries:read on it).' })
  @RequirePermission('registries:read', { registryParam: 'name', anyRepository: true })
  async registry(@Args('name', { description: 'Registry name' }) name: string): Promise<RegistryView> {
    return this.service.toView(await this.service.get(name));
  }

  @Mutation(() => RegistryView, {
    description: 'Register a registry; it is probed at once (needs registries:write everywhere).',
  })
  @RequirePermission('registries:write')
  async createRegistry(
    @Args('input', { description: 'The registry and its settings' }) input: CreateRegistryDto,
    @Ctx() ctx: RequestContext,
  ): Promise<RegistryView> {
    return this.service.toView(await this.service.create(input, ctx));
  }

  @Mutation(() => RegistryView, {
    description:
      'Change a registry; it is re-probed when its connection changes (needs registries:write on it).',
  })
  @RequirePermission('registries:write', { registryParam: 'name' })
  async updateRegistry(
    @Args('name', { description: 'Registry name' }) name: string,
    @Args('input', { description: 'What to change' }) input: UpdateRegistryDto,
    @Ctx() ctx: RequestContext,
  ): Promise<RegistryView> {
    return this.service.toView(await this.service.update(name, input, ctx));
  }

  @Mutation(() => Boolean, {
    description:
      'Unregister a registry, changing nothing on the registry itself (needs registries:write on it).',
  })
  @RequirePermission('registries:write', { registryParam: 'name' })
  async deleteRegistry(
    @Args('name', { description: 'Registry name' }) name: string,
    @Ctx() ctx: RequestContext,
  ): Promise<boolean> {
    await this.service.remove(name, ctx);
    return true;
  }

  @Mutation(() => RegistryProbeView, {
    description:
      'Probe a registry now and store the result (needs registries:read on it, like GET …/health).',
  })
  @RequirePermission('registries:read', { registryParam: 'name', anyRepository: true })
  async probeRegistry(
    @Args('name', { description: 'Registry name' }) name: string,
  ): Promise<RegistryProbeView> {
    return (await this.service.probe(await this.service.get(name))).probe!;
  }
}
