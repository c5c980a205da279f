import { Injectable } from '@nestjs/common';
import { LRUCache } from 'lru-cache';
import pLimit from 'p-limit';
import { repositoryMatcher } from '../auth/scope.js';
import { AppConfig } from '../config/app-config.js';
import { decodeCursor, encodeCursor } from '../common/cursor.js';
import { ValidationError } from '../common/domain-error.js';
import { checkRepositoryGlob, isGlob } from '../common/glob-sql.js';
import { catalogPageKey, RegistryClient } from '../registries/client/registry-client.js';
import {
  Descriptor,
  FetchedManifest,
  ImageConfig,
  ImageManifest,
  isIndex,
  Platform,
} from '../registries/client/oci-types.js';
import { assertReference, assertRepositoryName } from '../registries/client/reference.js';
import { UpstreamError } from '../registries/client/upstream-error.js';
import { RegistriesService } from '../registries/registries.service.js';
import { ManifestView, RepositoryPage, TagView } from './catalog.dto.js';

/**
 * What a digest stands for; immutable, so cached per registry, repository and digest, unless it is
 * `provisional`: built around a read that failed for the moment, or short of a platform manifest that a
 * push may bring back. The next read may do better.
 */
interface Summary {
  provisional: boolean;
  /** Platform manifests an index names that the registry does not have (a broken multi-arch image). */
  missing: string[];
  totalSize: number;
  created: string | null;
  platform: Platform | null;
  config: {
    digest: string;
    mediaType: string;
    size: number;
    created: string | null;
    os: string | null;
    architecture: string | null;
    variant: string | null;
  } | null;
}

export interface RepositoryQuery {
  limit?: number;
  cursor?: string;
  q?: string;
  /** Which names the caller may see (repository-scoped role bindings); applied before tags are read. */
  visible?: (name: string) => boolean;
}

const MAX_LIMIT = 1000;
const MAX_QUERY = 255;
/** A cursor holds an upstream registry's own paging token, which may be long. */
const MAX_CURSOR = 8192;

/**
 * Where the next page of repositories starts: at the upstream `_catalog` page that `page` (the query of
 * its Link, as catalogPage takes it; absent for the first page) reads, after the name `after` on it. The
 * earlier `{ last }` (the last name returned) is still taken: Distribution's `last` query.
 */
type RepositoryCursor =
  { page: string; after?: string } | { page?: undefined; after: string } | { last: string };

function isRepositoryCursor(v: unknown): v is RepositoryCursor {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return false;
  const c = v as Record<string, unknown>;
  const keys = Object.keys(c);
  if (keys.length === 1 && typeof c.last === 'string') return c.last !== '';
  if (!keys.every((k) => k === 'page' || k === 'after')) return false;
  const page = c.page === undefined || (typeof c.page === 'string' && isUpstreamQuery(c.page));
  const after = c.after === undefined || (typeof c.after === 'string' && c.after !== '');
  return page && after && (c.page !== undefined || c.after !== undefined);
}

/**
 * A Link's query, as catalogPage takes it. Its `n`, when it has one, is the page size we asked for: a larger
 * one in a cursor made up by a client would have the registry send more than this list ever reads.
 */
function isUpstreamQuery(page: string): boolean {
  if (!page.includes('=')) return false;
  const n = new URLSearchParams(page).get('n');
  return n === null || (/^\d{1,4}$/.test(n) && Number(n) >= 1 && Number(n) <= MAX_LIMIT);
}

/**
 * The names of an upstream page after `after`: those behind it or, when it has gone from the page
 * meanwhile (deleted, or moved on to a later page by names added before it), those that sort after it, as
 * registries list their catalog in lexical order. `past`: the page reaches beyond `after`, so the pages
 * that follow it are wholly after it; until then a later page may still hold names before it.
 */
