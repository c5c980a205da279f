import { Args, Context, Mutation, Parent, Query, ResolveField, Resolver } from '@nestjs/graphql';
import { RequirePermission } from '../auth/auth.decorators.js';
import { Ctx, RequestContext } from '../common/request-context.js';
import { requestLoader } from '../common/request-loaders.js';
import { UuidArg } from '../common/uuid-ids.js';
import { GcSettingsDto, GcSettingsView } from './gc-settings.dto.js';
import { GcSettingsService } from './gc-settings.service.js';
import { GcRequestDto, GcRunPage, GcRunQueryDto, GcRunView } from './gc.dto.js';
import { GcService, mayUseGcRuns } from './gc.service.js';

@Resolver(() => GcRunView)
export class GcResolver {
  constructor(
    private readonly gc: GcService,
    private readonly settings: GcSettingsService,
  ) {}

  @Mutation(() => GcRunView, {
    description:
      'Run the registry’s garbage collector (needs gc:run on the registry). Answers the run already queued or running when there is one.',
  })
  @RequirePermission('gc:run', { registryParam: 'registry' })
  async runGc(
    @Args('registry', { description: 'Registry name' }) registry: string,
    @Args('input', { nullable: true, description: 'What to collect; every option false when left out' })
    input: GcRequestDto,
    @Ctx() ctx: RequestContext,
  ): Promise<GcRunView> {
    return (await this.gc.request(registry, input ?? {}, ctx)).run;
  }

  @Mutation(() => GcRunView, {
    description:
      'Cancel a queued or running GC run (needs gc:run on its whole registry); the registry is restored.',
  })
  @RequirePermission('gc:run', { checkedInHandler: true })
  cancelGcRun(
    @UuidArg('id', 'a GC run id', { description: 'The run’s uuid' }) id: string,
    @Ctx() ctx: RequestContext,
  ): Promise<GcRunView> {
    return this.gc.cancel(id, ctx);
  }

  @Query(() => GcRunView, { description: 'One GC run (needs gc:read on its whole registry).' })
  @RequirePermission('gc:read', { checkedInHandler: true })
  gcRun(
    @UuidArg('id', 'a GC run id', { description: 'The run’s uuid' }) id: string,
    @Ctx() ctx: RequestContext,
  ): Promise<GcRunView> {
    return this.gc.getFor(id, ctx);
  }

  @Query(() => GcRunPage, {
    description: 'GC runs, newest first (needs gc:read on the registry filtered by, or everywhere).',
  })
  @RequirePermission('gc:read', { registryParam: 'registry' })
  gcRuns(@Args() q: GcRunQueryDto): Promise<GcRunPage> {
    return this.gc.list(q);
  }

  @ResolveField('output', () => String, {
    nullable: true,
    description:
      'What the collector printed, stdout and stderr as they came (needs gc:read on the run’s whole registry, else null): while it runs the last 64 KiB, once it ended all of it, GC_OUTPUT_CAP_BYTES at most (head and tail kept, the cut marked: outputTruncated). Null before it printed anything, and once dropped (outputRemovedAt). Read only when asked for: the runs of a page in one query.',
  })
  @RequirePermission('gc:read', { checkedInHandler: true })
  output(
    @Parent() run: GcRunView,
    @Context('req') req: object,
    @Ctx() ctx: RequestContext,
  ): Promise<string | null> | null {
    // Whoever was given the run may read it; checked again, as the field is resolved on its own.
    if (!mayUseGcRuns(ctx, 'gc:read', run.registry)) return null;
    return requestLoader<string, string | null>(req, 'gc-run-output', (ids) => this.gc.outputs(ids)).load(
      run.id,
    );
  }

  @Query(() => GcSettingsView, { description: 'How GC runs for a registry (needs registries:read on it).' })
  @RequirePermission('registries:read', { registryParam: 'registry', anyRepository: true })
  gcSettings(@Args('registry', { description: 'Registry name' }) registry: string): Promise<GcSettingsView> {
    return this.settings.get(registry);
  }

  @Mutation(() => GcSettingsView, {
    description: 'Configure GC for a registry (needs registries:write on it).',
  })
  @RequirePermission('registries:write', { registryParam: 'registry' })
  setGcSettings(
    @Args('registry', { description: 'Registry name' }) registry: string,
    @Args('input', {
      description: 'The whole configuration: omitted fields take their defaults, stored secrets are kept',
    })
    input: GcSettingsDto,
    @Ctx() ctx: RequestContext,
  ): Promise<GcSettingsView> {
    return this.settings.put(registry, input, ctx);
  }
}
