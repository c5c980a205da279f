import { once } from 'node:events';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { LookupAddress } from 'node:dns';
import { Webhook } from 'standardwebhooks';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../config/app-config.js';
import { parseCidr } from '../config/config.schema.js';
import { generateSecret, assertValidSecret } from './webhook-secret.js';
import { bodyOf, classify, WebhookSender } from './webhook-sender.js';
import {
  assertTargetResolvesPublic,
  guardedLookup,
  parseTargetUrl,
  TargetForbiddenError,
  TargetPolicy,
} from './webhook-target.js';

const strict = new TargetPolicy({ allowPrivateTargets: false, allowedCidrs: [] });
const cidrs = (...c: string[]) => c.map((x) => parseCidr(x)!);

describe('TargetPolicy', () => {
  it.each([
    ['127.0.0.1', 'loopback'],
    ['::1', 'loopback'],
    ['10.1.2.3', 'private'],
    ['172.16.0.1', 'private'],
    ['172.31.255.255', 'private'],
    ['192.168.1.1', 'private'],
    ['100.64.0.1', 'private'],
    ['fd00::1', 'private'],
    ['fc12::1', 'private'],
    ['169.254.1.1', 'link-local'],
    ['fe80::1', 'link-local'],
    ['169.254.169.254', 'metadata'],
    ['fd00:ec2::254', 'metadata'],
    ['100.100.100.200', 'metadata'],
    ['0.0.0.0', 'reserved'],
    ['224.0.0.1', 'reserved'],
    ['255.255.255.255', 'reserved'],
    ['::', 'reserved'],
    ['ff02::1', 'reserved'],
    ['::ffff:10.0.0.1', 'private'],
    ['::ffff:a9fe:a9fe', 'metadata'],
    ['::ffff:127.0.0.1', 'loopback'],
    ['64:ff9b::a00:1', 'private'],
  ])('%s is %s', (address, category) => {
    expect(strict.category(address)).toBe(category);
    expect(strict.refusal(address)).toContain(category === 'metadata' ? 'metadata' : category);
  });

  it.each(['93.184.216.34', '8.8.8.8', '2606:4700:4700::1111', '172.32.0.1', '::ffff:8.8.8.8'])(
    '%s is public',
    (address) => {
      expect(strict.category(address)).toBeNull();
      expect(strict.refusal(address)).toBeNull();
    },
  );

  it('allows private addresses when configured, but not metadata', () => {
    const open = new TargetPolicy({ allowPrivateTargets: true, allowedCidrs: [] });
    expect(open.refusal('10.0.0.1')).toBeNull();
    expect(open.refusal('127.0.0.1')).toBeNull();
    expect(open.refusal('169.254.169.254')).toContain('metadata');
  });

  it('allows listed CIDRs only', () => {
    const listed = new TargetPolicy({
      allowPrivateTargets: false,
      allowedCidrs: cidrs('127.0.0.0/8', '10.20.0.0/16', '169.254.169.254', 'fd12::/16'),
    });
    expect(listed.refusal('127.0.0.1')).toBeNull();
    expect(listed.refusal('::ffff:127.0.0.1')).toBeNull();
    expect(listed.refusal('10.20.3.4')).toBeNull();
    expect(listed.refusal('10.21.0.1')).toContain('private');
    expect(listed.refusal('169.254.169.254')).toBeNull();
    expect(listed.refusal('fd12::5')).toBeNull();
    expect(listed.refusal('::1')).toContain('loopback');
  });

  it('reads its configuration, refusing a bad allow list', () => {
    const base = {
      DATABASE_URL: 'postgres://u@127.0.0.1:5432/db',
      REDIS_URL: 'redis://127.0.0.1:6379',
      SECRETS_KEY: 'a'.repeat(64),
    };
    expect(loadConfig(base).webhooks).toEqual({
      timeoutMs: 10_000,
      attempts: 17,
      backoffMs: 30_000,
      backoffMaxMs: 3 * 3600_000,
      workerConcurrency: 8,
      sweepEveryMs: 30_000,
      retentionDays: 30,
      registryEventsDedupDays: 30,
      allowPrivateTargets: false,
      allowedCidrs: [],
    });
    const c = loadConfig({
      ...base,
      WEBHOOK_ALLOWED_CIDRS: ' 10.0.0.0/8, ::1 ',
      WEBHOOK_ALLOW_PRIVATE_TARGETS: 'true',
    });
    expect(c.webhooks.allowedCidrs).toEqual(cidrs('10.0.0.0/8', '::1'));
    expect(c.webhooks.allowPrivateTargets).toBe(true);
    expect(() => loadConfig({ ...base, WEBHOOK_ALLOWED_CIDRS: '10.0.0.0/8,intranet' })).toThrow(
      /WEBHOOK_ALLOWED_CIDRS: intranet is not an address or CIDR/,
    );
  });

  it('parses CIDRs', () => {
    expect(parseCidr('10.0.0.0/8')).toEqual({ address: '10.0.0.0', prefix: 8, family: 'ipv4' });
    expect(parseCidr('::1')).toEqual({ address: '::1', prefix: 128, family: 'ipv6' });
    for (const bad of ['10.0.0.0/33', 'example.com', '10.0.0.0/8/1', '::/129', '10.0.0.0/x'])
      expect(parseCidr(bad)).toBeNull();
  });
});

