import { once } from 'node:events';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Webhook } from 'standardwebhooks';

export interface ReceivedWebhook {
  path: string;
  /** The `webhook-id` header. */
  id: string;
  headers: IncomingHttpHeaders;
  /** The raw body, as signed. */
  body: string;
  /** What the receiver answered. */
  status: number;
  at: number;
}

/**
 * A real HTTP server on a loopback port that records every webhook request. Each path answers 200 unless
 * told otherwise (`respond('/x', 503)`); `stop()` closes the port (connection refused) and `resume()`
 * opens the same port again.
 */
export class WebhookReceiver {
  readonly requests: ReceivedWebhook[] = [];
  private readonly statuses = new Map<string, number | ((webhookId: string) => number)>();
  private server: Server;

  private constructor(private port: number) {
    this.server = this.create();
  }

  static async start(): Promise<WebhookReceiver> {
    const r = new WebhookReceiver(0);
    await r.listen();
    return r;
  }

  url(path: string): string {
    return `http://127.0.0.1:${this.port}${path}`;
  }

  /** What requests to `path` are answered from now on: a status, or one per webhook-id. */
  respond(path: string, status: number | ((webhookId: string) => number)): void {
    this.statuses.set(path, status);
  }

  /** Every request to `path`, in arrival order. */
  at(path: string): ReceivedWebhook[] {
    return this.requests.filter((r) => r.path === path);
  }

  /** The requests to `path` that were answered 2xx: what the receiver accepted. */
  accepted(path: string): ReceivedWebhook[] {
    return this.at(path).filter((r) => r.status >= 200 && r.status < 300);
  }

  /** The accepted payloads of `path`, each verified with `secret` by the standardwebhooks library. */
  verified(path: string, secret: string): { id: string; payload: WebhookPayload }[] {
    const wh = new Webhook(secret);
    return this.accepted(path).map((r) => ({
      id: r.id,
      payload: wh.verify(r.body, r.headers as Record<string, string>) as WebhookPayload,
    }));
  }

  async stop(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise((resolve) => this.server.close(resolve));
  }

  async resume(): Promise<void> {
    this.server = this.create();
    await this.listen();
  }

  close(): Promise<void> {
    return this.server.listening ? this.stop() : Promise.resolve();
  }

  private create(): Server {
    return createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const path = (req.url ?? '/').split('?')[0];
        const id = String(req.headers['webhook-id']);
        const rule = this.statuses.get(path) ?? 200;
        const status = typeof rule === 'number' ? rule : rule(id);
        this.requests.push({
          path,
          id,
          headers: req.headers,
          body: Buffer.concat(chunks).toString('utf8'),
          status,
          at: Date.now(),
        });
        res
          .writeHead(status, { 'content-type': 'text/plain' })
          .end(status < 300 ? 'ok' : `answering ${status}`);
      });
    });
  }

  private async listen(): Promise<void> {
    this.server.listen(this.port, '127.0.0.1');
    await once(this.server, 'listening');
    this.port = (this.server.address() as AddressInfo).port;
  }
}

export interface WebhookPayload {
  type: string;
  timestamp: string;
  data: {
    auditAction: string;
    subject: { type: string; id: string } | null;
    registry: string | null;
    repository: string | null;
    digest: string | null;
    tags: string[];
    actor: { type: string; id: string | null; name: string | null };
    outcome: string;
    requestId: string | null;
    upstreamStatus: number | null;
    details: Record<string, unknown>;
  };
}
