import { randomBytes } from 'node:crypto';
import { DomainError } from '../common/domain-error.js';

/*
 * Standard Webhooks secrets: `whsec_` + base64 of 24 to 64 random bytes. The gateway generates 32; a
 * secret given by the caller is accepted when it has that shape, so a receiver's existing key can be kept.
 */

const PREFIX = 'whsec_';
const MIN_BYTES = 24;
const MAX_BYTES = 64;

export function generateSecret(): string {
  return PREFIX + randomBytes(32).toString('base64');
}

export function assertValidSecret(secret: string): string {
  const body = secret.startsWith(PREFIX) ? secret.slice(PREFIX.length) : null;
  const bytes =
    body !== null && /^[A-Za-z0-9+/]+={0,2}$/.test(body) && body.length % 4 === 0
      ? Buffer.from(body, 'base64')
      : null;
  if (!bytes || bytes.length < MIN_BYTES || bytes.length > MAX_BYTES)
    throw new DomainError(
      'WEBHOOK_SECRET_INVALID',
      `secret must be "${PREFIX}" followed by the base64 of ${MIN_BYTES} to ${MAX_BYTES} random bytes; leave it out to have one generated`,
      400,
      { field: 'secret' },
    );
  return secret;
}
