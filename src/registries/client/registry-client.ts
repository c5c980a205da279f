import { createHash } from 'node:crypto';
import { LRUCache } from 'lru-cache';
import { rootCertificates } from 'node:tls';
import { Agent, Dispatcher, interceptors } from 'undici';
import { FetchedManifest, INDEX_TYPES, IMAGE_TYPES, MANIFEST_ACCEPT, MediaTypes } from './oci-types.js';
import { assertDigest, assertRepositoryName, assertTag } from './reference.js';
import {
  EMPTY_CONFIG,
  EMPTY_CONFIG_BYTES,
  TagDeleteResult,
  isThrowawayFor,
  mayBeThrowaway,
  tagChanged,
  tagDeleteIncomplete,
  tagMoved,
  throwawayManifest,
} from './tag-delete.js';
import {
  UpstreamErrorBody,
  invalidResponse,
  unreachable,
  unlessGone,
  upstreamErrorFromResponse,
  UpstreamError,
} from './upstream-error.js';
import { parseChallenge, parseNextLink } from './www-authenticate.js';

export interface RegistryTarget {
  name: string;
  url: string;
  auth: { type: 'none' | 'basic' | 'bearer'; username?: string | null; password?: string | null };
  tls: { ca?: string | null; insecure: boolean };
}

export interface ClientOptions {
  timeoutMs: number;
  connections: number;
  /** Called once per upstream exchange (status 0 for a network failure), e.g. for metrics. */
  observe?: (method: string, status: number, seconds: number) => void;
}

export interface SendOptions {
  method: 'GET' | 'HEAD' | 'DELETE' | 'PUT' | 'POST' | 'PATCH';
  /** Path under /v2/, already validated (e.g. `alpine/manifests/latest`). Empty for the base endpoint. */
  path: string;
  query?: Record<string, string | number | undefined>;
  headers?: Record<string, string>;
  body?: Buffer | string;
  /** What the request is about, for error messages ("manifest a/b:latest"). */
  what: string;
  /**
   * Follow redirects (at most 3): a registry on object storage answers a blob read with a 307 to the
   * storage's URL. The Authorization header is not sent to another origin.
   */
  followRedirects?: boolean;
}

export type UpstreamResponse = Dispatcher.ResponseData;

const MAX_MANIFEST_BYTES = 4 * 1024 * 1024;
const KNOWN_MANIFEST_TYPES = new Set<string>([...INDEX_TYPES, ...IMAGE_TYPES]);
/** Token cache key of the base endpoint; never sent as a scope. */
const BASE_SCOPE = 'registry:base';
/** A digest no registry holds: deleting it shows whether deletes would be refused, and changes nothing. */
const ABSENT_DIGEST = `sha256:${'0'.repeat(64)}`;
/** 404 codes that mean "not there" rather than "wrong URL": only these make a delete idempotent. */
const GONE_CODES = new Set(['MANIFEST_UNKNOWN', 'NAME_UNKNOWN']);

/**
 * The only code that speaks the registry v2 HTTP API. One keep-alive undici pool per registry;
 * basic auth, and the bearer-token challenge flow with tokens cached per scope.
 */
export class RegistryClient {
  readonly name: string;
  private readonly agent: Agent;
  /** The agent, following redirects (blob reads). */
  private readonly following: Dispatcher;
  private readonly base: URL;
  private readonly basePath: string;
  private readonly tokens = new LRUCache<string, string>({ max: 5000 });
  private readonly tokenRequests = new Map<string, Promise<string>>();

  constructor(
    private readonly target: RegistryTarget,
    private readonly options: ClientOptions,
  ) {
    this.name = target.name;
    this.base = new URL(target.url);
    this.basePath = this.base.pathname.replace(/\/+$/, '');
    this.agent = new Agent({
      connections: options.connections,
      pipelining: 1,
      keepAliveTimeout: 30_000,
      headersTimeout: options.timeoutMs,
      bodyTimeout: options.timeoutMs,
      connect: {
        timeout: Math.min(options.timeoutMs, 10_000),
        // The registry's own CA beside the usual ones: a blob read may be redirected to object storage.
        ca: target.tls.ca ? [...rootCertificates, target.tls.ca] : undefined,
        rejectUnauthorized: !target.tls.insecure,
      },
    });
    this.following = this.agent.compose(interceptors.redirect({ maxRedirections: 3 }));
  }

