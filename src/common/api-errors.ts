import { PATH_METADATA } from '@nestjs/common/constants.js';
import { ApiProperty, ApiPropertyOptional, ApiResponse } from '@nestjs/swagger';

/*
 * The REST error answers, for the OpenAPI document: what AllExceptionsFilter sends, and the codes each
 * route answers with (README, "Errors").
 */

/** The `error` of every REST error answer. */
export class ErrorBody {
  @ApiProperty({ description: 'Stable and upper-snake: what to act on', example: 'VALIDATION_FAILED' })
  code: string;

  @ApiProperty({
    description: 'What went wrong, for a person to read',
    example: 'limit must not be less than 1',
  })
  message: string;

  @ApiPropertyOptional({
    type: 'object',
    additionalProperties: true,
    description:
      'Facts of the code: `problems` (VALIDATION_FAILED), `permission` (FORBIDDEN), `retryAfterSeconds` (RATE_LIMITED), the registry and its answer (upstream errors)…',
    example: { problems: ['limit must not be less than 1'] },
  })
  details?: Record<string, unknown>;

  @ApiProperty({
    description: 'The request’s id, as in the `x-request-id` header and the log',
    example: '5f0c7b52-8a43-4e0b-9d56-3c1f2e9b7a10',
  })
  requestId: string;
}

/** Every REST error answer: `{"error": {"code", "message", "details"?, "requestId"}}`. */
export class ErrorResponse {
  @ApiProperty({ type: ErrorBody }) error: ErrorBody;
}

interface ErrorCode {
  /** The statuses it is answered with (more than one where the route decides). */
  status: number | readonly number[];
  when: string;
}

