import { lookup as dnsLookup, type LookupAddress } from 'node:dns';
import { BlockList, isIP, type LookupFunction } from 'node:net';
import type { Cidr } from '../config/config.schema.js';
import { DomainError } from '../common/domain-error.js';

/*
 * Where webhooks may be sent. A subscription's URL is checked when it is saved, and the address every
 * delivery connects to is checked again at connect time (the lookup undici's connector uses), so a host
 * name that later resolves to a private address (DNS rebinding) is refused, never connected to.
 */

export type AddressCategory = 'metadata' | 'loopback' | 'private' | 'link-local' | 'reserved';

/** Cloud instance metadata endpoints: never a webhook receiver; allowed only when listed by CIDR. */
const METADATA: [string, number, 'ipv4' | 'ipv6'][] = [
  ['169.254.169.254', 32, 'ipv4'], // AWS, GCP, Azure, OpenStack, DigitalOcean, Oracle
  ['169.254.170.2', 32, 'ipv4'], // AWS ECS task metadata
  ['100.100.100.200', 32, 'ipv4'], // Alibaba Cloud
  ['168.63.129.16', 32, 'ipv4'], // Azure wire server
  ['fd00:ec2::254', 128, 'ipv6'], // AWS IMDS over IPv6
];

const NOT_PUBLIC: [string, number, 'ipv4' | 'ipv6', Exclude<AddressCategory, 'metadata'>][] = [
  ['127.0.0.0', 8, 'ipv4', 'loopback'],
  ['::1', 128, 'ipv6', 'loopback'],
  ['10.0.0.0', 8, 'ipv4', 'private'],
  ['172.16.0.0', 12, 'ipv4', 'private'],
  ['192.168.0.0', 16, 'ipv4', 'private'],
  ['100.64.0.0', 10, 'ipv4', 'private'], // carrier-grade NAT
  ['fc00::', 7, 'ipv6', 'private'], // unique local, fd00::/8 included
  ['169.254.0.0', 16, 'ipv4', 'link-local'],
  ['fe80::', 10, 'ipv6', 'link-local'],
  ['0.0.0.0', 8, 'ipv4', 'reserved'],
  ['192.0.0.0', 24, 'ipv4', 'reserved'],
  ['192.0.2.0', 24, 'ipv4', 'reserved'],
  ['198.18.0.0', 15, 'ipv4', 'reserved'],
  ['198.51.100.0', 24, 'ipv4', 'reserved'],
  ['203.0.113.0', 24, 'ipv4', 'reserved'],
  ['224.0.0.0', 4, 'ipv4', 'reserved'], // multicast
  ['240.0.0.0', 4, 'ipv4', 'reserved'], // and broadcast
  ['::', 128, 'ipv6', 'reserved'],
  ['100::', 64, 'ipv6', 'reserved'],
  ['2001:db8::', 32, 'ipv6', 'reserved'],
  ['fec0::', 10, 'ipv6', 'reserved'],
  ['ff00::', 8, 'ipv6', 'reserved'],
];

/** IPv6 forms that carry an IPv4 address: judged by that address. */
function embeddedIpv4(address: string): string | null {
  const lower = address.toLowerCase();
  const dotted = /^(?:::ffff:|::ffff:0:|64:ff9b::)(\d+\.\d+\.\d+\.\d+)$/.exec(lower);
  if (dotted) return dotted[1];
  const hex = /^(?:::ffff:|64:ff9b::)([0-9a-f]{1,4}):([0-9a-f]{1,4})$/.exec(lower);
  if (hex) {
    const hi = parseInt(hex[1], 16);
    const lo = parseInt(hex[2], 16);
    return `${hi >> 8}.${hi & 255}.${lo >> 8}.${lo & 255}`;
  }
  return null;
}

export interface TargetPolicyOptions {
  allowPrivateTargets: boolean;
  allowedCidrs: Cidr[];
}

/** Which addresses webhooks may connect to. */
export class TargetPolicy {
  private readonly metadata = new BlockList();
  private readonly notPublic = new Map<Exclude<AddressCategory, 'metadata'>, BlockList>();
  private readonly allowed = new BlockList();

  constructor(private readonly options: TargetPolicyOptions) {
    for (const [a, p, f] of METADATA) this.metadata.addSubnet(a, p, f);
    for (const [a, p, f, category] of NOT_PUBLIC) {
      const list = this.notPublic.get(category) ?? new BlockList();
      list.addSubnet(a, p, f);
      this.notPublic.set(category, list);
    }
    for (const c of options.allowedCidrs) this.allowed.addSubnet(c.address, c.prefix, c.family);
  }

  /** What kind of non-public address this is, or null for a public one. */
  category(address: string): AddressCategory | null {
    const v4 = embeddedIpv4(address);
    if (v4) return this.category(v4);
    const family = isIP(address) === 6 ? 'ipv6' : 'ipv4';
    if (this.metadata.check(address, family)) return 'metadata';
    for (const [category, list] of this.notPublic) if (list.check(address, family)) return category;
    return null;
  }

