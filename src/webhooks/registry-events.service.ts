import { isIP } from 'node:net';
import { Injectable } from '@nestjs/common';
import { EventEmitter2 } from '@nestjs/event-emitter';
import { InjectDataSource } from '@nestjs/typeorm';
import { DataSource } from 'typeorm';
import { recordAudit } from '../audit/audit-event.js';
import { DomainError, ValidationError } from '../common/domain-error.js';
import { isDigest, isRepositoryName, isTag } from '../registries/client/reference.js';
import {
  eventsTokenMatches,
  RegistriesService,
  RegistryNotFoundError,
} from '../registries/registries.service.js';

/** The media type distribution posts its notification envelopes with. */
export const REGISTRY_EVENTS_MEDIA_TYPE = 'application/vnd.docker.distribution.events.v1+json';

/** What RegistryClient sends; deletes made through the gateway are audited where they are made. */
const GATEWAY_USER_AGENT = 'registry-gateway';
const MAX_EVENTS = 1000;
const MAX_ID = 256;
// Informational strings are cut rather than refused: a refusal makes distribution retry forever.
const MAX_TEXT = 512;

/** One event of distribution's notification envelope, reduced to what the gateway reads. */
export interface RegistryEvent {
  id: string;
  timestamp: string | null;
  action: string;
  target: { repository: string | null; digest: string | null; tag: string | null };
  request: { id: string | null; addr: string | null; method: string | null; useragent: string | null };
  actor: { name: string | null };
  source: { instanceID: string | null };
}

export interface RegistryEventsReceipt {
  received: number;
  audited: number;
  duplicates: number;
  ignored: number;
}

/** Put in place of the body by the content-type parser when it is not JSON, so auth still comes first. */
export class UnparsableBody {
  constructor(readonly reason: string) {}
}

/**
 * Inbound notifications from registries: deletes made directly on a registry (curl, a CI script, the
 * registry's own UI) land in the audit trail too, once per event however often it is delivered.
 */
@Injectable()
export class RegistryEventsService {
  constructor(
    private readonly registries: RegistriesService,
    @InjectDataSource() private readonly ds: DataSource,
    private readonly events: EventEmitter2,
  ) {}

  /** One answer for an unknown registry, a registry without a token and a wrong token. */
  async authenticate(registryName: string, authorization: string | undefined): Promise<void> {
    let storedHash: string | null = null;
    try {
      storedHash = (await this.registries.get(registryName)).eventsTokenHash;
    } catch (err) {
      if (!(err instanceof RegistryNotFoundError)) throw err;
    }
    if (!eventsTokenMatches(storedHash, bearerToken(authorization))) {
      throw new DomainError(
        'UNAUTHENTICATED',
        'a valid events token for this registry is required (Authorization: Bearer <token>)',
        401,
      );
    }
  }

  async receive(registry: string, body: unknown): Promise<RegistryEventsReceipt> {
    const events = parseEnvelope(body);
    const receipt: RegistryEventsReceipt = { received: events.length, audited: 0, duplicates: 0, ignored: 0 };
    // In order and one transaction each: the trail keeps the registry's order, and a failure part-way
    // leaves the events before it recorded, to be skipped as duplicates when distribution retries.
    for (const event of events) receipt[await this.handle(registry, event)]++;
    return receipt;
  }

  private async handle(registry: string, e: RegistryEvent): Promise<'audited' | 'duplicates' | 'ignored'> {
    if (e.action !== 'delete') return 'ignored';
    if (e.request.useragent?.startsWith(GATEWAY_USER_AGENT)) return 'ignored';
    const { repository, digest, tag } = e.target;
    return this.ds.transaction(async (manager) => {
      const seen = (await manager.query(
        `INSERT INTO registry_events_seen (registry, event_id) VALUES ($1, $2)
         ON CONFLICT DO NOTHING RETURNING event_id`,
        [registry, e.id],
      )) as unknown[];
      if (seen.length === 0) return 'duplicates';
      // Last step of the transaction: it takes the trail's append lock until commit.
      await recordAudit(this.events, {
        action: digest
          ? 'registry.manifest.deleted'
          : tag
            ? 'registry.tag.deleted'
            : 'registry.repository.deleted',
        actor: {
          type: e.actor.name ? 'user' : 'anonymous',
          id: e.actor.name ?? null,
          name: e.actor.name ?? null,
        },
        sourceIp: ipOf(e.request.addr),
        registry,
        repository,
        digest,
        tags: tag ? [tag] : [],
        outcome: 'success',
        subject: { type: 'registry_event', id: e.id },
        details: {
          eventId: e.id,
          // Distribution 2.x reports a digest delete as one manifest event plus one tag event per tag it
          // removed, all with the request id of that DELETE: this groups them.
          registryRequestId: e.request.id,
          timestamp: e.timestamp,
          useragent: e.request.useragent,
          method: e.request.method,
          sourceInstance: e.source.instanceID,
          observedVia: 'notification',
        },
        manager,
      });
      return 'audited';
    });
  }
}

