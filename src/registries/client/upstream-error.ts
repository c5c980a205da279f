import { DomainError } from '../../common/domain-error.js';

/** The error body distribution returns: `{ "errors": [{ "code": "...", "message": "...", "detail": ... }] }`. */
export interface UpstreamErrorBody {
  errors?: { code?: string; message?: string; detail?: unknown }[];
}

/**
 * For `.catch()`: a 404 (the manifest, tag or repository is not there, or no longer) reads as `value`;
 * anything else is thrown again.
 */
export const unlessGone =
  <T>(value: T) =>
  (err: unknown): T => {
    if (err instanceof UpstreamError && err.upstreamStatus === 404) return value;
    throw err;
  };

/** Upstream registry problems, mapped to the gateway's stable codes. */
export class UpstreamError extends DomainError {
  constructor(
    code: string,
    message: string,
    status: number,
    readonly registry: string,
    readonly upstreamStatus: number | null,
    readonly upstreamCode: string | null,
  ) {
    super(code, message, status, { registry, upstreamStatus, upstreamCode });
    this.name = 'UpstreamError';
  }

  /** Transient failures that a retry may cure (network, 5xx, 429). */
  get retryable(): boolean {
    return (
      this.code === 'REGISTRY_UNREACHABLE' ||
      this.code === 'UPSTREAM_ERROR' ||
      this.code === 'UPSTREAM_RATE_LIMITED'
    );
  }
}

const PASS_THROUGH_404 = new Set(['NAME_UNKNOWN', 'MANIFEST_UNKNOWN', 'BLOB_UNKNOWN', 'BLOB_UPLOAD_UNKNOWN']);

export function upstreamErrorFromResponse(
  registry: string,
  status: number,
  body: UpstreamErrorBody | undefined,
  what: string,
): UpstreamError {
  const first = body?.errors?.[0];
  const upCode = first?.code ?? null;
  const upMsg = first?.message ? `: ${first.message}` : '';
  const mk = (code: string, message: string, httpStatus: number) =>
    new UpstreamError(code, message, httpStatus, registry, status, upCode);

  if (status === 404) {
    if (upCode && PASS_THROUGH_404.has(upCode))
      return mk(upCode, `${what} not found on registry "${registry}"${upMsg}`, 404);
    return mk('NOT_FOUND_UPSTREAM', `${what} not found on registry "${registry}"`, 404);
  }
  if (status === 401)
    return mk('UNAUTHORIZED_UPSTREAM', `registry "${registry}" rejected the gateway's credentials`, 502);
  if (status === 403)
    return mk(
      'FORBIDDEN_UPSTREAM',
      `registry "${registry}" denied the gateway access to ${what}${upMsg}`,
      502,
    );
  if (status === 405) {
    return mk(
      upCode === 'UNSUPPORTED' ? 'UNSUPPORTED_UPSTREAM' : 'METHOD_NOT_ALLOWED_UPSTREAM',
      `registry "${registry}" does not allow this operation on ${what}${upMsg}`,
      409,
    );
  }
  if (status === 429)
    return mk('UPSTREAM_RATE_LIMITED', `registry "${registry}" is rate limiting the gateway`, 503);
  if (status >= 500)
    return mk('UPSTREAM_ERROR', `registry "${registry}" answered ${status} for ${what}${upMsg}`, 502);
  if (
    upCode === 'DIGEST_INVALID' ||
    upCode === 'NAME_INVALID' ||
    upCode === 'TAG_INVALID' ||
    upCode === 'PAGINATION_NUMBER_INVALID'
  ) {
    return mk(upCode, `registry "${registry}" rejected ${what}${upMsg}`, 400);
  }
  return mk('UPSTREAM_BAD_REQUEST', `registry "${registry}" answered ${status} for ${what}${upMsg}`, 502);
}

export function unreachable(registry: string, cause: unknown): UpstreamError {
  const c = cause as { code?: string; message?: string; cause?: { code?: string } };
  const why = c?.code ?? c?.cause?.code ?? c?.message ?? 'network error';
  // Certificate problems are configuration, not outages: say so, and how to fix it.
  if (/CERT|SELF_SIGNED|UNABLE_TO_VERIFY|UNABLE_TO_GET_ISSUER|ERR_TLS|ERR_SSL|HOSTNAME_MISMATCH/.test(why)) {
    return new UpstreamError(
      'UPSTREAM_TLS_ERROR',
      `registry "${registry}" presented a certificate the gateway does not trust (${why}); set tls.caCert to its CA bundle`,
      502,
      registry,
      null,
      null,
    );
  }
  return new UpstreamError(
    'REGISTRY_UNREACHABLE',
    `registry "${registry}" is unreachable (${why})`,
    502,
    registry,
    null,
    null,
  );
}

export function invalidResponse(registry: string, message: string): UpstreamError {
  return new UpstreamError(
    'UPSTREAM_INVALID_RESPONSE',
    `registry "${registry}" sent an invalid response: ${message}`,
    502,
    registry,
    null,
    null,
  );
}
