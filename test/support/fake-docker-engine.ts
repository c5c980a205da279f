import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createTlsServer } from 'node:https';
import type { Duplex } from 'node:stream';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { programOf } from './storage.js';

/**
 * Just enough of the Docker Engine API, on a unix socket (or TCP), to test the docker GC executor at
 * its protocol boundary; no engine runs on these machines.
 *
 * - POST /containers/{id}/exec -> 201 {Id}; 404 unknown container; 409 container not running
 * - POST /exec/{id}/start with `Connection: Upgrade, Upgrade: tcp` -> `101 UPGRADED`, then the
 *   multiplexed stream (8-byte header: stream type, 3 zero bytes, big-endian uint32 size; then the
 *   payload), written in small pieces so the client must reassemble frames
 * - GET /exec/{id}/json -> {ID, Running, ExitCode, Pid, ProcessConfig}
 * - POST /containers/{id}/stop|start|restart -> 204, or 304 when already stopped/started
 *
 * A command wrapped by the executor as `sh -c 'echo <marker> $$ >&2; exec "$@"' sh argv...` is run as
 * the shell would: the marker line with a fake PID comes first on stderr, then argv's behaviour. An
 * exec of `kill -TERM <pid>` ends the hanging exec with that PID (exit 143). `nice -n <n> argv...` behaves
 * as argv, as `nice` would.
 */
export interface FakeExecBehaviour {
  /** Written in order; `stream` 1 = stdout, 2 = stderr. */
  frames?: { stream: 1 | 2; data: string | Buffer }[];
  exitCode?: number;
  /** Keep the stream open until a `kill` exec names this command's PID. */
  hangUntilKilled?: boolean;
  /** Write the wrapper's PID line after the frames (stdout and stderr may arrive in either order). */
  pidLineLast?: boolean;
  /** Close the attach stream after the frames while the command goes on; it exits after this many ms. */
  dropStreamFor?: number;
}

export interface RecordedRequest {
  method: string;
  /** Path with query, as sent. */
  url: string;
  headers: IncomingMessage['headers'];
  body: unknown;
}

interface ExecState {
  id: string;
  container: string;
  cmd: string[];
  env: string[];
  pid: number;
  running: boolean;
  exitCode: number | null;
  socket?: Duplex;
}

const PID_MARKER = '__registry_gateway_pid__';

export class FakeDockerEngine {
  readonly requests: RecordedRequest[] = [];
  readonly execs = new Map<string, ExecState>();
  /** name -> running */
  readonly containers = new Map<string, boolean>();
  private nextPid = 1000;

  private constructor(
    private readonly server: Server,
    private readonly dir: string | undefined,
    readonly socketPath: string | undefined,
    readonly port: number | undefined,
    private readonly behaviour: (argv: string[], env: string[]) => FakeExecBehaviour,
  ) {}

