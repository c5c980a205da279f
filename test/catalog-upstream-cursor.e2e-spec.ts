import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { request } from 'undici';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { encodeCursor } from '../src/common/cursor.js';
import { verifyThroughRegistry } from '../src/gc/gc-verifier.js';
import { RegistryClient } from '../src/registries/client/registry-client.js';
import { adminRequest, TestEnvironment, TestGateway, startApi } from './support/gateway.js';
import { ImagePusher } from './support/image-pusher.js';
import { RegistryProcess } from './support/registry-process.js';

/** The upstream page size the gateway asks for: nine repositories make three upstream pages. */
const PAGE = 3;
const ALL = Array.from({ length: 9 }, (_, i) => `team/r${String(i + 1).padStart(2, '0')}`);
/** team/r05 stays in `_catalog` with no tags, in the middle of the second upstream page. */
const TAGGED = ALL.filter((name) => name !== 'team/r05');

/**
 * How the front in front of the registry links `_catalog`'s pages:
 * - opaque: with its own token (`page=<base64url of the registry's query>`) and nothing else, the way
 *   registries that page with their own cursor do; it ignores a `last` it is sent;
 * - opaque-loop: the same, and the last page links back at the second;
 * - plain-loop: the registry's own Links (`last=<name>&n=3`), and the last page links back at the second;
 * - self-loop: the registry's own Links, and the last page links at itself.
 */
type Mode = 'opaque' | 'opaque-loop' | 'self-loop' | 'plain-loop';

const token = (query: string) => Buffer.from(query).toString('base64url');

