import { createHash, randomBytes } from 'node:crypto';
import { crc32 } from 'node:zlib';

/**
 * Service-account API tokens: `rgw_` + 43 characters of base64url (256 random bits) + a CRC-32 of
 * both, as 8 hex digits. The prefix tells them from JWTs and lets secret scanners find leaked ones;
 * the checksum refuses typos and random strings without a database read.
 */
export const API_TOKEN_PREFIX = 'rgw_';
const API_TOKEN_RE = /^rgw_([A-Za-z0-9_-]{43})([0-9a-f]{8})$/;

export interface NewApiToken {
  token: string;
  hash: string;
  /** What lists show to recognise a token: the prefix and the first 8 random characters. */
  hint: string;
}

export function generateApiToken(): NewApiToken {
  const body = randomBytes(32).toString('base64url');
  const token = `${API_TOKEN_PREFIX}${body}${checksum(body)}`;
  return { token, hash: hashApiToken(token), hint: token.slice(0, API_TOKEN_PREFIX.length + 8) };
}

export function isWellFormedApiToken(token: string): boolean {
  const m = API_TOKEN_RE.exec(token);
  return !!m && checksum(m[1]) === m[2];
}

/** The tokens carry 256 random bits, so a plain sha256 is as strong as a slow hash and indexable. */
export function hashApiToken(token: string): string {
  return createHash('sha256').update(token).digest('hex');
}

function checksum(body: string): string {
  return crc32(`${API_TOKEN_PREFIX}${body}`).toString(16).padStart(8, '0');
}
