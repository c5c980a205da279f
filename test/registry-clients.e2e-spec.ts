import { randomUUID } from 'node:crypto';
import { connect, createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { SecretBox } from '../src/common/secret-box.js';
import { loadConfig } from '../src/config/app-config.js';
import { RegistryClients } from '../src/registries/registry-clients.service.js';
import { RegistryEntity } from '../src/registries/registry.entity.js';
import { TEST_DATABASE_URL, TEST_REDIS_URL, TEST_SECRETS_KEY } from './support/environment.js';
import { RegistryProcess } from './support/registry-process.js';

const IDLE_MS = 1000;
const CREDENTIALS = { username: 'gateway', password: 'idle-pass' };

/**
 * A TCP front of the registry that counts the connections the gateway opens through it and sees which
 * side closed each; `hold()` keeps the registry's answers from the gateway until `release()`.
 */
class Front {
  accepted = 0;
  open = 0;
  /** Bytes the gateway sent, over all connections: a request reached the front. */
  received = 0;
  readonly closedByGateway: boolean[] = [];
  private held: { socket: Socket; chunks: Buffer[] }[] | undefined;
  private readonly sockets = new Set<Socket>();
  private constructor(
    private readonly server: Server,
    readonly url: string,
  ) {}

  static async start(registryPort: number): Promise<Front> {
    const server = createServer();
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const front = new Front(server, `http://127.0.0.1:${(server.address() as AddressInfo).port}`);
    server.on('connection', (gateway) => front.pipe(gateway, registryPort));
    return front;
  }

  hold(): void {
    this.held = [];
  }

  release(): void {
    const held = this.held ?? [];
    this.held = undefined;
    for (const { socket, chunks } of held) for (const chunk of chunks) socket.write(chunk);
  }

  close(): Promise<void> {
    for (const socket of this.sockets) socket.destroy();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }

  private pipe(gateway: Socket, registryPort: number): void {
    this.accepted++;
    this.open++;
    let gatewayEnded = false;
    let registryEnded = false;
    const registry = connect(registryPort, '127.0.0.1');
    this.sockets.add(gateway).add(registry);
    const queued = { socket: gateway, chunks: [] as Buffer[] };
    gateway.on('data', (chunk: Buffer) => {
      this.received += chunk.length;
      registry.write(chunk);
    });
    registry.on('data', (chunk: Buffer) => {
      if (!this.held) return gateway.write(chunk);
      if (!this.held.includes(queued)) this.held.push(queued);
      queued.chunks.push(chunk);
    });
    gateway.on('end', () => {
      if (!registryEnded) gatewayEnded = true;
      registry.end();
    });
    registry.on('end', () => {
      registryEnded = true;
      gateway.end();
    });
    gateway.on('error', () => registry.destroy());
    registry.on('error', () => gateway.destroy());
    registry.on('close', () => this.sockets.delete(registry));
    gateway.on('close', () => {
      this.sockets.delete(gateway);
      this.open--;
      this.closedByGateway.push(gatewayEnded);
      registry.destroy();
    });
  }
}

describe('RegistryClients: clients unused for the idle time are closed', () => {
  let registry: RegistryProcess;
  let secrets: SecretBox;
  let clients: RegistryClients;
  const fronts: Front[] = [];

  const front = async () => {
    const f = await Front.start(registry.port);
    fronts.push(f);
    return f;
  };

  const registryAt = (f: Front, name: string): RegistryEntity =>
    Object.assign(new RegistryEntity(), {
      id: randomUUID(),
      name,
      url: f.url,
      authType: 'basic',
      username: CREDENTIALS.username,
      passwordSealed: secrets.seal(CREDENTIALS.password),
      tlsCaCert: null,
      tlsInsecure: false,
    });

  /** Until the front has no connection open: the gateway closed its client (keep-alive lasts 30 s). */
  const closed = (f: Front) => vi.waitFor(() => expect(f.open).toBe(0), { timeout: 15_000, interval: 25 });

  beforeAll(async () => {
    registry = await RegistryProcess.start({ basicAuth: CREDENTIALS });
    const config = loadConfig({
      NODE_ENV: 'test',
      DATABASE_URL: TEST_DATABASE_URL,
      REDIS_URL: TEST_REDIS_URL,
      SECRETS_KEY: TEST_SECRETS_KEY,
      UPSTREAM_CLIENT_IDLE_MS: String(IDLE_MS),
    });
    secrets = new SecretBox(config);
    clients = new RegistryClients(config, secrets);
  });

  afterEach(async () => {
    await Promise.all(fronts.splice(0).map((f) => f.close()));
  });

  afterAll(async () => {
    await clients?.onModuleDestroy();
    await registry?.cleanup();
  });

  it('closes the connections of a client left unused, and the next call opens a working client', async () => {
    const f = await front();
    const entity = registryAt(f, 'idle');
    const held = clients.for(entity);
    expect((await held.ping()).status).toBe(200);
    expect([f.accepted, f.open]).toEqual([1, 1]);

    // Nothing uses it: the gateway closes the keep-alive connection, well before undici's 30 s would.
    await closed(f);
    expect(f.closedByGateway).toEqual([true]);

    // for() answers with an open client, credentials and all: a new connection.
    expect((await clients.for(entity).ping()).status).toBe(200);
    expect(f.accepted).toBe(2);
    // What a caller kept from before (a GC run across its collection) works too: it opens a client again.
    expect((await held.ping()).status).toBe(200);
  });

  it('keeps a client open while a call runs across the idle time', async () => {
    const busyFront = await front();
    const idleFront = await front();
    const busy = clients.for(registryAt(busyFront, 'busy'));

    busyFront.hold();
    const inFlight = busy.ping();
    inFlight.catch(() => undefined); // awaited below; a failure before that is the test's, not unhandled
    await vi.waitFor(() => expect(busyFront.received).toBeGreaterThan(0), { timeout: 10_000, interval: 10 });
    // Used after the busy call started, so once this client is closed, the busy one was unused as long.
    const idle = clients.for(registryAt(idleFront, 'idle-beside'));
    expect((await idle.ping()).status).toBe(200);
    await closed(idleFront);

    expect(busyFront.open).toBe(1);
    busyFront.release();
    expect((await inFlight).status).toBe(200);
    expect((await busy.ping()).status).toBe(200);
    // Not closed under its caller: a closed client's pool would have ended the connection once the call
    // finished (undici's close lets requests in flight complete), and the next call would have needed a
    // new client.
    expect(busyFront.closedByGateway).toEqual([]);
    expect(busyFront.open).toBe(busyFront.accepted);
  });

  it('does not open a client again for a handle whose registry was changed or removed meanwhile', async () => {
    const f = await front();
    const entity = registryAt(f, 'changed');
    const held = clients.for(entity);
    // Told apart without a request: neither a promise nor nameless.
    expect(held.name).toBe('changed');
    expect(await Promise.resolve(held)).toBe(held);
    expect(f.accepted).toBe(0);
    expect((await held.ping()).status).toBe(200);
    await closed(f);

    // The password rotated while the holder waited (a GC run across its collection): the handle kept from
    // before does not open a client with the old one; the registry's current handle works.
    const rotated = Object.assign(new RegistryEntity(), entity, {
      passwordSealed: secrets.seal(CREDENTIALS.password),
    });
    const current = clients.for(rotated);
    expect(current).not.toBe(held);
    await expect(held.ping()).rejects.toThrow();
    expect((await current.ping()).status).toBe(200);
    await closed(f);

    // Removed: nothing opens for it any more.
    await clients.forget(entity.id);
    const accepted = f.accepted;
    await expect(current.ping()).rejects.toThrow();
    expect(f.accepted).toBe(accepted);
  });
});