describe('parseTargetUrl', () => {
  const codeOf = (url: string) => {
    try {
      parseTargetUrl(url, strict);
      return null;
    } catch (err) {
      return (err as { code: string }).code;
    }
  };

  it('accepts http(s) URLs of public hosts', () => {
    expect(codeOf('https://hooks.example.com/x?y=1')).toBeNull();
    expect(codeOf('http://93.184.216.34:8080/hook')).toBeNull();
  });

  it.each([
    ['ftp://example.com/', 'WEBHOOK_URL_INVALID'],
    ['file:///etc/passwd', 'WEBHOOK_URL_INVALID'],
    ['not a url', 'WEBHOOK_URL_INVALID'],
    ['https://user:pass@example.com/', 'WEBHOOK_URL_INVALID'],
    ['https://token@example.com/', 'WEBHOOK_URL_INVALID'],
    ['https://example.com/#frag', 'WEBHOOK_URL_INVALID'],
    [`https://example.com/${'a'.repeat(2100)}`, 'WEBHOOK_URL_INVALID'],
    ['http://127.0.0.1/', 'WEBHOOK_URL_FORBIDDEN'],
    ['http://[::1]:8080/', 'WEBHOOK_URL_FORBIDDEN'],
    ['http://169.254.169.254/latest/meta-data/', 'WEBHOOK_URL_FORBIDDEN'],
    ['http://[fd00::1]/', 'WEBHOOK_URL_FORBIDDEN'],
    ['http://[::ffff:10.0.0.1]/', 'WEBHOOK_URL_FORBIDDEN'],
    ['http://10.0.0.1/', 'WEBHOOK_URL_FORBIDDEN'],
    // WHATWG URL parsing normalizes these to 127.0.0.1 before anything is checked.
    ['http://2130706433/', 'WEBHOOK_URL_FORBIDDEN'],
    ['http://0x7f.1/', 'WEBHOOK_URL_FORBIDDEN'],
  ])('%s is refused with %s', (url, code) => {
    expect(codeOf(url)).toBe(code);
  });

  it('refuses a host name that resolves to a private address when saved; accepts one that does not resolve', async () => {
    const resolveTo =
      (...addresses: string[]) =>
      (): Promise<LookupAddress[]> =>
        Promise.resolve(addresses.map((address) => ({ address, family: address.includes(':') ? 6 : 4 })));
    const url = new URL('https://hooks.example.com/');
    await expect(assertTargetResolvesPublic(url, strict, resolveTo('8.8.8.8'))).resolves.toBeUndefined();
    await expect(
      assertTargetResolvesPublic(url, strict, resolveTo('8.8.8.8', '10.0.0.5')),
    ).rejects.toMatchObject({ code: 'WEBHOOK_URL_FORBIDDEN' });
    await expect(
      assertTargetResolvesPublic(url, strict, () => Promise.reject(new Error('ENOTFOUND'))),
    ).resolves.toBeUndefined();
  });
});

describe('secrets', () => {
  it('generates whsec_ secrets the standardwebhooks library takes', () => {
    const secret = generateSecret();
    expect(secret).toMatch(/^whsec_[A-Za-z0-9+/]{43}=$/);
    expect(assertValidSecret(secret)).toBe(secret);
    expect(() => new Webhook(secret)).not.toThrow();
  });

  it.each(['whsec_', 'whsec_c2hvcnQ=', 'abc', `whsec_${Buffer.alloc(65).toString('base64')}`, 'whsec_!!!!'])(
    'refuses %s',
    (s) => {
      expect(() => assertValidSecret(s)).toThrow(expect.objectContaining({ code: 'WEBHOOK_SECRET_INVALID' }));
    },
  );
});

