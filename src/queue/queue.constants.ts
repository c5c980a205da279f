/** Queue and job names shared by the API (producers) and workers (consumers). */
export const Queues = {
  maintenance: 'maintenance',
  deletions: 'deletions',
} as const;

export const Jobs = {
  probeRegistries: 'probe-registries',
  /** One chunk of a deletion request's items; job id `<request id>-<chunk>`. */
  deleteChunk: 'delete-chunk',
  /** The outbox sweep: queues committed deletion items whose jobs never reached Redis. */
  recoverDeletions: 'recover-deletions',
} as const;

export interface DeleteChunkPayload {
  requestId: string;
  chunk: number;
}

export const PROBE_EVERY_MS = 5 * 60 * 1000;