  async close(): Promise<void> {
    await this.agent.close();
  }

  /** Sends one request, answering auth challenges; the caller owns (and must consume) the body. */
  async send(opts: SendOptions): Promise<UpstreamResponse> {
    const scope = scopeFor(opts);
    const sent = this.authorization(scope);
    let res = await this.dispatch(opts, sent);
    if (res.statusCode !== 401) return res;

    const challenge = parseChallenge(res.headers['www-authenticate']);
    await res.body.dump();
    if (challenge?.scheme === 'bearer' && challenge.params.realm) {
      // Drop the token only if it is the one refused: a concurrent caller may have just renewed it.
      if (sent && sent === this.authorization(scope)) this.tokens.delete(scope);
      const cached = this.tokens.get(scope);
      const token =
        cached && `Bearer ${cached}` !== sent ? cached : await this.fetchToken(scope, challenge.params);
      res = await this.dispatch(opts, `Bearer ${token}`);
      if (res.statusCode !== 401) return res;
      const again = parseChallenge(res.headers['www-authenticate']);
      await res.body.dump();
      // A fresh token that still lacks the scope: the credentials work but carry no such right.
      if (again?.params.error === 'insufficient_scope')
        throw upstreamErrorFromResponse(this.name, 403, undefined, opts.what);
    }
    throw upstreamErrorFromResponse(this.name, 401, undefined, opts.what);
  }

  /** Sends and throws the mapped UpstreamError unless the status is one of `ok`. */
  async expect(opts: SendOptions, ok: number[] = [200]): Promise<UpstreamResponse> {
    const res = await this.send(opts);
    if (ok.includes(res.statusCode)) return res;
    throw upstreamErrorFromResponse(this.name, res.statusCode, await readErrorBody(res), opts.what);
  }

  async ping(): Promise<{ status: number; apiVersion: string | null; latencyMs: number }> {
    const t0 = performance.now();
    const res = await this.expect({ method: 'GET', path: '', what: 'the API base endpoint' });
    await res.body.dump();
    const v = res.headers['docker-distribution-api-version'];
    return {
      status: res.statusCode,
      apiVersion: (Array.isArray(v) ? v[0] : v) ?? null,
      latencyMs: performance.now() - t0,
    };
  }

  /**
   * One page of `_catalog`, from where `from` says: nothing for the first page, or the `next` of the page
   * before. `next` is the query of the page's Link, whatever it holds (Distribution's `n=..&last=<name>`,
   * or another registry's opaque cursor), asked again whole, as listTags does: a `last` made up here from
   * the page's last name would not move an opaque cursor past page 1. A bare repository name (it has no
   * `=`) is still read as Distribution's `last`, as `next` used to be. `next` is null on the last page, and
   * when the Link points back at the page just read (a caller that follows it would never end).
   */
  async catalogPage(n: number, from?: string): Promise<{ repositories: string[]; next: string | null }> {
    const query = catalogQuery(n, from);
    const res = await this.expect({ method: 'GET', path: '_catalog', query, what: 'the catalog' });
    const body = await readJson<{ repositories?: string[] | null }>(this.name, res, 16 * 1024 * 1024);
    const repositories = Array.isArray(body.repositories) ? body.repositories : [];
    const link = parseNextLink(res.headers.link);
    // A Link with no query can only name the registry's first page.
    const next = link?.search ? link.searchParams.toString() : null;
    const ends = next === null || repositories.length === 0 || catalogPageKey(n, next) === queryKey(query);
    return { repositories, next: ends ? null : next };
  }

  /**
   * Every tag of a repository, following Link pagination: the next page is asked for with the query the
   * Link gives, whatever it holds (Distribution's `last`, or another registry's opaque cursor, which a
   * `last` made up here would not move past: the first page again and again, and the tags after it never
   * seen by a deletion's plan).
   */
  async listTags(repository: string, pageSize = 1000): Promise<string[]> {
    const tags: string[] = [];
    let query: Record<string, string | number> = { n: pageSize };
    const asked = new Set<string>();
    for (;;) {
      const res = await this.expect({
        method: 'GET',
        path: `${repository}/tags/list`,
        query,
        what: `repository ${repository}`,
      });
      const body = await readJson<{ tags?: string[] | null }>(this.name, res, 16 * 1024 * 1024);
      const page = Array.isArray(body.tags) ? body.tags : [];
      tags.push(...page);
      const link = parseNextLink(res.headers.link);
      if (!link || page.length === 0) return tags;
      const next = link.searchParams.toString();
      // A registry that links to a page already read would never end.
      if (asked.has(next)) return tags;
      asked.add(next);
      query = Object.fromEntries(link.searchParams);
    }
  }

