import { isIP } from 'node:net';
import { Webhook } from 'standardwebhooks';
import { Agent, request } from 'undici';
import { guardedLookup, hostOf, TargetForbiddenError, type TargetPolicy } from './webhook-target.js';

/** What a receiver's answer keeps in the attempt log. */
export const RESPONSE_BODY_MAX = 4096;
const USER_AGENT = 'registry-gateway-webhooks/1';

export interface WebhookMessage {
  /** The delivery id: the `webhook-id` header, the same on every attempt. */
  id: string;
  type: string;
  occurredAt: Date;
  data: Record<string, unknown>;
}

export interface AttemptOutcome {
  startedAt: Date;
  durationMs: number;
  statusCode: number | null;
  responseBody: string | null;
  responseTruncated: boolean;
  error: { code: string; message: string } | null;
  succeeded: boolean;
}

/** The body POSTed, Standard Webhooks style. Built the same way for every attempt. */
export function bodyOf(m: WebhookMessage): string {
  return JSON.stringify({ type: m.type, timestamp: m.occurredAt.toISOString(), data: m.data });
}

/**
 * Signs and POSTs one delivery attempt. Every connection goes through the guarded lookup, so the
 * address is checked where it is used; redirects are not followed (a 3xx is a failed attempt).
 */
export class WebhookSender {
  private readonly agent: Agent;

  constructor(
    private readonly policy: TargetPolicy,
    private readonly timeoutMs: number,
    lookup = guardedLookup(policy),
  ) {
    this.agent = new Agent({
      connect: { lookup, timeout: timeoutMs },
      headersTimeout: timeoutMs,
      bodyTimeout: timeoutMs,
      keepAliveTimeout: 4_000,
      connections: 8,
    });
  }

  async send(url: string, secrets: string[], message: WebhookMessage): Promise<AttemptOutcome> {
    const startedAt = new Date();
    const started = performance.now();
    const done = (o: Omit<AttemptOutcome, 'startedAt' | 'durationMs'>): AttemptOutcome => ({
      startedAt,
      durationMs: Math.round(performance.now() - started),
      ...o,
    });
    const failed = (code: string, message: string, statusCode: number | null = null) =>
      done({
        statusCode,
        responseBody: null,
        responseTruncated: false,
        error: { code, message },
        succeeded: false,
      });
    try {
      const target = new URL(url);
      const host = hostOf(target);
      // A literal address never reaches the lookup.
      if (isIP(host)) {
        const refusal = this.policy.refusal(host);
        if (refusal) return failed('WEBHOOK_TARGET_FORBIDDEN', refusal);
      }
      const body = bodyOf(message);
      const signature = secrets.map((s) => new Webhook(s).sign(message.id, startedAt, body)).join(' ');
      const res = await request(target, {
        method: 'POST',
        dispatcher: this.agent,
        headers: {
          'content-type': 'application/json',
          'user-agent': USER_AGENT,
          'webhook-id': message.id,
          'webhook-timestamp': String(Math.floor(startedAt.getTime() / 1000)),
          'webhook-signature': signature,
        },
        body,
        signal: AbortSignal.timeout(this.timeoutMs),
      });
      const { text, truncated } = await readCapped(res.body);
      const ok = res.statusCode >= 200 && res.statusCode < 300;
      return done({
        statusCode: res.statusCode,
        responseBody: text,
        responseTruncated: truncated,
        error: ok
          ? null
          : { code: 'WEBHOOK_HTTP_STATUS', message: `the receiver answered ${res.statusCode}` },
        succeeded: ok,
      });
    } catch (err) {
      const { code, message } = classify(err);
      return failed(code, message);
    }
  }

  close(): Promise<void> {
    return this.agent.close();
  }
}

async function readCapped(
  body: AsyncIterable<Buffer> & { destroy?: () => void },
): Promise<{ text: string; truncated: boolean }> {
  const chunks: Buffer[] = [];
  let size = 0;
  let truncated = false;
  for await (const chunk of body) {
    chunks.push(chunk);
    size += chunk.length;
    if (size > RESPONSE_BODY_MAX) {
      truncated = true;
      break; // ends the iteration, which destroys the rest of the body
    }
  }
  const bytes = Buffer.concat(chunks).subarray(0, RESPONSE_BODY_MAX);
  return { text: new TextDecoder('utf-8', { fatal: false }).decode(bytes), truncated };
}

const CONNECTION_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EPIPE',
  'UND_ERR_SOCKET',
  'UND_ERR_CLOSED',
]);
const TIMEOUT_CODES = new Set([
  'UND_ERR_CONNECT_TIMEOUT',
  'UND_ERR_HEADERS_TIMEOUT',
  'UND_ERR_BODY_TIMEOUT',
  'ETIMEDOUT',
]);

/** A stable code for an attempt that got no HTTP answer. */
export function classify(err: unknown): { code: string; message: string } {
  const chain: unknown[] = [];
  for (let e: unknown = err; e && chain.length < 5; e = (e as { cause?: unknown }).cause) chain.push(e);
  const forbidden = chain.find((e) => e instanceof TargetForbiddenError);
  if (forbidden) return { code: 'WEBHOOK_TARGET_FORBIDDEN', message: forbidden.message };
  const codes = chain.map((e) => (e as { code?: unknown }).code).filter((c) => typeof c === 'string');
  const names = chain.map((e) => (e as { name?: unknown }).name);
  const message = (err instanceof Error ? err.message : String(err)).slice(0, 500) || 'request failed';
  if (names.includes('TimeoutError') || codes.some((c) => TIMEOUT_CODES.has(c)))
    return { code: 'WEBHOOK_TIMEOUT', message: `no answer in time (${message})` };
  if (codes.some((c) => c === 'ENOTFOUND' || c === 'EAI_AGAIN'))
    return { code: 'WEBHOOK_DNS_FAILED', message };
  if (codes.some((c) => c.startsWith('ERR_TLS') || c.includes('CERT') || c.includes('SELF_SIGNED')))
    return { code: 'WEBHOOK_TLS_ERROR', message };
  if (codes.some((c) => CONNECTION_CODES.has(c))) return { code: 'WEBHOOK_CONNECTION_FAILED', message };
  if (err instanceof AggregateError)
    return classify(err.errors[0] ?? new Error(message)).code === 'WEBHOOK_DELIVERY_FAILED'
      ? { code: 'WEBHOOK_DELIVERY_FAILED', message }
      : classify(err.errors[0]);
  return { code: 'WEBHOOK_DELIVERY_FAILED', message };
}
