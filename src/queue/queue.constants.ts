/** Queue and job names shared by the API (producers) and workers (consumers). */
export const Queues = {
  maintenance: 'maintenance',
  deletions: 'deletions',
  gc: 'gc',
  webhooks: 'webhooks',
} as const;

export const Jobs = {
  probeRegistries: 'probe-registries',
  /** One chunk of a deletion request's items; job id `<request id>-<chunk>`. */
  deleteChunk: 'delete-chunk',
  /** The outbox sweep: queues committed deletion items whose jobs never reached Redis. */
  recoverDeletions: 'recover-deletions',
  /** One GC run; job id = the run's id. */
  gcRun: 'gc-run',
  /** Queues GC runs that were committed but not queued, and recovers runs of crashed workers. */
  gcSweep: 'gc-sweep',
  /** A registry's cron schedule fired (job scheduler `gc-schedule-<registry id>`). */
  gcScheduled: 'gc-scheduled',
  /** Deletions on a registry settled; debounced per registry. */
  gcAfterDeletions: 'gc-after-deletions',
  /** Sends a webhook subscription's waiting deliveries, one at a time in order; one job per subscription. */
  webhookDeliver: 'webhook-deliver',
  /** Queues subscriptions with waiting deliveries whose job is missing; deletes old deliveries. */
  webhookSweep: 'webhook-sweep',
} as const;

export interface GcRunPayload {
  runId: string;
}

export interface GcRegistryPayload {
  registryId: string;
}

export interface WebhookDeliverPayload {
  subscriptionId: string;
}

export interface DeleteChunkPayload {
  requestId: string;
  chunk: number;
}

export const PROBE_EVERY_MS = 5 * 60 * 1000;
