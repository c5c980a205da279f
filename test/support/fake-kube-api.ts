import { randomBytes, randomUUID } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import { createServer } from 'node:https';
import type { Duplex } from 'node:stream';
import { WebSocketServer, type WebSocket } from 'ws';
import { makeCertificates, type TestCertificates } from './tls.js';
import { programOf } from './storage.js';

/**
 * Just enough of the Kubernetes API to test the kubernetes GC executor at its protocol boundary
 * (no cluster runs on these machines), over HTTPS (a private CA, given in the kubeconfig) with a
 * bearer token:
 *
 * - GET /api/v1/namespaces/{ns}/pods?labelSelector=k=v[,k=v], GET and DELETE .../pods/{name}
 * - GET .../pods/{name}/exec?command=...&container=...&stdout=true&stderr=true upgraded to a websocket
 *   speaking v4.channel.k8s.io: every message is one channel byte and data; 1 stdout, 2 stderr, 3 the
 *   status (metav1.Status JSON: Success, or Failure/NonZeroExitCode with an ExitCode cause), then close
 * - a "controller": a deleted pod gets a deletionTimestamp, disappears shortly after, and a new pod
 *   with the same labels appears Pending, then Running and Ready
 *
 * `env K=V ... argv` and `nice -n <n> argv...` behave as argv, as `env` and `nice` would.
 * Commands wrapped by the executor (`sh -c 'echo <marker> $$ >&2; exec "$@"' sh argv...`) report a
 * fake PID first; an exec of `kill -TERM <pid>` ends the hanging exec with that PID (exit 143).
 */
export interface FakePodSpec {
  name: string;
  labels?: Record<string, string>;
  containers?: string[];
  phase?: 'Pending' | 'Running' | 'Succeeded' | 'Failed';
  ready?: boolean;
}

export interface FakeKubeExecBehaviour {
  stdout?: string[];
  stderr?: string[];
  exitCode?: number;
  /** A Failure status without an exit code: the command never ran. */
  failure?: { reason: string; message: string };
  hangUntilKilled?: boolean;
  /** Close the websocket after the output without a status, as a dropped connection does; the command goes on. */
  dropConnection?: boolean;
}

export interface KubeRecordedRequest {
  method: string;
  url: string;
  authorization?: string;
  protocol?: string;
}

interface Pod {
  apiVersion: 'v1';
  kind: 'Pod';
  metadata: {
    name: string;
    namespace: string;
    uid: string;
    labels: Record<string, string>;
    deletionTimestamp?: string;
  };
  spec: { containers: { name: string; image: string }[] };
  status: { phase: string; conditions: { type: string; status: string }[] };
}

interface RunningExec {
  pid: number;
  pod: string;
  container: string;
  command: string[];
  ws: WebSocket;
  done: boolean;
}

const PID_MARKER = '__registry_gateway_pid__';
export const FAKE_KUBE_TOKEN = 'fake-kube-token-0123456789';

export class FakeKubeApi {
  readonly requests: KubeRecordedRequest[] = [];
  readonly pods = new Map<string, Pod>();
  readonly execs: RunningExec[] = [];
  private nextPid = 2000;
  private readonly timers = new Set<NodeJS.Timeout>();
  private readonly wss: WebSocketServer;

  private constructor(
    private readonly server: Server,
    private readonly certs: TestCertificates,
    readonly port: number,
    readonly namespace: string,
    private readonly behaviour: (argv: string[], pod: string, container: string) => FakeKubeExecBehaviour,
    /** ms from delete to gone, and from created to Ready */
    private readonly delays: { terminate: number; ready: number },
    /** The subprotocol it picks; API servers from 1.30 on pick v5 (v4 framing, plus stdin half-close). */
    protocol: 'v4.channel.k8s.io' | 'v5.channel.k8s.io',
  ) {
    this.wss = new WebSocketServer({
      noServer: true,
      handleProtocols: (offered) => (offered.has(protocol) ? protocol : false),
    });
  }