function resumeAfter(names: string[], after: string): { names: string[]; past: boolean } {
  const at = names.indexOf(after);
  if (at >= 0) return { names: names.slice(at + 1), past: true };
  const rest = names.filter((name) => name > after);
  return { names: rest, past: rest.length > 0 };
}

// Build attestations ride in indexes as manifests for platform unknown/unknown; they are not images.
const isAttestation = (d: Descriptor) =>
  d.annotations?.['vnd.docker.reference.type'] === 'attestation-manifest' ||
  (d.platform?.os === 'unknown' && d.platform?.architecture === 'unknown');

/** Repositories, tags and manifests of a registry, read through the registry client. */
@Injectable()
export class CatalogService {
  private readonly summaries: LRUCache<string, Summary>;

  constructor(
    private readonly registries: RegistriesService,
    private readonly config: AppConfig,
  ) {
    this.summaries = new LRUCache({ max: Math.max(1, config.cache.maxEntries) });
  }

  /**
   * A page of repositories that have at least one tag. `_catalog` keeps deleted repositories, so each
   * candidate's tag list is read. Our page may end in the middle of an upstream page, and a registry may
   * page with its own opaque cursor, which cannot be made to start after a given name: the cursor holds the
   * query of the upstream page (absent for the first) and the last name returned from it (RepositoryCursor).
   */
  async listRepositories(registryName: string, query: RepositoryQuery): Promise<RepositoryPage> {
    const limit = query.limit ?? 100;
    if (!Number.isInteger(limit) || limit < 1 || limit > MAX_LIMIT) {
      throw new ValidationError(`limit must be an integer from 1 to ${MAX_LIMIT}`, { field: 'limit' });
    }
    if (query.q !== undefined && query.q.length > MAX_QUERY)
      throw new ValidationError(`q is longer than ${MAX_QUERY} characters`, { field: 'q' });
    const cursor = decodeCursor(query.cursor, isRepositoryCursor, MAX_CURSOR);
    const matches = matcher(query.q);
    const { client } = await this.registries.client(registryName);
    const limiter = pLimit(this.config.upstream.concurrency);
    const pageSize = Math.min(this.config.upstream.catalogPageSize, MAX_LIMIT);

    const items: RepositoryPage['items'] = [];
    // A cursor of the earlier `{ last }` shape (handed out before an upgrade) is Distribution's `last`.
    let from =
      cursor && 'last' in cursor
        ? new URLSearchParams({ n: String(pageSize), last: cursor.last }).toString()
        : cursor?.page;
    let after = cursor && 'after' in cursor ? cursor.after : undefined;
    // Upstream pages read for this request: a registry whose Link points back at one would never end.
    const asked = new Set<string>();
    for (;;) {
      asked.add(catalogPageKey(pageSize, from));
      const page = await client.catalogPage(pageSize, from);
      const next = page.next !== null && !asked.has(catalogPageKey(pageSize, page.next)) ? page.next : null;
      let names = page.repositories;
      if (after !== undefined) {
        const resumed = resumeAfter(names, after);
        names = resumed.names;
        if (resumed.past) after = undefined;
      }
      const visible = query.visible ?? (() => true);
      const candidates = names.filter((name) => matches(name) && visible(name));
      // Check tags in chunks no larger than needed, so a small page does not read a whole upstream page.
      let i = 0;
      while (i < candidates.length) {
        const need = limit - items.length;
        const chunk = candidates.slice(i, i + Math.max(need, this.config.upstream.concurrency));
        const counts = await Promise.all(chunk.map((name) => limiter(() => this.tagCount(client, name))));
        for (const [j, name] of chunk.entries()) {
          if (counts[j] === 0) continue;
          items.push({ name, tagCount: counts[j] });
          if (items.length === limit) {
            // Candidates left on this upstream page: the next request reads it again, after this name;
            // none: it starts at the next upstream page.
            const resume: RepositoryCursor | null =
              i + j + 1 < candidates.length
                ? { ...(from === undefined ? {} : { page: from }), after: name }
                : next !== null
                  ? { page: next }
                  : null;
            return { items, nextCursor: resume && encodeCursor(resume) };
          }
        }
        i += chunk.length;
      }
      if (next === null || page.repositories.length === 0) return { items, nextCursor: null };
      from = next;
    }
  }

