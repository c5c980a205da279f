/** Queue and job names shared by the API (producers) and workers (consumers). */
export const Queues = {
  maintenance: 'maintenance',
} as const;

export const Jobs = {
  probeRegistries: 'probe-registries',
} as const;

export const PROBE_EVERY_MS = 5 * 60 * 1000;
