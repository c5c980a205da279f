import { DomainError, ValidationError } from '../../common/domain-error.js';

// distribution/reference grammar: path components separated by "/", each lower-case alnum
// joined by ".", "_", "__" or runs of "-". This grammar also rules out "..", "//" and "%2e" tricks.
const COMPONENT = '[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*';
const NAME_RE = new RegExp(`^${COMPONENT}(?:/${COMPONENT})*$`);
const TAG_RE = /^[\w][\w.-]{0,127}$/;
const DIGEST_RE = /^(sha256:[a-f0-9]{64}|sha512:[a-f0-9]{128})$/;
const MAX_NAME = 255;

export function isRepositoryName(name: string): boolean {
  return name.length <= MAX_NAME && NAME_RE.test(name);
}

export function isTag(ref: string): boolean {
  return TAG_RE.test(ref);
}

export function isDigest(ref: string): boolean {
  return DIGEST_RE.test(ref);
}

export function assertRepositoryName(name: string): string {
  if (typeof name !== 'string' || name.length === 0) throw new ValidationError('repository name is required');
  if (name.length > MAX_NAME) {
    throw invalidName(name, `repository name is longer than ${MAX_NAME} characters`);
  }
  if (!NAME_RE.test(name)) {
    throw invalidName(
      name,
      'repository name must be lower-case path components of [a-z0-9] joined by ".", "_", "__" or "-", separated by "/"',
    );
  }
  return name;
}

export function assertTag(tag: string): string {
  if (!isTag(tag)) {
    throw new DomainError('TAG_INVALID', 'tag must match [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}', 400, {
      tag: tag.slice(0, 200),
    });
  }
  return tag;
}

export function assertDigest(digest: string): string {
  if (!isDigest(digest)) {
    throw new DomainError('DIGEST_INVALID', 'digest must be sha256:<64 hex> or sha512:<128 hex>', 400, {
      digest: digest.slice(0, 200),
    });
  }
  return digest;
}

/** A tag or a digest, as in `/manifests/<reference>`. */
export function assertReference(ref: string): { kind: 'tag' | 'digest'; value: string } {
  if (typeof ref !== 'string' || ref.length === 0) throw new ValidationError('reference is required');
  if (ref.includes(':')) return { kind: 'digest', value: assertDigest(ref) };
  return { kind: 'tag', value: assertTag(ref) };
}

function invalidName(name: string, message: string): DomainError {
  return new DomainError('NAME_INVALID', message, 400, { repository: name.slice(0, 300) });
}