  /** Every tag with its digest, media type, total size, creation time and platforms. */
  async listTags(registryName: string, repository: string): Promise<TagView[]> {
    assertRepositoryName(repository);
    const { registry, client } = await this.registries.client(registryName);
    const tags = await client.listTags(repository);
    const limiter = pLimit(this.config.upstream.concurrency);
    const views = await Promise.all(
      tags.map((tag) =>
        limiter(async (): Promise<TagView | null> => {
          try {
            const m = await client.getManifest(repository, tag);
            const s = await this.summarise(registry.id, client, repository, m);
            return {
              name: tag,
              digest: m.digest,
              mediaType: m.mediaType,
              size: s.totalSize,
              created: s.created,
              missingManifests: s.missing,
              platforms: isIndex(m)
                ? m.json.manifests
                    .filter((d) => !isAttestation(d))
                    .map((d) => d.platform ?? null)
                    .filter((p): p is Platform => p !== null)
                : s.platform
                  ? [s.platform]
                  : [],
            };
          } catch (err) {
            // A tag removed between tags/list and the manifest read is simply gone.
            if (err instanceof UpstreamError && err.code === 'MANIFEST_UNKNOWN') return null;
            throw err;
          }
        }),
      ),
    );
    return views.filter((v): v is TagView => v !== null).sort((a, b) => a.name.localeCompare(b.name));
  }

  /**
   * One manifest, its digest resolved with the full Accept list, its layers or children, and every
   * tag of the repository that points at the same digest (deleting the digest removes them all).
   */
  async getManifest(registryName: string, repository: string, reference: string): Promise<ManifestView> {
    assertRepositoryName(repository);
    const ref = assertReference(reference);
    const { registry, client } = await this.registries.client(registryName);
    const m = await client.getManifest(repository, ref.value);
    const [summary, tags] = await Promise.all([
      this.summarise(registry.id, client, repository, m),
      this.tagsPointingAt(client, repository, m.digest),
    ]);
    const index = isIndex(m) ? m.json : null;
    const image = index ? null : (m.json as ImageManifest);
    return {
      registry: registryName,
      repository,
      reference: ref.value,
      digest: m.digest,
      mediaType: m.mediaType,
      manifestSize: m.size,
      totalSize: summary.totalSize,
      created: summary.created,
      missingManifests: summary.missing,
      config: summary.config,
      layers: image
        ? image.layers.map((l) => ({ digest: l.digest, mediaType: l.mediaType, size: l.size }))
        : [],
      children: index
        ? index.manifests.map((d) => ({
            digest: d.digest,
            mediaType: d.mediaType,
            size: d.size,
            platform: d.platform ?? null,
            attestation: isAttestation(d),
            missing: summary.missing.includes(d.digest),
          }))
        : [],
      tags,
      manifest: m.json as unknown as Record<string, unknown>,
    };
  }

  /** Tags whose manifest digest equals `digest` (HEAD with the full Accept list for each tag). */
  async tagsPointingAt(client: RegistryClient, repository: string, digest: string): Promise<string[]> {
    const tags = await client.listTags(repository).catch((err: unknown) => {
      if (err instanceof UpstreamError && err.code === 'NAME_UNKNOWN') return [] as string[];
      throw err;
    });
    const limiter = pLimit(this.config.upstream.concurrency);
    const digests = await Promise.all(
      tags.map((t) =>
        limiter(() =>
          // null: the tag went away meanwhile.
          client.tagTarget(repository, t).then((h) => h?.digest ?? null),
        ),
      ),
    );
    return tags.filter((_, i) => digests[i] === digest).sort();
  }