  /** Why this address may not be a webhook target ("127.0.0.1 is a loopback address (…)"), or null. */
  refusal(address: string): string | null {
    const family = isIP(address) === 6 ? 'ipv6' : isIP(address) === 4 ? 'ipv4' : null;
    if (!family) return `${address} is not an IP address`;
    const v4 = embeddedIpv4(address);
    if (this.allowed.check(address, family) || (v4 && this.allowed.check(v4, 'ipv4'))) return null;
    const category = this.category(address);
    if (category === null) return null;
    if (category === 'metadata')
      return `${address} is a cloud metadata address (list it in WEBHOOK_ALLOWED_CIDRS to allow it)`;
    if (this.options.allowPrivateTargets) return null;
    return `${address} is a ${category} address (set WEBHOOK_ALLOW_PRIVATE_TARGETS=true or list it in WEBHOOK_ALLOWED_CIDRS to allow it)`;
  }
}

/** Raised by the guarded lookup; the delivery records it as WEBHOOK_TARGET_FORBIDDEN. */
export class TargetForbiddenError extends Error {
  readonly code = 'WEBHOOK_TARGET_FORBIDDEN';
  constructor(
    readonly hostname: string,
    readonly reason: string,
  ) {
    super(`${hostname}: ${reason}`);
    this.name = 'TargetForbiddenError';
  }
}

type Resolve = (hostname: string) => Promise<LookupAddress[]>;

export const systemResolve: Resolve = (hostname) =>
  new Promise((resolve, reject) =>
    dnsLookup(hostname, { all: true, verbatim: true }, (err, addresses) =>
      err ? reject(err) : resolve(addresses),
    ),
  );

/**
 * A `lookup` for net/tls.connect that resolves the name and refuses it when any of its addresses is not
 * allowed: what the socket connects to is exactly what was checked.
 */
export function guardedLookup(policy: TargetPolicy, resolve: Resolve = systemResolve): LookupFunction {
  return (hostname, options, callback) => {
    resolve(hostname).then(
      (all) => {
        const family = options.family === 4 || options.family === 6 ? options.family : 0;
        const addresses = family ? all.filter((a) => a.family === family) : all;
        const refused = addresses.map((a) => policy.refusal(a.address)).find((r) => r !== null);
        if (refused) return callback(new TargetForbiddenError(hostname, refused), '');
        if (addresses.length === 0) {
          const err = Object.assign(new Error(`${hostname} has no address`), { code: 'ENOTFOUND' });
          return callback(err, '');
        }
        if (options.all) return callback(null, addresses);
        callback(null, addresses[0].address, addresses[0].family);
      },
      (err: NodeJS.ErrnoException) => callback(err, ''),
    );
  };
}

export const WEBHOOK_URL_MAX = 2048;

/** The host of a URL without IPv6 brackets. */
export function hostOf(url: URL): string {
  return url.hostname.replace(/^\[|\]$/g, '');
}

/**
 * Checks what can be checked without the network: scheme, credentials, length, and the address when
 * the host is an IP literal. Returns the parsed URL.
 */
export function parseTargetUrl(raw: string, policy: TargetPolicy): URL {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new DomainError('WEBHOOK_URL_INVALID', 'url is not an absolute URL', 400, { field: 'url' });
  }
  if (raw.length > WEBHOOK_URL_MAX)
    throw new DomainError('WEBHOOK_URL_INVALID', `url is longer than ${WEBHOOK_URL_MAX} characters`, 400, {
      field: 'url',
    });
  if (url.protocol !== 'http:' && url.protocol !== 'https:')
    throw new DomainError('WEBHOOK_URL_INVALID', `url must be http or https, not ${url.protocol}`, 400, {
      field: 'url',
    });
  if (url.username || url.password)
    throw new DomainError(
      'WEBHOOK_URL_INVALID',
      'url must not carry credentials (user:password@); verify deliveries by their signature',
      400,
      { field: 'url' },
    );
  if (url.hash)
    throw new DomainError('WEBHOOK_URL_INVALID', 'url must not have a #fragment (it is never sent)', 400, {
      field: 'url',
    });
  const host = hostOf(url);
  if (!host) throw new DomainError('WEBHOOK_URL_INVALID', 'url has no host', 400, { field: 'url' });
  if (isIP(host)) {
    const refusal = policy.refusal(host);
    if (refusal) throw forbidden(host, refusal);
  }
  return url;
}

export function forbidden(host: string, reason: string): DomainError {
  return new DomainError('WEBHOOK_URL_FORBIDDEN', `webhook target refused: ${reason}`, 400, {
    field: 'url',
    host,
  });
}

/**
 * Resolves a host name when a subscription is saved and refuses it when it points somewhere private
 * now. A name that does not resolve (yet) is accepted: every delivery checks again.
 */
export async function assertTargetResolvesPublic(
  url: URL,
  policy: TargetPolicy,
  resolve: Resolve = systemResolve,
  timeoutMs = 3000,
): Promise<void> {
  const host = hostOf(url);
  if (isIP(host)) return;
  let timer: NodeJS.Timeout | undefined;
  const addresses = await Promise.race([
    resolve(host).catch(() => [] as LookupAddress[]),
    new Promise<LookupAddress[]>((r) => (timer = setTimeout(() => r([]), timeoutMs))),
  ]).finally(() => clearTimeout(timer));
  for (const a of addresses) {
    const refusal = policy.refusal(a.address);
    if (refusal) throw forbidden(host, `${host} resolves to ${a.address}; ${refusal}`);
  }
}

/** `https://hooks.example.com:8443`: what logs and the audit trail show (paths often hold credentials). */
export function originOf(raw: string): string {
  try {
    return new URL(raw).origin;
  } catch {
    return '(invalid url)';
  }
}