/** The codes routes document, with when they are answered. A code is thrown somewhere in src/. */
const API_ERRORS = {
  VALIDATION_FAILED: {
    status: 400,
    when: 'a body, query or path parameter (a uuid id, a cursor) that does not validate; `details.problems` lists each',
  },
  NAME_INVALID: { status: 400, when: 'a repository name outside the Distribution grammar' },
  TAG_INVALID: { status: 400, when: 'a tag that is not `[\\w][\\w.-]{0,127}`' },
  DIGEST_INVALID: { status: 400, when: 'a digest that is not `sha256:` or `sha512:` hex' },
  PATH_TOO_LONG: { status: 400, when: 'the path after `/repositories/` is longer than 1024 characters' },
  FENCE_UNSUPPORTED: {
    status: 400,
    when: 'the executor cannot do what the fence or the cache needs (read-only start, stop, restart)',
  },
  WEBHOOK_URL_INVALID: {
    status: 400,
    when: 'a URL that is not http(s), carries credentials or a fragment, or is too long',
  },
  WEBHOOK_URL_FORBIDDEN: {
    status: 400,
    when: 'a URL on (or resolving to) a loopback, private, link-local, reserved or metadata address the configuration does not allow',
  },
  WEBHOOK_EVENT_TYPE_INVALID: {
    status: 400,
    when: 'an event type that does not exist, or a wildcard that matches none',
  },
  WEBHOOK_SECRET_INVALID: { status: 400, when: 'a secret that is not `whsec_` + base64 of 24-64 bytes' },
  UNAUTHENTICATED: {
    status: 401,
    when: 'no bearer token, or one that is unknown, expired, revoked or fails verification',
  },
  FORBIDDEN: {
    status: 403,
    when: 'no role binding permits this here; `details.permission` names what is missing',
  },
  REGISTRY_NOT_FOUND: { status: 404, when: 'no registry of that name' },
  NAME_UNKNOWN: { status: 404, when: 'the registry has no such repository' },
  MANIFEST_UNKNOWN: { status: 404, when: 'the registry has no such tag or digest' },
  ROUTE_NOT_FOUND: { status: 404, when: 'a path that is none of the forms described' },
  DELETION_NOT_FOUND: { status: 404, when: 'no deletion request with that id' },
  GC_RUN_NOT_FOUND: { status: 404, when: 'no GC run with that id' },
  GC_NOT_CONFIGURED: {
    status: [404, 409],
    when: 'the registry has no GC settings (PUT …/gc-settings first)',
  },
  SERVICE_ACCOUNT_NOT_FOUND: { status: 404, when: 'no service account with that id' },
  TOKEN_NOT_FOUND: { status: 404, when: 'the service account has no token with that id' },
  ROLE_BINDING_NOT_FOUND: { status: 404, when: 'no role binding with that id' },
  WEBHOOK_NOT_FOUND: { status: 404, when: 'no webhook subscription with that id' },
  WEBHOOK_DELIVERY_NOT_FOUND: { status: 404, when: 'the subscription has no delivery with that id' },
  REGISTRY_EXISTS: { status: 409, when: 'the name is taken' },
  REGISTRY_MANAGED_BY_FILE: {
    status: 409,
    when: 'the registry comes from the registries file: change it there',
  },
  DELETE_DISABLED: {
    status: 409,
    when: 'the registry refuses deletes (`storage.delete.enabled` off, or a pull-through cache), as its last probe found',
  },
  REGISTRY_READ_ONLY: { status: 409, when: 'the registry is in read-only maintenance mode' },
  MANIFEST_IN_USE: {
    status: 409,
    when: 'the digest is a platform manifest of a tagged multi-arch index: deleting it would break that image',
  },
  DELETION_NOT_PLANNED: { status: 409, when: 'only a planned dry run can be executed' },
  DELETION_FINISHED: { status: 409, when: 'the request has ended: nothing is left to cancel' },
  PLAN_STALE: {
    status: 409,
    when: 'since the dry run a tag moved or a digest gained tags (`details.mismatches`); nothing was deleted: plan again',
  },
  GC_UNFENCED_NOT_CONFIRMED: {
    status: 409,
    when: 'the registry’s fence is `none`: confirm the run with `allowUnfenced: true`',
  },
  GC_CONFLICT: { status: 409, when: 'a run was started and finished concurrently: try again' },
  GC_SETTINGS_MANAGED_BY_FILE: {
    status: 409,
    when: 'the GC settings come from the registries file: change them there',
  },
  GC_RUN_FINISHED: { status: 409, when: 'the run has ended and cannot be cancelled' },
  SERVICE_ACCOUNT_EXISTS: { status: 409, when: 'the name is taken' },
  ROLE_BINDING_EXISTS: { status: 409, when: 'the subject already has this role on this scope' },
  WEBHOOK_INACTIVE: { status: 409, when: 'the subscription is inactive: activate it first' },
  GC_OUTPUT_REMOVED: {
    status: 410,
    when: 'the output was dropped, GC_OUTPUT_RETENTION_DAYS after the run ended',
  },
  PAYLOAD_TOO_LARGE: { status: 413, when: 'a body over 1 MiB' },
  MANIFEST_TYPE_UNSUPPORTED: {
    status: 422,
    when: 'a schema 1 manifest, or another type the gateway does not handle',
  },
  TOO_MANY_DELETIONS: {
    status: 422,
    when: 'more items than `maxDeletions` or DELETE_MAX_ITEMS; checked before the registry is read',
  },
  NOTHING_TO_DELETE: {
    status: 422,
    when: 'no item can be deleted (`details.items` says why for each)',
  },
  REGISTRY_FENCED: {
    status: 423,
    when: 'a GC run holds the registry (`details.gcRunId`): deletes are taken again when it ends',
  },
  RATE_LIMITED: {
    status: 429,
    when: 'the principal’s request budget is spent; `Retry-After` and `details.retryAfterSeconds` say when to come back',
  },
  REGISTRY_UNREACHABLE: { status: 502, when: 'the registry refused, reset or timed out the connection' },
  UPSTREAM_TLS_ERROR: { status: 502, when: 'the registry’s certificate is not trusted: set `tls.caCert`' },
  UNAUTHORIZED_UPSTREAM: { status: 502, when: 'the registry rejected the gateway’s credentials' },
  FORBIDDEN_UPSTREAM: { status: 502, when: 'the registry denied the gateway access' },
  UPSTREAM_ERROR: { status: 502, when: 'the registry answered with a 5xx' },
  UPSTREAM_BAD_REQUEST: { status: 502, when: 'the registry refused the gateway’s request' },
  UPSTREAM_INVALID_RESPONSE: {
    status: 502,
    when: 'the registry sent something that does not check out (a body that does not match its digest, say)',
  },
  UPSTREAM_RATE_LIMITED: { status: 503, when: 'the registry is rate limiting the gateway' },
  IDENTITY_PROVIDER_UNAVAILABLE: {
    status: 503,
    when: 'the OIDC discovery document or key set could not be fetched to check a JWT',
  },
} as const satisfies Record<string, ErrorCode>;