  /** GET a manifest with the full Accept list; checks Content-Type and the content digest. */
  async getManifest(repository: string, reference: string): Promise<FetchedManifest> {
    const what = `manifest ${repository}${reference.includes(':') ? '@' : ':'}${reference}`;
    const res = await this.expect({
      method: 'GET',
      path: `${repository}/manifests/${reference}`,
      headers: { accept: MANIFEST_ACCEPT },
      what,
    });
    const raw = await readBytes(this.name, res, MAX_MANIFEST_BYTES);
    const computed = `sha256:${createHash('sha256').update(raw).digest('hex')}`;
    const header = headerValue(res.headers['docker-content-digest']);
    const digest = header ?? computed;
    if (header && header.startsWith('sha256:') && header !== computed) {
      throw invalidResponse(
        this.name,
        `${what}: Docker-Content-Digest ${header} does not match the body (${computed})`,
      );
    }
    if (reference.startsWith('sha256:') && reference !== computed) {
      throw invalidResponse(this.name, `${what}: body digest is ${computed}`);
    }
    let json: FetchedManifest['json'];
    try {
      json = JSON.parse(raw.toString('utf8')) as FetchedManifest['json'];
    } catch {
      throw invalidResponse(this.name, `${what} is not JSON`);
    }
    const mediaType = manifestMediaType(headerValue(res.headers['content-type']), json);
    if (!KNOWN_MANIFEST_TYPES.has(mediaType)) {
      throw new UpstreamError(
        'MANIFEST_TYPE_UNSUPPORTED',
        `${what} has media type ${mediaType}; the gateway handles OCI and Docker schema 2 manifests and indexes`,
        422,
        this.name,
        res.statusCode,
        null,
      );
    }
    return { digest, mediaType, size: raw.length, raw, json };
  }

  /** HEAD a manifest with the full Accept list: the digest a DELETE must use. */
  async headManifest(
    repository: string,
    reference: string,
  ): Promise<{ digest: string; mediaType: string; size: number }> {
    const what = `manifest ${repository}${reference.includes(':') ? '@' : ':'}${reference}`;
    const res = await this.expect({
      method: 'HEAD',
      path: `${repository}/manifests/${reference}`,
      headers: { accept: MANIFEST_ACCEPT },
      what,
    });
    await res.body.dump();
    const digest = headerValue(res.headers['docker-content-digest']);
    if (!digest) {
      // Some registries omit the header on HEAD; the body is the only source of truth then.
      const m = await this.getManifest(repository, reference);
      return { digest: m.digest, mediaType: m.mediaType, size: m.size };
    }
    const mediaType = headerValue(res.headers['content-type']) ?? 'application/octet-stream';
    return {
      digest,
      mediaType: mediaType.split(';')[0].trim(),
      size: Number(headerValue(res.headers['content-length']) ?? 0),
    };
  }

  /**
   * Whether the registry serves a blob's bytes in this repository: the status of a one-byte ranged GET
   * (206/200 served, 404 gone). A GET, not a HEAD: after GC a stale blob descriptor cache answers HEAD
   * with 200 for a blob whose data is gone; reading it shows the truth.
   */
  async blobStatus(repository: string, digest: string): Promise<number> {
    return this.blobProbe('GET', repository, digest);
  }

  /**
   * Whether the registry claims to hold a blob in this repository: the status of a HEAD, which is what a
   * client pushing the blob asks before it uploads (200 means "skip the upload"). A stale blob descriptor
   * cache answers it from memory.
   */
  async blobHeadStatus(repository: string, digest: string): Promise<number> {
    return this.blobProbe('HEAD', repository, digest);
  }

  private async blobProbe(method: 'GET' | 'HEAD', repository: string, digest: string): Promise<number> {
    assertRepositoryName(repository);
    assertDigest(digest);
    const res = await this.send({
      method,
      path: `${repository}/blobs/${digest}`,
      headers: method === 'GET' ? { range: 'bytes=0-0' } : {},
      what: `blob ${repository}@${digest}`,
    });
    await res.body.dump();
    return res.statusCode;
  }

