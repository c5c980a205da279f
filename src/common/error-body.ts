import { HttpException, HttpStatus } from '@nestjs/common';
import { DomainError } from './domain-error.js';

export interface ErrorBody {
  code: string;
  message: string;
  details?: Record<string, unknown>;
}

const httpCodes: Record<number, string> = {
  400: 'BAD_REQUEST',
  401: 'UNAUTHENTICATED',
  403: 'FORBIDDEN',
  404: 'ROUTE_NOT_FOUND',
  405: 'METHOD_NOT_ALLOWED',
  413: 'PAYLOAD_TOO_LARGE',
  414: 'URI_TOO_LONG',
  415: 'UNSUPPORTED_MEDIA_TYPE',
  429: 'RATE_LIMITED',
};

/**
 * Postgres "data exceptions" a client's text causes: 22P02 invalid text representation (a uuid, a number
 * that is not one), 22021 a byte sequence the encoding refuses (a NUL byte), 22003 a number beyond its
 * column. Fields are validated where they come in; this is the net for a field that was not.
 */
const CLIENT_DATA_EXCEPTIONS = new Set(['22P02', '22021', '22003']);

/** The SQLSTATE of a Postgres error, as pg throws it or as TypeORM wraps it (QueryFailedError). */
function sqlState(err: unknown): string | undefined {
  if (!(err instanceof Error)) return undefined;
  const e = err as Error & { code?: unknown; driverError?: { code?: unknown } };
  const code = e.driverError?.code ?? e.code;
  return typeof code === 'string' && /^[0-9A-Z]{5}$/.test(code) ? code : undefined;
}

/**
 * Turns anything thrown into a status and a stable, secret-free error body. `lateValidation`: the
 * SQLSTATE of a client's bad input that only the database noticed (answered 400; logged, so the missing
 * check gets added).
 */
export function toErrorBody(err: unknown): {
  status: number;
  body: ErrorBody;
  unexpected: boolean;
  lateValidation?: string;
} {
  if (err instanceof DomainError) {
    return {
      status: err.status,
      body: { code: err.code, message: err.message, details: err.details },
      unexpected: false,
    };
  }
  if (err instanceof HttpException) {
    const status = err.getStatus();
    const res = err.getResponse();
    if (
      status === HttpStatus.BAD_REQUEST &&
      typeof res === 'object' &&
      res &&
      Array.isArray((res as { message?: unknown }).message)
    ) {
      const problems = (res as { message: string[] }).message;
      return {
        status,
        body: { code: 'VALIDATION_FAILED', message: problems.join('; '), details: { problems } },
        unexpected: false,
      };
    }
    if (status === HttpStatus.UNSUPPORTED_MEDIA_TYPE) return unsupportedMediaType(err.message);
    return {
      status,
      body: { code: httpCodes[status] ?? (status >= 500 ? 'INTERNAL' : 'BAD_REQUEST'), message: err.message },
      unexpected: status >= 500,
    };
  }
  // Fastify's own errors (body too large, bad JSON, ...) carry statusCode and a code like FST_ERR_*.
  const fe = err as { statusCode?: number; message?: string; code?: string };
  if (typeof fe?.statusCode === 'number' && fe.statusCode >= 400 && fe.statusCode < 500) {
    if (fe.code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE') return unsupportedMediaType(fe.message);
    const code = httpCodes[fe.statusCode] ?? 'BAD_REQUEST';
    return { status: fe.statusCode, body: { code, message: fe.message ?? 'Bad request' }, unexpected: false };
  }
  const state = sqlState(err);
  if (state && CLIENT_DATA_EXCEPTIONS.has(state)) {
    const problem =
      state === '22021'
        ? 'a value holds a byte sequence that is not valid text (a NUL byte, say)'
        : 'a value is not valid for its field';
    return {
      status: 400,
      body: { code: 'VALIDATION_FAILED', message: problem, details: { problems: [problem] } },
      unexpected: false,
      lateValidation: state,
    };
  }
  return { status: 500, body: { code: 'INTERNAL', message: 'Internal server error' }, unexpected: true };
}

/** A body in another media type than JSON (a form, say, as `curl -d` sends without -H): what to send instead. */
function unsupportedMediaType(message: string | undefined) {
  return {
    status: 415,
    body: {
      code: 'UNSUPPORTED_MEDIA_TYPE',
      message: `${message || 'Unsupported Media Type'}: send the body as JSON, with content-type: application/json`,
    },
    unexpected: false,
  };
}
