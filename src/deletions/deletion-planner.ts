import { Injectable } from '@nestjs/common';
import { LRUCache } from 'lru-cache';
import pLimit, { LimitFunction } from 'p-limit';
import { AppConfig } from '../config/app-config.js';
import { DomainError } from '../common/domain-error.js';
import { FetchedManifest, ImageManifest, isIndex } from '../registries/client/oci-types.js';
import { RegistryClient } from '../registries/client/registry-client.js';
import { UpstreamError, unlessGone } from '../registries/client/upstream-error.js';
import type { DeletionKind } from './deletion.entity.js';

export interface PlanInput {
  repository: string;
  reference: string;
  kind: DeletionKind;
}

export interface PlannedItem extends PlanInput {
  position: number;
  digest: string | null;
  mediaType: string | null;
  /** Every tag that goes away: all tags of the digest for a manifest delete, the one tag for a tag delete. */
  tags: string[];
  estimatedBytes: number;
  status: 'planned' | 'skipped';
  error: { code: string; message: string } | null;
}

/** What a manifest stands for: every stored object it keeps alive (itself, config, layers, children). */
interface Facts {
  digest: string;
  mediaType: string;
  /** digest -> size of every blob this manifest references, its own document included. */
  blobs: Map<string, number>;
  children: string[];
}

/** A repository as it is now: where each tag points. */
interface Snapshot {
  tagDigest: Map<string, string>;
  facts: Map<string, Facts>;
}

/**
 * Turns references into a plan: resolves tags to digests with the full Accept list (so a multi-arch tag
 * resolves to its index, never to a converted child), lists every tag that shares each digest, refuses
 * what would break a multi-arch image, and estimates the bytes only the deleted images hold.
 */
@Injectable()
export class DeletionPlanner {
  /** Facts per registry, repository and digest: what a digest stands for never changes. */
  private readonly facts: LRUCache<string, Facts>;

  constructor(private readonly config: AppConfig) {
    this.facts = new LRUCache({ max: Math.max(1, config.cache.maxEntries) });
  }

  async plan(registryId: string, client: RegistryClient, inputs: PlanInput[]): Promise<PlannedItem[]> {
    const limit = pLimit(this.config.upstream.concurrency);
    const byRepository = new Map<string, number[]>();
    inputs.forEach((input, i) => {
      const list = byRepository.get(input.repository) ?? [];
      list.push(i);
      byRepository.set(input.repository, list);
    });
    const planned: PlannedItem[] = new Array<PlannedItem>(inputs.length);
    await Promise.all(
      [...byRepository].map(async ([repository, positions]) => {
        const snapshot = await this.snapshot(registryId, client, repository, limit);
        const items = await this.planRepository(
          registryId,
          client,
          snapshot,
          positions.map((p) => ({ ...inputs[p], position: p })),
          limit,
        );
        for (const item of items) planned[item.position] = item;
      }),
    );
    return planned;
  }

  private async planRepository(
    registryId: string,
    client: RegistryClient,
    snap: Snapshot,
    inputs: (PlanInput & { position: number })[],
    limit: LimitFunction,
  ): Promise<PlannedItem[]> {
    const repository = inputs[0].repository;
    // Digest references that no tag points at still have to exist.
    const untagged = [
      ...new Set(
        inputs
          .filter((i) => i.reference.includes(':') && !snap.facts.has(i.reference))
          .map((i) => i.reference),
      ),
    ];
    await Promise.all(
      untagged.map((digest) =>
        limit(async () => {
          const f = await this.factsOf(registryId, client, repository, digest).catch(gone);
          if (f) snap.facts.set(digest, f);
        }),
      ),
    );

    const items: PlannedItem[] = inputs.map((input) => {
      const digest = input.reference.includes(':') ? input.reference : snap.tagDigest.get(input.reference);
      const facts = digest ? snap.facts.get(digest) : undefined;
      const base = {
        ...input,
        digest: digest ?? null,
        mediaType: facts?.mediaType ?? null,
        tags: [] as string[],
        estimatedBytes: 0,
        status: 'planned' as const,
        error: null,
      };
      if (!digest || !facts) {
        return skip(base, 'MANIFEST_UNKNOWN', `${describe(input)} does not exist on the registry`);
      }
      if (input.kind === 'tag') return { ...base, tags: [input.reference] };
      const tags = [...snap.tagDigest].filter(([, d]) => d === digest).map(([t]) => t);
      return { ...base, tags: tags.sort() };
    });

    // Two references to one image are one deletion; a tag delete inside a deleted image is moot.
    const deleted = new Map<string, PlannedItem>();
    for (const item of items) {
      if (item.status !== 'planned' || item.kind !== 'manifest') continue;
      const first = deleted.get(item.digest!);
      if (first) {
        Object.assign(
          item,
          skip(item, 'DUPLICATE_ITEM', `same image as item ${first.position} (${item.digest})`),
        );
      } else deleted.set(item.digest!, item);
    }
    for (const item of items) {
      if (item.status === 'planned' && item.kind === 'tag' && deleted.has(item.digest!)) {
        const by = deleted.get(item.digest!)!;
        Object.assign(
          item,
          skip(item, 'DUPLICATE_ITEM', `the image is deleted by item ${by.position}, with all its tags`),
        );
      }
    }

    // What stays tagged keeps its blobs, and its children: deleting a child breaks the multi-arch image.
    const kept = new Map<string, number>();
    const keptChildren = new Map<string, string[]>();
    for (const [tag, digest] of snap.tagDigest) {
      if (deleted.has(digest)) continue;
      const f = snap.facts.get(digest);
      if (!f) continue;
      for (const [b, size] of f.blobs) kept.set(b, size);
      for (const c of f.children) keptChildren.set(c, [...(keptChildren.get(c) ?? []), tag]);
    }
    const counted = new Set<string>();
    for (const item of items) {
      if (item.status !== 'planned' || item.kind !== 'manifest') continue;
      const users = keptChildren.get(item.digest!);
      if (users) {
        deleted.delete(item.digest!);
        Object.assign(
          item,
          skip(
            item,
            'MANIFEST_IN_USE',
            `${item.digest} is a platform manifest of the multi-arch image tagged ${users.sort().join(', ')}; ` +
              'deleting it would break that image. Delete the index instead',
          ),
        );
        continue;
      }
      let bytes = 0;
      for (const [b, size] of snap.facts.get(item.digest!)!.blobs) {
        if (kept.has(b) || counted.has(b)) continue;
        counted.add(b);
        bytes += size;
      }
      item.estimatedBytes = bytes;
    }
    return items;
  }

