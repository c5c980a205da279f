import { InjectQueue, Processor, WorkerHost } from '@nestjs/bullmq';
import { Logger, OnApplicationBootstrap } from '@nestjs/common';
import { Job, Queue } from 'bullmq';
import { Jobs, PROBE_EVERY_MS, Queues } from '../queue/queue.constants.js';
import { RegistriesService } from './registries.service.js';

/**
 * Re-probes every registry on a schedule, so a registry switched to read-only or with delete
 * disabled is known before a delete is attempted. The job scheduler runs it once across all workers.
 */
@Processor(Queues.maintenance)
export class RegistryProbeProcessor extends WorkerHost implements OnApplicationBootstrap {
  private readonly logger = new Logger(RegistryProbeProcessor.name);

  constructor(
    private readonly registries: RegistriesService,
    @InjectQueue(Queues.maintenance) private readonly queue: Queue,
  ) {
    super();
  }

  async onApplicationBootstrap() {
    await this.queue.upsertJobScheduler(
      Jobs.probeRegistries,
      { every: PROBE_EVERY_MS },
      { name: Jobs.probeRegistries },
    );
  }

  async process(job: Job): Promise<{ probed: number; unreachable: string[] }> {
    if (job.name !== Jobs.probeRegistries) throw new Error(`unknown job ${job.name}`);
    const unreachable: string[] = [];
    const all = await this.registries.list();
    for (const [i, r] of all.entries()) {
      const probed = await this.registries.probe(r);
      if (!probed.probe?.reachable) unreachable.push(r.name);
      await job.updateProgress(Math.round(((i + 1) / all.length) * 100));
    }
    if (unreachable.length) this.logger.warn(`unreachable registries: ${unreachable.join(', ')}`);
    return { probed: all.length, unreachable };
  }
}
