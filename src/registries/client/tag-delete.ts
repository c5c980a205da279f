import { randomUUID } from 'node:crypto';
import { ConflictError, DomainError } from '../../common/domain-error.js';
import { FetchedManifest, ImageManifest, MediaTypes } from './oci-types.js';
import { UpstreamError } from './upstream-error.js';

/**
 * Removing one tag and nothing else. Distribution 3 does it with `DELETE /manifests/<tag>`; 2.x only
 * deletes by digest, which drops every tag of that digest. On 2.x the tag is first re-pointed at a
 * manifest of its own (the throwaway), so that deleting the throwaway by digest drops only this tag.
 */

export interface TagDeleteResult {
  method: 'tag-delete' | 'throwaway-manifest';
  /** The manifest the tag was re-pointed at and that was then deleted (2.x method only). */
  throwawayDigest?: string;
  /** The digest the tag pointed at before, when known: a resumed delete only sees the throwaway. */
  previousDigest?: string;
  /** The tag was not there (or someone else removed it meanwhile): this call did not delete it. */
  alreadyGone: boolean;
}

/** The OCI empty descriptor (image-spec 1.1): a config that every registry stores as the 2 bytes `{}`. */
export const EMPTY_CONFIG = {
  mediaType: 'application/vnd.oci.empty.v1+json',
  digest: 'sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a',
  size: 2,
} as const;
export const EMPTY_CONFIG_BYTES = Buffer.from('{}');

export const THROWAWAY_ARTIFACT_TYPE = 'application/vnd.registry-gateway.throwaway.v1';
export const THROWAWAY_FOR = 'io.registry-gateway.throwaway-for';
export const THROWAWAY_NONCE = 'io.registry-gateway.throwaway-nonce';

/**
 * The nonce makes the digest unique to this operation, so no other tag can point at it and deleting it
 * by digest removes exactly this tag. OCI 1.1 wants an artifactType when the config is empty.
 */
export function throwawayManifest(tag: string): Buffer {
  const manifest: ImageManifest = {
    schemaVersion: 2,
    mediaType: MediaTypes.ociManifest,
    artifactType: THROWAWAY_ARTIFACT_TYPE,
    config: { ...EMPTY_CONFIG },
    layers: [],
    annotations: { [THROWAWAY_FOR]: tag, [THROWAWAY_NONCE]: randomUUID() },
  };
  return Buffer.from(JSON.stringify(manifest));
}

/**
 * Whether HEAD's answer may be a throwaway, so that only then the manifest is fetched to make sure. The
 * nonce has a fixed length, so a throwaway for this tag has exactly the size of a fresh one; 0 means
 * the registry sent no length.
 */
export function mayBeThrowaway(head: { mediaType: string; size: number }, tag: string): boolean {
  return (
    head.mediaType === MediaTypes.ociManifest &&
    (head.size === 0 || head.size === throwawayManifest(tag).length)
  );
}

/** A throwaway this gateway made for this very tag, left behind by an interrupted delete. */
export function isThrowawayFor(manifest: FetchedManifest, tag: string): boolean {
  const json = manifest.json as Partial<ImageManifest>;
  return (
    manifest.mediaType === MediaTypes.ociManifest &&
    json.config?.digest === EMPTY_CONFIG.digest &&
    Array.isArray(json.layers) &&
    json.layers.length === 0 &&
    json.annotations?.[THROWAWAY_FOR] === tag
  );
}

interface TagRef {
  registry: string;
  repository: string;
  tag: string;
}

/** Someone pushed to the tag after it was re-pointed: their image wins and the tag stays. */
export function tagChanged(
  ref: TagRef,
  throwawayDigest: string,
  currentDigest: string,
  previousDigest: string | undefined,
): ConflictError {
  return new ConflictError(
    'TAG_CHANGED',
    `tag ${ref.repository}:${ref.tag} on registry "${ref.registry}" was pushed to while it was being deleted ` +
      `(it now points at ${currentDigest}); it was not deleted. The throwaway manifest ${throwawayDigest} ` +
      'is left untagged and goes with the next garbage collection that deletes untagged manifests',
    { ...ref, throwawayDigest, currentDigest, previousDigest: previousDigest ?? null },
  );
}

/** The tag points at another image than the one planned: deleting it now would remove the wrong image's tag. */
export function tagMoved(ref: TagRef, expectedDigest: string, currentDigest: string): ConflictError {
  return new ConflictError(
    'TAG_MOVED',
    `tag ${ref.repository}:${ref.tag} on registry "${ref.registry}" now points at ${currentDigest}, not at the ` +
      `planned ${expectedDigest}; it was left alone`,
    { ...ref, expectedDigest, currentDigest },
  );
}

/**
 * The tag was re-pointed at the throwaway but the throwaway could not be deleted: the tag now shows the
 * throwaway instead of the image. A retry recognises the throwaway by its annotation and finishes.
 */
export function tagDeleteIncomplete(
  ref: TagRef,
  throwawayDigest: string,
  previousDigest: string | undefined,
  cause: unknown,
): DomainError {
  const why = cause instanceof Error ? cause.message : String(cause);
  const error = new DomainError(
    'TAG_DELETE_INCOMPLETE',
    `tag ${ref.repository}:${ref.tag} on registry "${ref.registry}" now points at the throwaway manifest ` +
      `${throwawayDigest}, which could not be deleted (${why}); the image it pointed at is untouched. ` +
      'Retry the tag delete: it recognises the throwaway and only deletes it',
    502,
    {
      ...ref,
      throwawayDigest,
      previousDigest: previousDigest ?? null,
      cause: {
        code: cause instanceof DomainError ? cause.code : 'INTERNAL',
        retryable: cause instanceof UpstreamError ? cause.retryable : false,
      },
    },
  );
  error.cause = cause;
  return error;
}
