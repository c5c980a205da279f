import { Args, Mutation, Query, Resolver } from '@nestjs/graphql';
import { CreateRegistryDto, RegistryProbeView, RegistryView, UpdateRegistryDto } from './registry.dto.js';
import { RegistriesService } from './registries.service.js';

@Resolver(() => RegistryView)
export class RegistriesResolver {
  constructor(private readonly service: RegistriesService) {}

  @Query(() => [RegistryView], { description: 'Every registered registry.' })
  async registries(): Promise<RegistryView[]> {
    return (await this.service.list()).map((r) => this.service.toView(r));
  }

  @Query(() => RegistryView, { description: 'One registry by name.' })
  async registry(@Args('name') name: string): Promise<RegistryView> {
    return this.service.toView(await this.service.get(name));
  }

  @Mutation(() => RegistryView, { description: 'Register a registry; it is probed at once.' })
  async createRegistry(@Args('input') input: CreateRegistryDto): Promise<RegistryView> {
    return this.service.toView(await this.service.create(input));
  }

  @Mutation(() => RegistryView, {
    description: 'Change a registry; it is re-probed when its connection changes.',
  })
  async updateRegistry(
    @Args('name') name: string,
    @Args('input') input: UpdateRegistryDto,
  ): Promise<RegistryView> {
    return this.service.toView(await this.service.update(name, input));
  }

  @Mutation(() => Boolean, { description: 'Unregister a registry. Nothing on the registry itself changes.' })
  async deleteRegistry(@Args('name') name: string): Promise<boolean> {
    await this.service.remove(name);
    return true;
  }

  @Mutation(() => RegistryProbeView, { description: 'Probe a registry now and store the result.' })
  async probeRegistry(@Args('name') name: string): Promise<RegistryProbeView> {
    return (await this.service.probe(await this.service.get(name))).probe!;
  }
}