  /** Reads a small JSON blob (an image config), verifying its digest. */
  async getBlobJson<T>(repository: string, digest: string, maxBytes = 8 * 1024 * 1024): Promise<T> {
    const what = `blob ${repository}@${digest}`;
    const res = await this.expect({
      method: 'GET',
      path: `${repository}/blobs/${digest}`,
      what,
      followRedirects: true,
    });
    const raw = await readBytes(this.name, res, maxBytes);
    if (
      digest.startsWith('sha256:') &&
      `sha256:${createHash('sha256').update(raw).digest('hex')}` !== digest
    ) {
      throw invalidResponse(this.name, `${what}: content does not match its digest`);
    }
    try {
      return JSON.parse(raw.toString('utf8')) as T;
    } catch {
      throw invalidResponse(this.name, `${what} is not JSON`);
    }
  }

  /**
   * Deletes a manifest by digest. Distribution also drops every tag pointing at it, so callers show the
   * affected tags first. A manifest already gone counts as deleted: deletion jobs are retried.
   */
  async deleteManifest(
    repository: string,
    digest: string,
  ): Promise<{ status: number; alreadyGone: boolean }> {
    assertRepositoryName(repository);
    assertDigest(digest);
    const what = `manifest ${repository}@${digest}`;
    const res = await this.send({ method: 'DELETE', path: `${repository}/manifests/${digest}`, what });
    if (res.statusCode >= 200 && res.statusCode < 300) {
      await res.body.dump();
      return { status: res.statusCode, alreadyGone: false };
    }
    const body = await readErrorBody(res);
    if (res.statusCode === 404 && GONE_CODES.has(body?.errors?.[0]?.code ?? '')) {
      return { status: 404, alreadyGone: true };
    }
    throw refusal(this.name, res, body, what, 'delete');
  }

  /**
   * Removes one tag and keeps the image for every other tag. 3.x deletes a tag natively; on 2.x (and
   * when the version is unknown) the tag is re-pointed at a throwaway manifest that is then deleted by
   * digest, which needs push rights. Idempotent: a missing tag is `alreadyGone`, and a delete that
   * stopped half-way is finished by the next call.
   */
  async deleteTag(
    repository: string,
    tag: string,
    opts: { distributionVersion: string | null; expectDigest?: string },
  ): Promise<TagDeleteResult> {
    assertRepositoryName(repository);
    assertTag(tag);
    if (opts.distributionVersion?.startsWith('3')) {
      if (opts.expectDigest) {
        const current = await this.tagTarget(repository, tag);
        if (!current) return { method: 'tag-delete', alreadyGone: true };
        if (current.digest !== opts.expectDigest)
          throw tagMoved({ registry: this.name, repository, tag }, opts.expectDigest, current.digest);
      }
      const what = `tag ${repository}:${tag}`;
      const res = await this.send({ method: 'DELETE', path: `${repository}/manifests/${tag}`, what });
      if (res.statusCode >= 200 && res.statusCode < 300) {
        await res.body.dump();
        return { method: 'tag-delete', alreadyGone: false };
      }
      const body = await readErrorBody(res);
      const code = body?.errors?.[0]?.code;
      if (res.statusCode === 404 && GONE_CODES.has(code ?? ''))
        return { method: 'tag-delete', alreadyGone: true };
      // 2.x parses the reference as a digest and refuses a tag with 400: the recorded version is stale.
      const answersLike2x =
        res.statusCode === 400 && (code === undefined || code === 'DIGEST_INVALID' || code === 'UNSUPPORTED');
      if (!answersLike2x) throw refusal(this.name, res, body, what, 'delete');
    }
    return this.deleteTagByThrowaway(repository, tag, opts.expectDigest);
  }

  /** PUTs a manifest under a tag or digest; returns the digest of the bytes sent, as the registry stored them. */
  async putManifest(repository: string, reference: string, mediaType: string, body: Buffer): Promise<string> {
    const what = `manifest ${repository}${reference.includes(':') ? '@' : ':'}${reference}`;
    const digest = `sha256:${createHash('sha256').update(body).digest('hex')}`;
    const res = await this.send({
      method: 'PUT',
      path: `${repository}/manifests/${reference}`,
      headers: { 'content-type': mediaType },
      body,
      what,
    });
    if (res.statusCode !== 201) throw refusal(this.name, res, await readErrorBody(res), what, 'write');
    await res.body.dump();
    const stored = headerValue(res.headers['docker-content-digest']);
    if (stored && stored !== digest)
      throw invalidResponse(this.name, `${what} was stored as ${stored}, not ${digest}`);
    return digest;
  }