describe('repositories of a registry that pages its catalog with its own cursor', () => {
  let env: TestEnvironment;
  let gw: TestGateway;
  let registry: RegistryProcess;
  let front: Server;
  let frontUrl: string;
  let mode: Mode = 'opaque';
  /** The query of each `_catalog` request the front was sent, since the last test began. */
  let asked: string[] = [];
  const http = () => adminRequest(gw.server);
  const opaque = () => mode.startsWith('opaque');

  /** Passes a request on to the real registry and its answer back, the Link rewritten as `mode` says. */
  const pass = (req: IncomingMessage, res: ServerResponse) => {
    const url = new URL(req.url!, 'http://front');
    const catalog = url.pathname === '/v2/_catalog';
    let path = req.url!;
    if (catalog) {
      asked.push(url.search);
      // A client that never moves on would ask forever: a budget ends it with an error.
      if (asked.length > 60) return void res.writeHead(503).end();
      if (opaque()) {
        const page = url.searchParams.get('page');
        path = `/v2/_catalog?${page ? Buffer.from(page, 'base64url').toString() : `n=${url.searchParams.get('n') ?? 100}`}`;
      }
    }
    void request(`${registry.url}${path}`, {
      method: req.method as 'GET',
      headers: { ...req.headers, host: undefined },
      body: req.method === 'GET' || req.method === 'HEAD' ? undefined : req,
    }).then(async (r) => {
      const headers = Object.fromEntries(
        Object.entries(r.headers).filter(([k]) => !['transfer-encoding', 'connection', 'link'].includes(k)),
      ) as Record<string, string>;
      const body = Buffer.from(await r.body.arrayBuffer());
      if (catalog) {
        const link = /^<([^>]*)>/.exec(String(r.headers.link ?? ''))?.[1];
        const asks = new URL(path, 'http://front').search.slice(1);
        const target = (query: string) =>
          opaque() ? `/v2/_catalog?page=${token(query)}` : `/v2/_catalog?${query}`;
        let next = link ? target(new URL(link, 'http://front').search.slice(1)) : undefined;
        if (!next && mode === 'self-loop') next = target(asks);
        // The Link the second page was read with (Distribution's own, or its token).
        if (!next && mode.endsWith('-loop')) next = target(`last=${encodeURIComponent(ALL[2])}&n=${PAGE}`);
        if (next) headers.link = `<${next}>; rel="next"`;
      }
      res.writeHead(r.statusCode, headers).end(body);
    });
  };

  /** Every repository name the REST list gives, page by page with `limit`, and how many pages it took. */
  const walk = async (registryName: string, limit: number, cursor?: string) => {
    const names: string[] = [];
    let pages = 0;
    do {
      const res = await http()
        .get(`/api/v1/registries/${registryName}/repositories`)
        .query({ limit, ...(cursor ? { cursor } : {}) })
        .expect(200);
      names.push(...res.body.items.map((r: { name: string }) => r.name));
      cursor = res.body.nextCursor ?? undefined;
      pages++;
    } while (cursor && pages <= 20);
    return { names, pages, cursor };
  };

  beforeAll(async () => {
    env = await TestEnvironment.create('catalog-upstream-cursor');
    registry = await RegistryProcess.start();
    const pusher = new ImagePusher(registry.url);
    for (const name of ALL) {
      const image = await pusher.pushImage(name, ['v1'], { seed: name });
      if (name === 'team/r05') {
        const del = await fetch(`${registry.url}/v2/${name}/manifests/${image.digest}`, { method: 'DELETE' });
        expect(del.status).toBe(202);
      }
    }
    await pusher.close();
    front = createServer(pass);
    await new Promise<void>((resolve) => front.listen(0, '127.0.0.1', resolve));
    frontUrl = `http://127.0.0.1:${(front.address() as AddressInfo).port}`;
    gw = await startApi(env, { CATALOG_PAGE_SIZE: String(PAGE) });
    await http().post('/api/v1/registries').send({ name: 'opaque', url: frontUrl }).expect(201);
    await http().post('/api/v1/registries').send({ name: 'plain', url: registry.url }).expect(201);
  });

  beforeEach(() => {
    mode = 'opaque';
    asked = [];
  });

  afterAll(async () => {
    await gw?.close();
    await new Promise((resolve) => front?.close(resolve));
    await registry?.cleanup();
    await env?.destroy();
  });

  it.each([1, 2, 3, 4, 5, 7, 8, 100])(
    'lists every repository once with limit %i, following the upstream cursor, our pages ending mid upstream page',
    async (limit) => {
      const { names, pages } = await walk('opaque', limit);
      expect(names).toEqual(TAGGED);
      expect(pages).toBe(Math.ceil(TAGGED.length / limit));
      // Past the first page, the registry is asked only with the cursor it gave, never a made-up `last`.
      expect(asked.filter((q) => q !== `?n=${PAGE}`).every((q) => /^\?page=[\w-]+$/.test(q))).toBe(true);
      if (limit === 100) expect(asked).toHaveLength(3);
    },
  );

  it('still takes a cursor of the earlier { last } shape, as Distribution `last`', async () => {
    // What a client paging through the list held when the gateway was upgraded: the last name it got.
    const first = await walk('plain', 2, encodeCursor({ last: 'team/r02' }));
    expect(first.names).toEqual(['team/r03', 'team/r04', 'team/r06', 'team/r07', 'team/r08', 'team/r09']);
    expect(first.pages).toBe(3);
    const second = await walk('plain', 3, encodeCursor({ last: 'team/r05' }));
    expect(second.names).toEqual(['team/r06', 'team/r07', 'team/r08', 'team/r09']);
    expect((await walk('plain', 2)).names).toEqual(TAGGED);
  });

  it('refuses a cursor of neither shape, or one asking the registry for a larger page than ours', async () => {
    const bad = [
      { page: 'no-query' },
      { page: 'n=100000' },
      { after: 1 },
      { last: 'team/r01', page: 'n=3' },
      {},
    ];
    for (const cursor of bad) {
      const res = await http()
        .get('/api/v1/registries/plain/repositories')
        .query({ cursor: encodeCursor(cursor) })
        .expect(400);
      expect(res.body.error.code).toBe('VALIDATION_FAILED');
    }
  });

  it('asks the registry for pages of its own size whatever page size a cursor names', async () => {
    // The registry's own Links (the last page links at itself); a cursor made up with `n` twice.
    mode = 'self-loop';
    const cursor = encodeCursor({ page: `n=1&last=${encodeURIComponent('team/r01')}&n=100000` });
    const res = await http()
      .get('/api/v1/registries/opaque/repositories')
      .query({ cursor, limit: 100 })
      .expect(200);
    expect(res.body.items.map((i: { name: string }) => i.name)).toEqual(TAGGED.slice(1));
    expect(asked.length).toBeGreaterThan(0);
    for (const q of asked) expect(new URLSearchParams(q).getAll('n')).toEqual([String(PAGE)]);
  });

  it.each(['opaque-loop', 'plain-loop', 'self-loop'] as const)(
    'ends when the Link points back at a page already read (%s)',
    async (loop) => {
      mode = loop;
      const res = await http().get('/api/v1/registries/opaque/repositories?limit=100').expect(200);
      expect(res.body.items.map((r: { name: string }) => r.name)).toEqual(TAGGED);
      expect(res.body.nextCursor).toBeNull();
      expect(asked).toHaveLength(3);
    },
  );

  describe('RegistryClient.catalogPage, walked as the GC verifier walks it', () => {
    /** `next` passed back as it comes until it is null, as the GC verifier's catalog walk does. */
    const walkPages = async (client: RegistryClient) => {
      const names: string[] = [];
      let last: string | undefined;
      let pages = 0;
      do {
        const page = await client.catalogPage(PAGE, last);
        names.push(...page.repositories);
        last = page.next ?? undefined;
      } while (last && ++pages < 20);
      return { names, ended: last === undefined };
    };
    const clientOf = (url: string) =>
      new RegistryClient(
        { name: 'under-test', url, auth: { type: 'none' }, tls: { insecure: false } },
        { timeoutMs: 10_000, connections: 4 },
      );

    it.each([
      ['reads every page once through an opaque cursor', 'opaque'],
      ['stops where the Link points at the page just read', 'self-loop'],
    ] as const)('%s', async (_, walked) => {
      mode = walked;
      const client = clientOf(frontUrl);
      try {
        expect(await walkPages(client)).toEqual({ names: ALL, ended: true });
        expect(asked).toHaveLength(3);
      } finally {
        await client.close();
      }
    });

    it('ends the GC verifier’s catalog walk where a Link leads back to a page it read, every tag checked', async () => {
      mode = 'opaque-loop';
      const client = clientOf(frontUrl);
      try {
        const check = await verifyThroughRegistry(client, { deleted: [], tagged: 'catalog', concurrency: 4 });
        expect(check).toMatchObject({ missing: [], stillServed: [], truncated: false });
        // Each tagged repository's one image, those of the pages read again once more at most.
        expect(check.manifestsChecked).toBeGreaterThanOrEqual(TAGGED.length);
        // The whole catalog, then the second and third pages, then the Link back to the second: not asked.
        expect(asked).toHaveLength(3);
      } finally {
        await client.close();
      }
    });

    it('still reads a bare repository name as Distribution `last`', async () => {
      const client = clientOf(registry.url);
      try {
        const page = await client.catalogPage(PAGE, 'team/r03');
        expect(page.repositories).toEqual(['team/r04', 'team/r05', 'team/r06']);
        const rest = await client.catalogPage(PAGE, page.next!);
        expect(rest).toEqual({ repositories: ['team/r07', 'team/r08', 'team/r09'], next: null });
      } finally {
        await client.close();
      }
    });
  });

  // Last: it adds repositories.
  it('resumes after the name a cursor holds when names added before it moved it to a later upstream page', async () => {
    const first = await http().get('/api/v1/registries/opaque/repositories?limit=2').expect(200);
    expect(first.body.items.map((r: { name: string }) => r.name)).toEqual(['team/r01', 'team/r02']);
    // The first upstream page becomes team/r00, team/r00b, team/r01: team/r02 is on the second now.
    const pusher = new ImagePusher(registry.url);
    for (const name of ['team/r00', 'team/r00b']) await pusher.pushImage(name, ['v1'], { seed: name });
    await pusher.close();
    const rest = await walk('opaque', 2, first.body.nextCursor);
    expect(rest.names).toEqual(TAGGED.slice(2));
  });
});