  static async start(opts: {
    namespace?: string;
    pods: FakePodSpec[];
    onExec?: (argv: string[], pod: string, container: string) => FakeKubeExecBehaviour;
    delays?: { terminate: number; ready: number };
    protocol?: 'v4.channel.k8s.io' | 'v5.channel.k8s.io';
  }): Promise<FakeKubeApi> {
    const certs = await makeCertificates();
    const server = createServer({
      cert: await readFile(certs.certPath),
      key: await readFile(certs.keyPath),
    }) as unknown as Server;
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const api = new FakeKubeApi(
      server,
      certs,
      (server.address() as { port: number }).port,
      opts.namespace ?? 'registry',
      opts.onExec ?? (() => ({ exitCode: 0 })),
      opts.delays ?? { terminate: 150, ready: 250 },
      opts.protocol ?? 'v4.channel.k8s.io',
    );
    for (const spec of opts.pods) api.addPod(spec);
    server.on('request', (req, res) => api.handle(req, res));
    server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) =>
      api.upgrade(req, socket, head),
    );
    return api;
  }

  /** A kubeconfig for this server with a bearer token user. */
  kubeconfig(token = FAKE_KUBE_TOKEN): string {
    return [
      'apiVersion: v1',
      'kind: Config',
      'clusters:',
      `- name: fake`,
      `  cluster:`,
      `    server: "https://127.0.0.1:${this.port}"`,
      `    certificate-authority-data: ${Buffer.from(this.certs.caPem).toString('base64')}`,
      'users:',
      `- name: gateway`,
      `  user: { token: "${token}" }`,
      'contexts:',
      '- name: fake',
      '  context: { cluster: fake, user: gateway, namespace: default }',
      'current-context: fake',
      '',
    ].join('\n');
  }

  addPod(spec: FakePodSpec): Pod {
    const ready = spec.ready ?? (spec.phase ?? 'Running') === 'Running';
    const pod: Pod = {
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { name: spec.name, namespace: this.namespace, uid: randomUUID(), labels: spec.labels ?? {} },
      spec: { containers: (spec.containers ?? ['registry']).map((name) => ({ name, image: 'registry:3' })) },
      status: {
        phase: spec.phase ?? 'Running',
        conditions: [{ type: 'Ready', status: ready ? 'True' : 'False' }],
      },
    };
    this.pods.set(spec.name, pod);
    return pod;
  }

  async stop(): Promise<void> {
    for (const t of this.timers) clearTimeout(t);
    for (const e of this.execs) e.ws.terminate();
    this.wss.close();
    this.server.closeAllConnections();
    await new Promise((r) => this.server.close(r));
    await this.certs.cleanup();
  }

  private later(ms: number, fn: () => void): void {
    const t = setTimeout(() => {
      this.timers.delete(t);
      fn();
    }, ms);
    this.timers.add(t);
  }

  private authorized(req: IncomingMessage): boolean {
    return req.headers.authorization === `Bearer ${FAKE_KUBE_TOKEN}`;
  }

  private handle(req: IncomingMessage, res: ServerResponse): void {
    this.requests.push({
      method: req.method ?? '',
      url: req.url ?? '',
      authorization: req.headers.authorization,
    });
    req.resume();
    const send = (code: number, body: unknown) => {
      res.writeHead(code, { 'content-type': 'application/json' });
      res.end(JSON.stringify(body));
    };
    const status = (code: number, reason: string, message: string) =>
      send(code, {
        apiVersion: 'v1',
        kind: 'Status',
        metadata: {},
        status: 'Failure',
        message,
        reason,
        code,
      });
    if (!this.authorized(req)) return status(401, 'Unauthorized', 'Unauthorized');
    const url = new URL(req.url ?? '/', 'http://api');
    const list = new RegExp(`^/api/v1/namespaces/${this.namespace}/pods$`);
    const one = new RegExp(`^/api/v1/namespaces/${this.namespace}/pods/([^/]+)$`);
    let m: RegExpExecArray | null;
    if (req.method === 'GET' && list.test(url.pathname)) {
      const selector = url.searchParams.get('labelSelector') ?? '';
      const wanted = selector
        .split(',')
        .filter(Boolean)
        .map((kv) => kv.split('='));
      const items = [...this.pods.values()].filter((p) =>
        wanted.every(([k, v]) => p.metadata.labels[k] === v),
      );
      return send(200, { apiVersion: 'v1', kind: 'PodList', metadata: { resourceVersion: '1' }, items });
    }
    if ((m = one.exec(url.pathname))) {
      const pod = this.pods.get(decodeURIComponent(m[1]));
      if (!pod) return status(404, 'NotFound', `pods "${m[1]}" not found`);
      if (req.method === 'GET') return send(200, pod);
      if (req.method === 'DELETE') {
        if (!pod.metadata.deletionTimestamp) this.terminate(pod);
        return send(200, pod);
      }
    }
    status(404, 'NotFound', 'the server could not find the requested resource');
  }

  /** What a ReplicaSet does: the old pod goes, a new one with the same labels comes up. */
  private terminate(pod: Pod): void {
    pod.metadata.deletionTimestamp = new Date().toISOString();
    this.later(this.delays.terminate, () => this.pods.delete(pod.metadata.name));
    const base = pod.metadata.name.replace(/-[a-z0-9]{5}$/, '');
    const fresh = this.addPod({
      name: `${base}-${randomBytes(3).toString('hex').slice(0, 5)}`,
      labels: pod.metadata.labels,
      containers: pod.spec.containers.map((c) => c.name),
      phase: 'Pending',
      ready: false,
    });
    this.later(this.delays.ready, () => {
      fresh.status.phase = 'Running';
      fresh.status.conditions = [{ type: 'Ready', status: 'True' }];
    });
  }

  private upgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    this.requests.push({
      method: `${req.method} (websocket)`,
      url: req.url ?? '',
      authorization: req.headers.authorization,
      protocol: String(req.headers['sec-websocket-protocol'] ?? ''),
    });
    const refuse = (code: number, text: string) => {
      socket.end(
        `HTTP/1.1 ${code} ${text}\r\nContent-Type: text/plain\r\nContent-Length: ${text.length}\r\n\r\n${text}`,
      );
    };
    if (!this.authorized(req)) return refuse(401, 'Unauthorized');
    const url = new URL(req.url ?? '/', 'http://api');
    const m = new RegExp(`^/api/v1/namespaces/${this.namespace}/pods/([^/]+)/exec$`).exec(url.pathname);
    const pod = m ? this.pods.get(decodeURIComponent(m[1])) : undefined;
    if (!pod) return refuse(404, 'Not Found');
    const container = url.searchParams.get('container') ?? '';
    const command = url.searchParams.getAll('command');
    this.wss.handleUpgrade(req, socket, head, (ws) => void this.run(ws, pod, container, command));
  }

  private async run(ws: WebSocket, pod: Pod, container: string, command: string[]): Promise<void> {
    const exec: RunningExec = {
      pid: this.nextPid++,
      pod: pod.metadata.name,
      container,
      command,
      ws,
      done: false,
    };
    this.execs.push(exec);
    const send = async (channel: number, data: string) => {
      ws.send(Buffer.concat([Buffer.from([channel]), Buffer.from(data, 'utf8')]));
      await new Promise((r) => setImmediate(r));
    };
    // the API server opens every channel with an empty message; clients skip them
    for (const channel of [1, 2, 3]) await send(channel, '');
    let argv = command;
    if (argv[0] === 'sh' && argv[1] === '-c' && argv[2]?.includes(PID_MARKER)) {
      argv = argv.slice(4);
      await send(2, `${PID_MARKER} ${exec.pid}\n`);
    }
    if (argv[0] === 'kill') {
      const target = this.execs.find((e) => !e.done && String(e.pid) === argv[argv.length - 1]);
      if (target) this.finish(target, argv[1] === '-KILL' ? 137 : 143);
      this.finish(exec, target ? 0 : 1);
      return;
    }
    argv = programOf(argv);
    const b = this.behaviour(argv, pod.metadata.name, container);
    for (const line of b.stdout ?? []) await send(1, line);
    for (const line of b.stderr ?? []) await send(2, line);
    if (b.failure) {
      exec.done = true;
      ws.send(
        Buffer.concat([
          Buffer.from([3]),
          Buffer.from(
            JSON.stringify({
              metadata: {},
              status: 'Failure',
              message: b.failure.message,
              reason: b.failure.reason,
            }),
          ),
        ]),
      );
      ws.close();
      return;
    }
    if (b.dropConnection) {
      ws.terminate();
      return;
    }
    if (!b.hangUntilKilled) this.finish(exec, b.exitCode ?? 0);
  }

  private finish(exec: RunningExec, code: number): void {
    if (exec.done) return;
    exec.done = true;
    if (exec.ws.readyState !== exec.ws.OPEN) return;
    const status =
      code === 0
        ? { metadata: {}, status: 'Success' }
        : {
            metadata: {},
            status: 'Failure',
            message: `command terminated with non-zero exit code: error executing command [${exec.command.join(' ')}], exit code ${code}`,
            reason: 'NonZeroExitCode',
            details: { causes: [{ reason: 'ExitCode', message: String(code) }] },
          };
    exec.ws.send(Buffer.concat([Buffer.from([3]), Buffer.from(JSON.stringify(status))]));
    exec.ws.close();
  }
}