  /** Makes sure a small blob exists in the repository: HEAD, else one monolithic upload (POST, then PUT). */
  async uploadBlob(repository: string, digest: string, bytes: Buffer): Promise<void> {
    const what = `blob ${repository}@${digest}`;
    const head = await this.send({ method: 'HEAD', path: `${repository}/blobs/${digest}`, what });
    await head.body.dump();
    // A redirect to object storage is the registry serving the blob from there.
    if (head.statusCode === 200 || (head.statusCode >= 300 && head.statusCode < 400)) return;
    if (head.statusCode !== 404) throw upstreamErrorFromResponse(this.name, head.statusCode, undefined, what);

    // 2.8 ignores a body on the POST (it only opens the session), so the content goes with the PUT.
    const started = await this.send({
      method: 'POST',
      path: `${repository}/blobs/uploads/`,
      headers: { 'content-length': '0' },
      what,
    });
    if (started.statusCode !== 202)
      throw refusal(this.name, started, await readErrorBody(started), what, 'write');
    await started.body.dump();
    const location = headerValue(started.headers.location);
    if (!location) throw invalidResponse(this.name, `upload of ${what} answered 202 without a Location`);
    const target = new URL(location, this.base);
    const prefix = `${this.basePath}/v2/`;
    if (!target.pathname.startsWith(prefix)) {
      throw invalidResponse(this.name, `upload of ${what} moved outside the v2 API (${target.pathname})`);
    }
    const query: Record<string, string> = Object.fromEntries(target.searchParams);
    const put = await this.send({
      method: 'PUT',
      path: target.pathname.slice(prefix.length),
      query: { ...query, digest },
      headers: { 'content-type': 'application/octet-stream' },
      body: bytes,
      what,
    });
    if (put.statusCode !== 201) throw refusal(this.name, put, await readErrorBody(put), what, 'write');
    await put.body.dump();
  }

  private async deleteTagByThrowaway(
    repository: string,
    tag: string,
    expectDigest?: string,
  ): Promise<TagDeleteResult> {
    const method = 'throwaway-manifest';
    const ref = { registry: this.name, repository, tag };
    const current = await this.tagTarget(repository, tag);
    if (!current) return { method, alreadyGone: true };

    let throwawayDigest: string;
    let previousDigest: string | undefined;
    if (
      mayBeThrowaway(current, tag) &&
      isThrowawayFor(await this.getManifest(repository, current.digest), tag)
    ) {
      throwawayDigest = current.digest;
    } else {
      if (expectDigest && current.digest !== expectDigest) throw tagMoved(ref, expectDigest, current.digest);
      previousDigest = current.digest;
      // Delete-disabled registries still accept pushes: without this check the tag would end up on the
      // throwaway with no way to delete it.
      await this.assertDeletesAllowed(repository);
      await this.uploadBlob(repository, EMPTY_CONFIG.digest, EMPTY_CONFIG_BYTES);
      throwawayDigest = await this.putManifest(
        repository,
        tag,
        MediaTypes.ociManifest,
        throwawayManifest(tag),
      );
    }

    let now: { digest: string } | null;
    try {
      now = await this.tagTarget(repository, tag);
      if (now && now.digest === throwawayDigest) await this.deleteManifest(repository, throwawayDigest);
    } catch (err) {
      throw tagDeleteIncomplete(ref, throwawayDigest, previousDigest, err);
    }
    if (now === null) {
      // Someone else removed the tag meanwhile; the throwaway is nobody's, so it can go.
      await this.deleteManifest(repository, throwawayDigest).catch(() => undefined);
      return { method, throwawayDigest, previousDigest, alreadyGone: true };
    }
    if (now.digest !== throwawayDigest) throw tagChanged(ref, throwawayDigest, now.digest, previousDigest);
    return { method, throwawayDigest, previousDigest, alreadyGone: false };
  }

