import { createHash, timingSafeEqual } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import { Injectable, Logger, OnApplicationBootstrap, OnApplicationShutdown } from '@nestjs/common';
import { collectDefaultMetrics, register } from 'prom-client';
import { AppConfig } from '../config/app-config.js';
import { counter, histogram } from './metrics.js';

const digest = (v: string) => createHash('sha256').update(v).digest();

/** What the workers do, for Prometheus (served by the worker itself: it has no HTTP API). */
export const workerMetrics = {
  deletionItems: () =>
    counter('registry_gateway_deletion_items_total', 'Deletion items settled by a worker, by outcome', [
      'registry',
      'outcome',
    ]),
  gcRuns: () =>
    counter('registry_gateway_gc_runs_total', 'GC runs that ended, by status', [
      'registry',
      'status',
      'dry_run',
    ]),
  gcBytesFreed: () =>
    counter('registry_gateway_gc_bytes_freed_total', 'Bytes GC runs freed (storage before minus after)', [
      'registry',
    ]),
  gcDuration: () =>
    histogram(
      'registry_gateway_gc_run_duration_seconds',
      'How long GC runs took, start to end',
      ['registry', 'status'],
      [1, 5, 15, 60, 300, 900, 3600, 4 * 3600, 12 * 3600],
    ),
  webhookAttempts: () =>
    counter('registry_gateway_webhook_attempts_total', 'Webhook delivery attempts, by result', ['result']),
};

/**
 * GET /metrics on WORKER_METRICS_PORT (when set): the worker's process metrics and the counters above,
 * behind METRICS_TOKEN like the API's. Each worker serves its own; scrape every one.
 */
@Injectable()
export class WorkerMetricsServer implements OnApplicationBootstrap, OnApplicationShutdown {
  private readonly logger = new Logger(WorkerMetricsServer.name);
  private server?: Server;

  constructor(private readonly config: AppConfig) {}

  async onApplicationBootstrap() {
    const { port, host } = this.config.workerMetrics;
    if (port === undefined) return;
    if (!register.getSingleMetric('process_cpu_user_seconds_total')) collectDefaultMetrics();
    const expected = this.config.auth.metricsToken ? digest(this.config.auth.metricsToken) : null;
    this.server = createServer((req, res) => {
      if (req.method !== 'GET' || req.url?.split('?')[0] !== '/metrics') {
        res.writeHead(404).end();
        return;
      }
      const given = /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(req.headers.authorization ?? '')?.[1];
      if (expected && (!given || !timingSafeEqual(digest(given), expected))) {
        res.writeHead(401, { 'www-authenticate': 'Bearer realm="registry-gateway metrics"' }).end();
        return;
      }
      register.metrics().then(
        (text) => res.writeHead(200, { 'content-type': register.contentType }).end(text),
        (err: Error) => res.writeHead(500).end(err.message),
      );
    });
    await new Promise<void>((resolve, reject) => {
      this.server!.once('error', reject);
      this.server!.listen(port, host, () => resolve());
    });
    this.logger.log(`worker metrics on http://${host}:${this.port}/metrics`);
  }

  /** The port listened on (WORKER_METRICS_PORT=0 picks a free one). */
  get port(): number | undefined {
    const address = this.server?.address();
    return typeof address === 'object' && address ? address.port : undefined;
  }

  async onApplicationShutdown() {
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
  }
}