  /** Every tag of the repository and what it points at (one GET per tag; facts come from the cache). */
  private async snapshot(
    registryId: string,
    client: RegistryClient,
    repository: string,
    limit: LimitFunction,
  ): Promise<Snapshot> {
    const tags = await client.listTags(repository).catch((err: unknown) => {
      if (err instanceof UpstreamError && err.code === 'NAME_UNKNOWN') return [] as string[];
      throw err;
    });
    const snap: Snapshot = { tagDigest: new Map(), facts: new Map() };
    await Promise.all(
      tags.map((tag) =>
        limit(async () => {
          // A tag removed between tags/list and the read is gone; one of a type the gateway does not
          // handle (schema 1) cannot share a digest with the images it deletes.
          const m = await client.getManifest(repository, tag).catch(goneOrUnsupported);
          if (!m) return;
          snap.tagDigest.set(tag, m.digest);
          if (!snap.facts.has(m.digest))
            snap.facts.set(m.digest, await this.factsFrom(registryId, client, repository, m));
        }),
      ),
    );
    return snap;
  }

  private async factsOf(
    registryId: string,
    client: RegistryClient,
    repository: string,
    digest: string,
  ): Promise<Facts> {
    const hit = this.facts.get(`${registryId}|${repository}|${digest}`);
    if (hit) return hit;
    return this.factsFrom(registryId, client, repository, await client.getManifest(repository, digest));
  }

  private async factsFrom(
    registryId: string,
    client: RegistryClient,
    repository: string,
    m: FetchedManifest,
  ): Promise<Facts> {
    const key = `${registryId}|${repository}|${m.digest}`;
    const hit = this.facts.get(key);
    if (hit) return hit;
    const blobs = new Map<string, number>([[m.digest, m.size]]);
    let children: string[] = [];
    if (isIndex(m)) {
      children = m.json.manifests.map((d) => d.digest);
      // Called inside a limited task: children are read outside the limiter, or a full pool deadlocks.
      const childFacts = await Promise.all(
        children.map((c) => this.factsOf(registryId, client, repository, c).catch(gone)),
      );
      for (const f of childFacts) if (f) for (const [b, size] of f.blobs) blobs.set(b, size);
    } else {
      const image = m.json as ImageManifest;
      if (image.config) blobs.set(image.config.digest, image.config.size ?? 0);
      for (const l of image.layers ?? []) blobs.set(l.digest, l.size ?? 0);
    }
    const facts: Facts = { digest: m.digest, mediaType: m.mediaType, blobs, children };
    this.facts.set(key, facts);
    return facts;
  }
}

function skip(item: PlannedItem, code: string, message: string): PlannedItem {
  return { ...item, status: 'skipped', estimatedBytes: 0, error: { code, message } };
}

function describe(i: PlanInput): string {
  return `${i.kind === 'tag' ? 'tag' : 'manifest'} ${i.repository}${i.reference.includes(':') ? '@' : ':'}${i.reference}`;
}

/** A manifest or repository that is not there (any 404) reads as undefined; anything else is an error. */
const gone = unlessGone(undefined);

function goneOrUnsupported(err: unknown): undefined {
  if (err instanceof DomainError && err.code === 'MANIFEST_TYPE_UNSUPPORTED') return undefined;
  return gone(err);
}
