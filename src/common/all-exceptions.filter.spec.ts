import type { ArgumentsHost } from '@nestjs/common';
import { pino } from 'pino';
import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { AllExceptionsFilter } from './all-exceptions.filter.js';
import { DomainError } from './domain-error.js';

/** A pino logger bound to a request id, as Fastify gives each request, writing its lines to `lines`. */
function requestLogger(requestId: string) {
  const lines: Record<string, unknown>[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const line of chunk.toString('utf8').split('\n').filter(Boolean))
        lines.push(JSON.parse(line) as Record<string, unknown>);
      done();
    },
  });
  return { log: pino(sink).child({ requestId }), lines };
}

function httpHost(req: object) {
  const sent: { status?: number; body?: unknown } = {};
  const reply = {
    status(code: number) {
      sent.status = code;
      return reply;
    },
    header: () => reply,
    send(body: unknown) {
      sent.body = body;
      return reply;
    },
  };
  const host = {
    getType: () => 'http',
    switchToHttp: () => ({ getRequest: () => req, getResponse: () => reply }),
  } as unknown as ArgumentsHost;
  return { host, sent };
}

describe('AllExceptionsFilter', () => {
  it("logs an unexpected error's stack with the request id the client was answered with", () => {
    const { log, lines } = requestLogger('req-500');
    const { host, sent } = httpHost({ id: 'req-500', log });
    const failure = Object.assign(new TypeError('boom in a handler'), { parameters: ['s3cret-value'] });
    new AllExceptionsFilter().catch(failure, host);
    expect(sent).toMatchObject({ status: 500, body: { error: { code: 'INTERNAL', requestId: 'req-500' } } });
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatchObject({ level: 50, requestId: 'req-500', error: { type: 'TypeError' } });
    expect((lines[0].error as { stack: string }).stack).toContain('boom in a handler');
    // Not the error's other properties: a failed query's parameters are the request's values.
    expect(JSON.stringify(lines[0])).not.toContain('s3cret-value');
  });

  it('the same for a GraphQL operation, from its { req } context', () => {
    const { log, lines } = requestLogger('req-gql');
    const host = {
      getType: () => 'graphql',
      getArgByIndex: (i: number) => (i === 2 ? { req: { id: 'req-gql', log } } : undefined),
    } as unknown as ArgumentsHost;
    const answer = new AllExceptionsFilter().catch(new Error('resolver bug'), host);
    expect(answer?.extensions.code).toBe('INTERNAL');
    expect(lines).toMatchObject([{ requestId: 'req-gql', error: { message: 'resolver bug' } }]);
  });

  it('logs nothing for an error with a code: the answer says it all', () => {
    const { log, lines } = requestLogger('req-409');
    const { host, sent } = httpHost({ id: 'req-409', log });
    new AllExceptionsFilter().catch(new DomainError('GC_CONFLICT', 'try again', 409), host);
    expect(sent).toMatchObject({ status: 409, body: { error: { code: 'GC_CONFLICT' } } });
    expect(lines).toEqual([]);
  });
});