  /** Where a tag points (HEAD with the full Accept list), or null when the tag or repository is unknown. */
  async tagTarget(
    repository: string,
    tag: string,
  ): Promise<{ digest: string; mediaType: string; size: number } | null> {
    // A HEAD answer has no body, so a 404 cannot say which of MANIFEST_UNKNOWN or NAME_UNKNOWN it is.
    return this.headManifest(repository, tag).catch(unlessGone(null));
  }

  /** Learns how the registry would answer a DELETE before anything is written. */
  private async assertDeletesAllowed(repository: string): Promise<void> {
    const what = `deletes in ${repository}`;
    const res = await this.send({ method: 'DELETE', path: `${repository}/manifests/${ABSENT_DIGEST}`, what });
    const body = await readErrorBody(res);
    if (res.statusCode === 404 || (res.statusCode >= 200 && res.statusCode < 300)) return;
    throw refusal(this.name, res, body, what, 'delete');
  }

  private authorization(scope: string): string | undefined {
    const token = this.tokens.get(scope);
    if (token) return `Bearer ${token}`;
    const { type, username, password } = this.target.auth;
    if (type === 'basic' && username) return basic(username, password ?? '');
    return undefined;
  }

  private async dispatch(opts: SendOptions, authorization: string | undefined): Promise<UpstreamResponse> {
    const qs = new URLSearchParams();
    for (const [k, v] of Object.entries(opts.query ?? {})) if (v !== undefined) qs.set(k, String(v));
    const path = `${this.basePath}/v2/${opts.path}${qs.size ? `?${qs}` : ''}`;
    const headers: Record<string, string> = { 'user-agent': 'registry-gateway', ...opts.headers };
    if (authorization) headers.authorization = authorization;
    const t0 = performance.now();
    try {
      const res = await (opts.followRedirects ? this.following : this.agent).request({
        origin: this.base.origin,
        path,
        method: opts.method,
        headers,
        body: opts.body,
      });
      this.options.observe?.(opts.method, res.statusCode, (performance.now() - t0) / 1000);
      return res;
    } catch (err) {
      this.options.observe?.(opts.method, 0, (performance.now() - t0) / 1000);
      throw unreachable(this.name, err);
    }
  }

  /** One token request per scope at a time; concurrent callers share it. */
  private fetchToken(scope: string, params: Record<string, string>): Promise<string> {
    let pending = this.tokenRequests.get(scope);
    if (!pending) {
      pending = this.requestToken(scope, params).finally(() => this.tokenRequests.delete(scope));
      this.tokenRequests.set(scope, pending);
    }
    return pending;
  }

  private async requestToken(scope: string, params: Record<string, string>): Promise<string> {
    const realm = new URL(params.realm);
    if (params.service) realm.searchParams.set('service', params.service);
    // GET /v2/ needs no resource, so its challenge names no scope; an invented one ('registry:base') is
    // outside the scope grammar, and strict token servers (cesanta/docker_auth) answer it with a 400.
    const requested = params.scope ?? (scope === BASE_SCOPE ? undefined : scope);
    if (requested) realm.searchParams.set('scope', requested);
    const headers: Record<string, string> = { 'user-agent': 'registry-gateway' };
    const { username, password } = this.target.auth;
    if (username) headers.authorization = basic(username, password ?? '');
    let res: UpstreamResponse;
    try {
      res = await this.agent.request({
        origin: realm.origin,
        path: realm.pathname + realm.search,
        method: 'GET',
        headers,
      });
    } catch (err) {
      throw unreachable(this.name, err);
    }
    if (res.statusCode !== 200) {
      await res.body.dump();
      throw upstreamErrorFromResponse(
        this.name,
        res.statusCode === 401 || res.statusCode === 403 ? 401 : res.statusCode,
        undefined,
        'a token',
      );
    }
    const body = await readJson<{ token?: string; access_token?: string; expires_in?: number }>(
      this.name,
      res,
      1024 * 1024,
    );
    const token = body.token ?? body.access_token;
    if (!token) throw invalidResponse(this.name, 'token endpoint returned no token');
    const ttlSec = Math.max(5, (body.expires_in ?? 60) - 10);
    this.tokens.set(scope, token, { ttl: ttlSec * 1000 });
    return token;
  }
}

function basic(username: string, password: string): string {
  return `Basic ${Buffer.from(`${username}:${password}`).toString('base64')}`;
}