export type ApiErrorCode = keyof typeof API_ERRORS;

/** A code, or a code with what it means on this route. */
export type DocumentedError = ApiErrorCode | { code: ApiErrorCode; when: string };

/** Codes by the status they are answered with: `{ 404: ['DELETION_NOT_FOUND'] }`. */
export type ApiErrorMap = Readonly<Partial<Record<number, readonly DocumentedError[]>>>;

/** What a route that reads from the registry answers when the registry fails. */
export const UPSTREAM_ERRORS: ApiErrorMap = {
  502: [
    'REGISTRY_UNREACHABLE',
    'UPSTREAM_TLS_ERROR',
    'UNAUTHORIZED_UPSTREAM',
    'FORBIDDEN_UPSTREAM',
    'UPSTREAM_ERROR',
    'UPSTREAM_BAD_REQUEST',
    'UPSTREAM_INVALID_RESPONSE',
  ],
  503: ['UPSTREAM_RATE_LIMITED'],
};

const EXAMPLE_REQUEST_ID = '5f0c7b52-8a43-4e0b-9d56-3c1f2e9b7a10';

/**
 * Documents error answers as `ErrorResponse`, one response per status listing its codes, each with an
 * example. On a route, or on a controller: then on each of its routes, adding up with the codes the
 * route documents itself for the same status. Throws at startup for a code documented under a status
 * it is not answered with.
 */
export function ApiErrors(...maps: ApiErrorMap[]): ClassDecorator & MethodDecorator {
  const byStatus = new Map<number, { code: ApiErrorCode; when: string }[]>();
  for (const map of maps)
    for (const [key, errors] of Object.entries(map)) {
      const status = Number(key);
      for (const given of errors ?? []) {
        const { code, when } =
          typeof given === 'string' ? { code: given, when: API_ERRORS[given].when } : given;
        const statuses: readonly number[] = [API_ERRORS[code].status].flat();
        if (!statuses.includes(status))
          throw new Error(`${code} is answered with ${statuses.join('/')}, not ${status}`);
        const listed = byStatus.get(status) ?? [];
        if (!listed.some((e) => e.code === code)) listed.push({ code, when });
        byStatus.set(status, listed);
      }
    }
  const responses = [...byStatus].map(([status, errors]) =>
    ApiResponse({
      status,
      type: ErrorResponse,
      description: errors.map((e) => `\`${e.code}\`: ${e.when}`).join('\n\n'),
      examples: Object.fromEntries(
        errors.map((e) => [
          e.code,
          {
            summary: e.when,
            value: { error: { code: e.code, message: e.when, requestId: EXAMPLE_REQUEST_ID } },
          },
        ]),
      ),
    }),
  );
  return (target: object, key?: string | symbol, descriptor?: PropertyDescriptor): void => {
    if (descriptor) {
      for (const response of responses) response(target, key!, descriptor);
      return;
    }
    // A controller: each of its routes (a class-level response would replace a route's own).
    const prototype = (target as { prototype: object }).prototype;
    for (const name of Object.getOwnPropertyNames(prototype)) {
      const route = Object.getOwnPropertyDescriptor(prototype, name)!;
      if (name === 'constructor' || typeof route.value !== 'function') continue;
      if (Reflect.getMetadata(PATH_METADATA, route.value) === undefined) continue;
      for (const response of responses) response(prototype, name, route);
    }
  };
}