describe('WebhookSender against a local receiver', () => {
  let server: Server;
  let port: number;
  const received: { headers: IncomingMessage['headers']; body: string }[] = [];

  beforeAll(async () => {
    server = createServer((req, res) => {
      let body = '';
      req.on('data', (c: Buffer) => (body += c.toString()));
      req.on('end', () => {
        received.push({ headers: req.headers, body });
        if (req.url === '/big') res.end('x'.repeat(10_000));
        else if (req.url === '/slow') setTimeout(() => res.end('late'), 2000);
        else if (req.url === '/fail') res.writeHead(500).end('boom');
        else res.end('ok');
      });
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    port = (server.address() as AddressInfo).port;
  });

  afterAll(async () => {
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
  });

  const message = {
    id: 'b3b5a3c2-58f3-4a8a-9d55-e8d0b6c5a7e1',
    type: 'gc.started',
    occurredAt: new Date('2026-11-22T10:00:00.000Z'),
    data: { registry: 'prod' },
  };
  const loopback = new TargetPolicy({ allowPrivateTargets: false, allowedCidrs: cidrs('127.0.0.1') });

  it('signs so that Webhook.verify accepts it, with every secret during a rotation', async () => {
    const [a, b] = [generateSecret(), generateSecret()];
    const sender = new WebhookSender(loopback, 1000);
    const outcome = await sender.send(`http://127.0.0.1:${port}/hook`, [a, b], message);
    await sender.close();
    expect(outcome).toMatchObject({ succeeded: true, statusCode: 200, responseBody: 'ok', error: null });
    const got = received.at(-1)!;
    expect(got.body).toBe(bodyOf(message));
    expect(got.headers['webhook-id']).toBe(message.id);
    expect(String(got.headers['webhook-signature']).split(' ')).toHaveLength(2);
    for (const secret of [a, b])
      expect(new Webhook(secret).verify(got.body, got.headers as Record<string, string>)).toEqual({
        type: 'gc.started',
        timestamp: '2026-11-22T10:00:00.000Z',
        data: { registry: 'prod' },
      });
    expect(() =>
      new Webhook(generateSecret()).verify(got.body, got.headers as Record<string, string>),
    ).toThrow();
  });

  it('keeps 4 KiB of the answer, reports non-2xx and timeouts', async () => {
    const sender = new WebhookSender(loopback, 500);
    const big = await sender.send(`http://127.0.0.1:${port}/big`, [generateSecret()], message);
    expect(big).toMatchObject({ succeeded: true, responseTruncated: true });
    expect(big.responseBody).toHaveLength(4096);
    const fail = await sender.send(`http://127.0.0.1:${port}/fail`, [generateSecret()], message);
    expect(fail).toMatchObject({
      succeeded: false,
      statusCode: 500,
      responseBody: 'boom',
      error: { code: 'WEBHOOK_HTTP_STATUS' },
    });
    const slow = await sender.send(`http://127.0.0.1:${port}/slow`, [generateSecret()], message);
    expect(slow).toMatchObject({ succeeded: false, statusCode: null, error: { code: 'WEBHOOK_TIMEOUT' } });
    await sender.close();
  });

  it('checks the address at connect time: a name that rebinds to a private address is refused', async () => {
    // The first lookup answers the allowed loopback address, the second a private one.
    const answers = ['127.0.0.1', '10.0.0.7'];
    let lookups = 0;
    const resolve = (): Promise<LookupAddress[]> =>
      Promise.resolve([{ address: answers[Math.min(lookups++, 1)], family: 4 }]);
    const sender = new WebhookSender(loopback, 1000, guardedLookup(loopback, resolve));
    const before = received.length;
    const first = await sender.send(`http://rebind.test:${port}/hook`, [generateSecret()], message);
    expect(first).toMatchObject({ succeeded: true });
    await sender.close();
    // A new connection (a new sender: no kept-alive socket) resolves again.
    const again = new WebhookSender(loopback, 1000, guardedLookup(loopback, resolve));
    const second = await again.send(`http://rebind.test:${port}/hook`, [generateSecret()], message);
    await again.close();
    expect(second).toMatchObject({ succeeded: false, error: { code: 'WEBHOOK_TARGET_FORBIDDEN' } });
    expect(second.error?.message).toContain('10.0.0.7');
    expect(received.length).toBe(before + 1);
  });

  it('refuses literal private addresses and real loopback names without connecting', async () => {
    const sender = new WebhookSender(strict, 1000);
    const before = received.length;
    const literal = await sender.send(`http://127.0.0.1:${port}/hook`, [generateSecret()], message);
    const named = await sender.send(`http://localhost:${port}/hook`, [generateSecret()], message);
    await sender.close();
    expect(literal.error?.code).toBe('WEBHOOK_TARGET_FORBIDDEN');
    expect(named.error?.code).toBe('WEBHOOK_TARGET_FORBIDDEN');
    expect(received.length).toBe(before);
  });

  it('names connection failures', async () => {
    const closed = createServer();
    closed.listen(0, '127.0.0.1');
    await once(closed, 'listening');
    const freePort = (closed.address() as AddressInfo).port;
    await new Promise((r) => closed.close(r));
    const sender = new WebhookSender(loopback, 1000);
    const refused = await sender.send(`http://127.0.0.1:${freePort}/`, [generateSecret()], message);
    await sender.close();
    expect(refused.error?.code).toBe('WEBHOOK_CONNECTION_FAILED');
    expect(classify(new TargetForbiddenError('x', 'no')).code).toBe('WEBHOOK_TARGET_FORBIDDEN');
    expect(classify(Object.assign(new Error('x'), { code: 'ENOTFOUND' })).code).toBe('WEBHOOK_DNS_FAILED');
  });
});
