import { randomUUID } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import type { GraphQLWsSubscriptionsConfig } from '@nestjs/graphql';
import type { DocumentNode, GraphQLSchema } from 'graphql';
import type { Context as WsContext, SubscribePayload } from 'graphql-ws';
import { graphqlRuntime } from './graphql-runtime.js';
import { limitError, operationCost, type GraphqlLimits } from './graphql-limits.js';

/*
 * GraphQL over HTTP (Apollo on Fastify) and over WebSocket (graphql-ws, same port and path) share one
 * context shape, `{ req }`, because the auth guard, the rate limiter and `@Ctx()` read the caller from a
 * request. A WebSocket operation gets a request of its own, built from the connection: the bearer token
 * comes from `connectionParams.authorization` (what graphql-ws clients send on connect) or from the
 * operation's `extensions.headers` (what GraphiQL sends), and is checked for every operation, so a
 * revoked token stops working for new subscriptions on an open socket too.
 */

/** The fields of a Fastify request the guard and the request context read. */
export interface WsRequest {
  id: string;
  headers: { authorization?: string };
  ip: string | undefined;
  method: 'WS';
  url: string;
  raw: IncomingMessage;
}

interface Extra {
  request: IncomingMessage;
}

function tokenOf(params: unknown): string | undefined {
  if (!params || typeof params !== 'object') return undefined;
  for (const [k, v] of Object.entries(params as Record<string, unknown>))
    if (k.toLowerCase() === 'authorization' && typeof v === 'string') return v;
  return undefined;
}

function wsRequest(ctx: WsContext<Record<string, unknown>, Extra>, payload?: SubscribePayload): WsRequest {
  const headers = (payload?.extensions as { headers?: unknown } | undefined)?.headers;
  const authorization = tokenOf(headers) ?? tokenOf(ctx.connectionParams);
  return {
    id: randomUUID(),
    headers: authorization ? { authorization } : {},
    ip: ctx.extra.request.socket.remoteAddress,
    method: 'WS',
    url: ctx.extra.request.url ?? '/graphql',
    raw: ctx.extra.request,
  };
}

function isWsContext(v: unknown): v is WsContext<Record<string, unknown>, Extra> {
  return typeof v === 'object' && v !== null && 'extra' in v && 'subscriptions' in v;
}

/** The `context` option of the GraphQL module: HTTP gets its Fastify request, WebSocket a built one. */
export function graphqlContext(arg: unknown, ...rest: unknown[]): { req: unknown } {
  if (isWsContext(arg)) return { req: wsRequest(arg, rest[1] as SubscribePayload | undefined) };
  const http = arg as { req?: unknown };
  return { req: http.req ?? arg };
}

/**
 * graphql-ws options for one application: operations are parsed, validated and checked against the
 * limits here (graphql-ws alone would validate without them), then run with the shared context. The
 * schema comes from the GraphQL module's `transformSchema` hook, the one place it is handed out.
 */
export class GraphqlWsTransport {
  private schema?: GraphQLSchema;

  constructor(private readonly limits: GraphqlLimits) {}

  readonly captureSchema = (schema: GraphQLSchema): GraphQLSchema => {
    this.schema = schema;
    return schema;
  };

  options(): GraphQLWsSubscriptionsConfig {
    return {
      onSubscribe: (ctx, id, payload) => {
        const { parse, validate, GraphQLError, getOperationAST } = graphqlRuntime;
        const schema = this.schema;
        if (!schema) return [new GraphQLError('the GraphQL schema is not ready yet')];
        let document: DocumentNode;
        try {
          document = parse(payload.query);
        } catch (err) {
          return [err instanceof GraphQLError ? err : new GraphQLError(String(err))];
        }
        const errors = validate(schema, document);
        if (errors.length) return errors;
        if (!getOperationAST(document, payload.operationName ?? undefined))
          return [new GraphQLError('no operation to run (name the one to run with operationName)')];
        const error = limitError(
          operationCost(schema, document, payload.operationName, payload.variables),
          this.limits,
        );
        if (error) return [error];
        return {
          schema,
          document,
          operationName: payload.operationName,
          variableValues: payload.variables,
          contextValue: graphqlContext(ctx, id, payload),
        };
      },
    };
  }
}