  private async tagCount(client: RegistryClient, repository: string): Promise<number> {
    try {
      return (await client.listTags(repository)).length;
    } catch (err) {
      if (err instanceof UpstreamError && err.code === 'NAME_UNKNOWN') return 0;
      throw err;
    }
  }

  private async summarise(
    registryId: string,
    client: RegistryClient,
    repository: string,
    m: FetchedManifest,
  ): Promise<Summary> {
    const key = `${registryId}|${repository}|${m.digest}`;
    const hit = this.summaries.get(key);
    if (hit) return hit;
    let summary: Summary;
    if (isIndex(m)) {
      const platforms = m.json.manifests.filter((d) => !isAttestation(d));
      const read = await Promise.all(
        platforms.map(async (d) => {
          const cached = this.summaries.get(`${registryId}|${repository}|${d.digest}`);
          if (cached) return cached;
          let child: FetchedManifest;
          try {
            child = await client.getManifest(repository, d.digest);
          } catch (err) {
            // The index stays while a platform manifest is gone: what Distribution 2.8's GC with
            // --delete-untagged leaves. The tag is still there, and broken, which is what its users need to see.
            if (err instanceof UpstreamError && err.code === 'MANIFEST_UNKNOWN') return null;
            throw err;
          }
          return this.summarise(registryId, client, repository, child);
        }),
      );
      const children = read.filter((c): c is Summary => c !== null);
      const missing = [
        ...platforms.filter((_, i) => read[i] === null).map((d) => d.digest),
        ...children.flatMap((c) => c.missing),
      ];
      const created =
        children
          .map((c) => c.created)
          .filter((c): c is string => !!c)
          .sort()
          .at(-1) ?? null;
      summary = {
        // Not kept while a platform manifest is missing: pushing it again repairs the image.
        provisional: missing.length > 0 || children.some((c) => c.provisional),
        missing,
        totalSize: children.reduce((n, c) => n + c.totalSize, 0),
        created,
        platform: null,
        config: null,
      };
    } else {
      const image = m.json as ImageManifest;
      const cfg = image.config;
      // An unreadable config leaves created and the platform unknown; only a definite answer (404, a
      // body that is not the config) is kept for good, not a timeout, a 5xx or a 429.
      let provisional = false;
      const parsed =
        cfg && /json/.test(cfg.mediaType) && cfg.size > 2
          ? await client.getBlobJson<ImageConfig>(repository, cfg.digest).catch((err: unknown) => {
              provisional = !(err instanceof UpstreamError) || err.retryable;
              return null;
            })
          : null;
      const created = typeof parsed?.created === 'string' ? parsed.created : null;
      const platform =
        parsed?.os && parsed.architecture
          ? {
              os: parsed.os,
              architecture: parsed.architecture,
              ...(parsed.variant ? { variant: parsed.variant } : {}),
            }
          : null;
      summary = {
        provisional,
        missing: [],
        totalSize: (cfg?.size ?? 0) + (image.layers ?? []).reduce((n, l) => n + (l.size ?? 0), 0),
        created,
        platform,
        config: cfg
          ? {
              digest: cfg.digest,
              mediaType: cfg.mediaType,
              size: cfg.size,
              created,
              os: parsed?.os ?? null,
              architecture: parsed?.architecture ?? null,
              variant: parsed?.variant ?? null,
            }
          : null,
      };
    }
    if (!summary.provisional) this.summaries.set(key, summary);
    return summary;
  }
}

function matcher(q: string | undefined): (name: string) => boolean {
  if (!q) return () => true;
  if (isGlob(q)) {
    // The glob check of role bindings and filters, and their matching.
    checkRepositoryGlob(q, 'q');
    return repositoryMatcher(q);
  }
  const needle = q.toLowerCase();
  return (name) => name.includes(needle);
}