/**
 * The query of a catalogPage (see there): a Link's query, or Distribution's `last` for a bare name. An `n`
 * in it is set to ours (once): a query that comes back from a client (in a cursor) must not choose the
 * page size, one name a request (thousands of requests for one list) or more than the registry should
 * send at once. A registry's own cursor without one is sent as it came.
 */
function catalogQuery(n: number, from: string | undefined): Record<string, string | number> {
  if (!from) return { n };
  if (!from.includes('=')) return { n, last: from };
  const query = new URLSearchParams(from);
  if (query.has('n')) query.set('n', String(n));
  return Object.fromEntries(query);
}

function queryKey(query: Record<string, string | number>): string {
  const qs = new URLSearchParams(Object.entries(query).map(([k, v]): [string, string] => [k, String(v)]));
  qs.sort();
  return qs.toString();
}

/**
 * Which upstream page `catalogPage(n, from)` reads, the same for the same query in any order: a walk that
 * meets a key it has read already is going round in a loop.
 */
export function catalogPageKey(n: number, from?: string): string {
  return queryKey(catalogQuery(n, from));
}

/** Token cache key: the scope a request needs under distribution's token auth. */
function scopeFor(opts: SendOptions): string {
  if (opts.path === '') return BASE_SCOPE;
  if (opts.path === '_catalog') return 'registry:catalog:*';
  const name = /^(.*)\/(manifests|blobs|tags)\//.exec(opts.path)?.[1] ?? opts.path;
  const actions =
    opts.method === 'GET' || opts.method === 'HEAD'
      ? 'pull'
      : opts.method === 'DELETE'
        ? 'delete'
        : 'pull,push';
  return `repository:${name}:${actions}`;
}

/**
 * Distribution answers 405 in two ways: JSON `UNSUPPORTED` when deletes are disabled (and on pull-through
 * caches), and a bare text/plain 405 with `Allow: GET, HEAD` in read-only maintenance mode.
 */
function refusal(
  registry: string,
  res: UpstreamResponse,
  body: UpstreamErrorBody | undefined,
  what: string,
  action: 'delete' | 'write',
): UpstreamError {
  const code = body?.errors?.[0]?.code ?? null;
  if (res.statusCode === 405 && code === 'UNSUPPORTED' && action === 'delete') {
    return new UpstreamError(
      'DELETE_DISABLED',
      `registry "${registry}" refuses deletes (${what}): storage.delete.enabled is off, or it is a pull-through cache`,
      409,
      registry,
      405,
      code,
    );
  }
  const allow = headerValue(res.headers.allow);
  if (res.statusCode === 405 && !code && allow && !/\b(DELETE|PUT|POST|PATCH)\b/i.test(allow)) {
    return new UpstreamError(
      'REGISTRY_READ_ONLY',
      `registry "${registry}" is read-only (maintenance mode, Allow: ${allow}); ${what} must wait until writes are back`,
      409,
      registry,
      405,
      null,
    );
  }
  return upstreamErrorFromResponse(registry, res.statusCode, body, what);
}

function headerValue(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v[0] : v;
}

function manifestMediaType(
  contentType: string | undefined,
  json: { mediaType?: string; manifests?: unknown; config?: unknown },
): string {
  const ct = contentType?.split(';')[0].trim();
  if (ct && ct !== 'application/json' && ct !== 'application/octet-stream') return ct;
  if (json.mediaType) return json.mediaType;
  // OCI allows mediaType to be absent; the shape decides.
  return json.manifests ? MediaTypes.ociIndex : MediaTypes.ociManifest;
}

export async function readBytes(registry: string, res: UpstreamResponse, maxBytes: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let total = 0;
  for await (const chunk of res.body) {
    total += (chunk as Buffer).length;
    if (total > maxBytes) {
      res.body.destroy();
      throw invalidResponse(registry, `response is larger than ${maxBytes} bytes`);
    }
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks);
}

export async function readJson<T>(registry: string, res: UpstreamResponse, maxBytes: number): Promise<T> {
  const raw = await readBytes(registry, res, maxBytes);
  try {
    return JSON.parse(raw.toString('utf8')) as T;
  } catch {
    throw invalidResponse(registry, 'body is not JSON');
  }
}

async function readErrorBody(res: UpstreamResponse): Promise<UpstreamErrorBody | undefined> {
  try {
    const raw = await readBytes('', res, 64 * 1024);
    return JSON.parse(raw.toString('utf8')) as UpstreamErrorBody;
  } catch {
    return undefined;
  }
}