function bearerToken(header: string | undefined): string | null {
  const match = /^Bearer +(\S+) *$/i.exec(header ?? '');
  return match ? match[1] : null;
}

/** `request.addr` is host:port, [v6]:port, or a bare IP taken from X-Forwarded-For by the registry. */
export function ipOf(addr: string | null): string | null {
  if (!addr) return null;
  const host = /^\[([^\]]+)\]:\d+$/.exec(addr)?.[1] ?? /^([^:]+):\d+$/.exec(addr)?.[1] ?? addr;
  // Zone ids (fe80::1%eth0) pass isIP but not Postgres' inet.
  return isIP(host) && !host.includes('%') ? host : null;
}

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);

/**
 * Checks the envelope and keeps only what is read. Strict about what identifies the change (event id,
 * repository, digest, tag), lenient about the rest, so a newer registry's extra fields do not break it.
 */
export function parseEnvelope(body: unknown): RegistryEvent[] {
  if (body instanceof UnparsableBody)
    throw new ValidationError(`body is not JSON: ${body.reason}`, { problems: [body.reason] });
  if (!isObj(body) || !Array.isArray(body.events))
    throw invalid(['body must be an object with an "events" array']);
  if (body.events.length > MAX_EVENTS)
    throw invalid([`at most ${MAX_EVENTS} events per notification, got ${body.events.length}`]);
  const problems: string[] = [];
  const events = body.events.map((raw, i) => parseEvent(raw, `events[${i}]`, problems));
  if (problems.length) throw invalid(problems);
  return events as RegistryEvent[];
}

function parseEvent(raw: unknown, at: string, problems: string[]): RegistryEvent | null {
  if (!isObj(raw)) {
    problems.push(`${at} must be an object`);
    return null;
  }
  const str = (obj: unknown, key: string, path: string, max = MAX_TEXT): string | null => {
    if (obj === undefined || obj === null) return null;
    if (!isObj(obj)) {
      problems.push(`${path} must be an object`);
      return null;
    }
    const v = obj[key];
    if (v === undefined || v === null || v === '') return null;
    if (typeof v !== 'string') {
      problems.push(`${path}.${key} must be a string`);
      return null;
    }
    return v.slice(0, max);
  };
  const id = str(raw, 'id', at);
  if (!id || (raw.id as string).length > MAX_ID) problems.push(`${at}.id must be a string of 1-${MAX_ID}`);
  const action = str(raw, 'action', at);
  if (!action) problems.push(`${at}.action must be a non-empty string`);
  const event: RegistryEvent = {
    id: id ?? '',
    action: action ?? '',
    timestamp: str(raw, 'timestamp', at),
    target: { repository: null, digest: null, tag: null },
    request: {
      id: str(raw.request, 'id', `${at}.request`),
      addr: str(raw.request, 'addr', `${at}.request`),
      method: str(raw.request, 'method', `${at}.request`),
      useragent: str(raw.request, 'useragent', `${at}.request`),
    },
    actor: { name: str(raw.actor, 'name', `${at}.actor`) },
    source: { instanceID: str(raw.source, 'instanceID', `${at}.source`) },
  };
  // Only deletes are recorded; what the other actions carry is not read.
  if (action === 'delete') {
    const t = `${at}.target`;
    if (!isObj(raw.target)) {
      problems.push(`${t} must be an object`);
      return event;
    }
    const repository = str(raw.target, 'repository', t, Infinity);
    const digest = str(raw.target, 'digest', t, Infinity);
    const tag = str(raw.target, 'tag', t, Infinity);
    if (!repository || !isRepositoryName(repository))
      problems.push(`${t}.repository must be a repository name`);
    if (digest !== null && !isDigest(digest))
      problems.push(`${t}.digest must be sha256:<64 hex> or sha512:<128 hex>`);
    if (tag !== null && !isTag(tag)) problems.push(`${t}.tag must be a tag`);
    event.target = { repository, digest, tag };
  }
  return event;
}

function invalid(problems: string[]): ValidationError {
  return new ValidationError(`invalid registry notification: ${problems.slice(0, 20).join('; ')}`, {
    problems: problems.slice(0, 100),
  });
}