  static async start(
    opts: {
      containers?: Record<string, boolean>;
      onExec?: (argv: string[], env: string[]) => FakeExecBehaviour;
      /** Listen on a loopback TCP port instead of a unix socket. */
      tcp?: boolean;
      /** With tcp: serve HTTPS with this certificate (PEM files), as `dockerd --tlsverify` does. */
      tls?: { certPath: string; keyPath: string };
    } = {},
  ): Promise<FakeDockerEngine> {
    const dir = opts.tcp ? undefined : await mkdtemp(join(tmpdir(), 'registry-gw-fake-docker-'));
    const socketPath = dir ? join(dir, 'docker.sock') : undefined;
    const server = opts.tls
      ? (createTlsServer({
          cert: await readFile(opts.tls.certPath),
          key: await readFile(opts.tls.keyPath),
        }) as unknown as Server)
      : createServer();
    const listening = new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      if (socketPath) server.listen(socketPath, resolve);
      else server.listen(0, '127.0.0.1', resolve);
    });
    await listening;
    const port = socketPath ? undefined : (server.address() as { port: number }).port;
    const engine = new FakeDockerEngine(
      server,
      dir,
      socketPath,
      port,
      opts.onExec ?? (() => ({ exitCode: 0 })),
    );
    for (const [name, running] of Object.entries(opts.containers ?? { registry: true })) {
      engine.containers.set(name, running);
    }
    server.on('request', (req, res) => void engine.handle(req, res));
    server.on(
      'upgrade',
      (req: IncomingMessage, socket: Duplex, head: Buffer) => void engine.upgrade(req, socket, head),
    );
    return engine;
  }

  /** Requests without the exec-inspect polling noise, as `METHOD url`. */
  get calls(): string[] {
    return this.requests.map((r) => `${r.method} ${r.url}`);
  }

  async stop(): Promise<void> {
    for (const exec of this.execs.values()) exec.socket?.destroy();
    this.server.closeAllConnections();
    await new Promise((r) => this.server.close(r));
    if (this.dir) await rm(this.dir, { recursive: true, force: true });
  }

  private record(req: IncomingMessage, body: unknown): void {
    this.requests.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers, body });
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const raw = await readBody(req);
    const body = parseJson(raw);
    this.record(req, body);
    const url = new URL(req.url ?? '/', 'http://engine');
    const send = (status: number, json?: unknown) => {
      res.writeHead(status, json === undefined ? {} : { 'content-type': 'application/json' });
      res.end(json === undefined ? undefined : JSON.stringify(json));
    };
    let m: RegExpExecArray | null;
    if (req.method === 'POST' && (m = /^\/containers\/([^/]+)\/exec$/.exec(url.pathname))) {
      const name = decodeURIComponent(m[1]);
      if (!this.containers.has(name)) return send(404, { message: `No such container: ${name}` });
      if (!this.containers.get(name)) return send(409, { message: `Container ${name} is not running` });
      const b = body as { Cmd?: string[]; Env?: string[] };
      const id = randomBytes(32).toString('hex');
      this.execs.set(id, {
        id,
        container: name,
        cmd: b.Cmd ?? [],
        env: b.Env ?? [],
        pid: this.nextPid++,
        running: false,
        exitCode: null,
      });
      return send(201, { Id: id });
    }
    if (req.method === 'GET' && (m = /^\/exec\/([^/]+)\/json$/.exec(url.pathname))) {
      const exec = this.execs.get(m[1]);
      if (!exec) return send(404, { message: `No such exec instance: ${m[1]}` });
      return send(200, {
        ID: exec.id,
        Running: exec.running,
        ExitCode: exec.exitCode,
        Pid: exec.pid,
        ProcessConfig: { entrypoint: exec.cmd[0], arguments: exec.cmd.slice(1) },
      });
    }
    if (req.method === 'POST' && (m = /^\/containers\/([^/]+)\/(stop|start|restart)$/.exec(url.pathname))) {
      const name = decodeURIComponent(m[1]);
      if (!this.containers.has(name)) return send(404, { message: `No such container: ${name}` });
      const running = this.containers.get(name);
      if (m[2] === 'stop') {
        if (!running) return send(304);
        this.containers.set(name, false);
      } else if (m[2] === 'start') {
        if (running) return send(304);
        this.containers.set(name, true);
      } else {
        this.containers.set(name, true);
      }
      return send(204);
    }
    send(404, { message: 'page not found' });
  }

  private async upgrade(req: IncomingMessage, socket: Duplex, head: Buffer): Promise<void> {
    const length = Number(req.headers['content-length'] ?? 0);
    let raw = head;
    while (raw.length < length) {
      const chunk = await new Promise<Buffer | null>((resolve) => {
        socket.once('data', resolve);
        socket.once('end', () => resolve(null));
      });
      if (!chunk) break;
      raw = Buffer.concat([raw, chunk]);
    }
    this.record(req, parseJson(raw.toString('utf8')));
    const m = /^\/exec\/([^/]+)\/start$/.exec(new URL(req.url ?? '/', 'http://engine').pathname);
    const exec = m ? this.execs.get(m[1]) : undefined;
    if (!exec) {
      socket.end('HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}');
      return;
    }
    socket.write(
      'HTTP/1.1 101 UPGRADED\r\nContent-Type: application/vnd.docker.multiplexed-stream\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\n',
    );
    exec.running = true;
    exec.socket = socket;
    let argv = exec.cmd;
    const wrapped = argv[0] === 'sh' && argv[1] === '-c' && argv[2]?.includes(PID_MARKER);
    if (wrapped) argv = argv.slice(4);
    argv = programOf(argv);
    const behaviour = argv[0] === 'kill' ? {} : this.behaviour(argv, exec.env);
    if (wrapped && !behaviour.pidLineLast) await writeFrame(socket, 2, `${PID_MARKER} ${exec.pid}\n`);
    if (argv[0] === 'kill') {
      const target = [...this.execs.values()].find(
        (e) => e.running && String(e.pid) === argv[argv.length - 1],
      );
      if (target) this.finish(target, argv[1] === '-KILL' ? 137 : 143);
      this.finish(exec, target ? 0 : 1);
      return;
    }
    for (const frame of behaviour.frames ?? []) await writeFrame(socket, frame.stream, frame.data);
    if (wrapped && behaviour.pidLineLast) {
      // give the client time to act on the frames before it learns the PID
      await new Promise((r) => setTimeout(r, 50));
      await writeFrame(socket, 2, `${PID_MARKER} ${exec.pid}\n`);
    }
    if (behaviour.dropStreamFor !== undefined) {
      socket.end();
      const t = setTimeout(() => this.finish(exec, behaviour.exitCode ?? 0), behaviour.dropStreamFor);
      t.unref();
      return;
    }
    if (!behaviour.hangUntilKilled) this.finish(exec, behaviour.exitCode ?? 0);
  }

  private finish(exec: ExecState, exitCode: number): void {
    if (!exec.running) return;
    exec.running = false;
    exec.exitCode = exitCode;
    exec.socket?.end();
  }
}

/** One frame, written as header and payload in several pieces. */
async function writeFrame(socket: Duplex, stream: 1 | 2, data: string | Buffer): Promise<void> {
  const payload = Buffer.isBuffer(data) ? data : Buffer.from(data, 'utf8');
  const header = Buffer.alloc(8);
  header.writeUInt8(stream, 0);
  header.writeUInt32BE(payload.length, 4);
  const bytes = Buffer.concat([header, payload]);
  const pieces = [bytes.subarray(0, 3), bytes.subarray(3, 11), bytes.subarray(11)].filter((b) => b.length);
  for (const piece of pieces) {
    socket.write(piece);
    // separate TCP/unix writes, so the client sees partial headers and payloads
    await new Promise((r) => setImmediate(r));
  }
}

function readBody(req: IncomingMessage): Promise<string> {
  return new Promise((resolve) => {
    let text = '';
    req.setEncoding('utf8');
    req.on('data', (c: string) => (text += c));
    req.on('end', () => resolve(text));
  });
}

function parseJson(text: string): unknown {
  if (!text) return undefined;
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}
