import { execFile } from 'node:child_process';
import { randomUUID, timingSafeEqual, X509Certificate } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { importPKCS8, SignJWT } from 'jose';

const run = promisify(execFile);

/** ES256: P-256 keys are generated in milliseconds, and distribution 2.8 (libtrust) verifies them. */
const ALG = 'ES256';

/** One entry of a token's `access` claim, as distribution reads it (registry/auth/token). */
export interface AccessEntry {
  type: string;
  name: string;
  actions: string[];
}

/** A parsed `scope` parameter: `repository:team/app:pull,push`, `registry:catalog:*`. */
export interface RequestedScope extends AccessEntry {
  raw: string;
}

export interface TokenRequestRecord {
  at: Date;
  /** The Basic-auth user name presented, authenticated or not; null when anonymous. */
  user: string | null;
  authenticated: boolean;
  service: string | null;
  /** Each `scope` query parameter as sent. */
  scopes: string[];
  status: number;
  /** The access claim of the issued token; empty when none was issued. */
  granted: AccessEntry[];
}

export interface TokenServerOptions {
  /** user name -> password, checked with HTTP Basic auth. */
  users: Record<string, string>;
  /** The registry's `auth.token.service`: required on every request, and the tokens' `aud`. */
  service: string;
  /** The registry's `auth.token.issuer`: the tokens' `iss`. */
  issuer: string;
  /** Token lifetime in seconds (`exp` - `iat`, and `expires_in`); default 300. */
  expiresIn?: number;
  /**
   * Which of the requested actions a subject gets (null: anonymous). Default: everything requested for a
   * known user, `pull` only for anonymous callers when anonymousPull is set.
   */
  grant?: (subject: string | null, scope: RequestedScope) => string[];
  /** Anonymous requests get tokens (pull only, by default) instead of a 401. */
  anonymousPull?: boolean;
}

class BadScope extends Error {}

/**
 * The grammar of docs/spec/auth/scope.md: `resourcetype[(class)]:resourcename:action[,action]*`. The name
 * may hold a `host:port` prefix, so the type ends at the first colon and the actions start after the last.
 * A malformed scope is refused with a 400, as cesanta/docker_auth does; distribution's own example
 * server ignores it instead, so a client that works here works with both.
 */
function parseScope(raw: string): RequestedScope {
  const first = raw.indexOf(':');
  const last = raw.lastIndexOf(':');
  if (first <= 0 || last === first) throw new BadScope(`invalid scope ${JSON.stringify(raw)}`);
  const type = raw.slice(0, first);
  const name = raw.slice(first + 1, last);
  const actions = raw.slice(last + 1).split(',');
  if (
    !/^[a-z0-9]+(\([a-z0-9]+\))?$/.test(type) ||
    name === '' ||
    /\s/.test(name) ||
    !actions.every((a) => /^([a-z]+|\*)$/.test(a))
  ) {
    throw new BadScope(`invalid scope ${JSON.stringify(raw)}`);
  }
  return { raw, type: type.replace(/\(.*\)$/, ''), name, actions };
}

function parseBasic(header: string | undefined): { user: string; password: string } | null {
  const m = /^Basic\s+(\S+)$/i.exec(header ?? '');
  if (!m) return null;
  const decoded = Buffer.from(m[1], 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  if (colon < 0) return null;
  return { user: decoded.slice(0, colon), password: decoded.slice(colon + 1) };
}

function sameSecret(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

interface SigningKey {
  key: CryptoKey;
  /** The certificate's DER, base64 (not base64url), for the `x5c` header. */
  x5c: string;
}

/**
 * A Docker token server (docs/spec/auth/token.md) on a loopback port: `GET /token?service=&scope=` with
 * HTTP Basic credentials answers a JWT that a distribution registry configured with `auth.token`
 * accepts. The signing key and its self-signed certificate (the registry's `rootcertbundle`) are made
 * with the openssl CLI; the certificate travels in the token's `x5c` header, which is how distribution
 * finds the key and chains it to the bundle.
 */
export class TokenServer {
  /** Every request to the token endpoint, in order, refused ones included. */
  readonly requests: TokenRequestRecord[] = [];
  readonly realm: string;
  readonly certPath: string;
  readonly service: string;
  readonly issuer: string;
  /** Lifetime in seconds of the tokens issued from now on. */
  expiresIn: number;
  private readonly keyPath: string;
  private signing!: SigningKey;

  private constructor(
    private readonly server: Server,
    private readonly workDir: string,
    private readonly opts: TokenServerOptions,
  ) {
    const { port } = server.address() as AddressInfo;
    this.realm = `http://127.0.0.1:${port}/token`;
    this.certPath = join(workDir, 'token-ca.pem');
    this.keyPath = join(workDir, 'token-key.pem');
    this.service = opts.service;
    this.issuer = opts.issuer;
    this.expiresIn = opts.expiresIn ?? 300;
  }

  static async start(opts: TokenServerOptions): Promise<TokenServer> {
    const workDir = await mkdtemp(join(tmpdir(), 'registry-gateway-tokens-'));
    let instance: TokenServer | undefined;
    const server = createServer((req, res) => {
      if (!instance) {
        res.writeHead(503).end();
        return;
      }
      instance.handle(req, res).catch((err: unknown) => {
        if (!res.headersSent) res.writeHead(500, { 'content-type': 'text/plain' });
        res.end(String(err));
      });
    });
    try {
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(0, '127.0.0.1', () => resolve());
      });
      instance = new TokenServer(server, workDir, opts);
      await instance.rotateKey();
      return instance;
    } catch (err) {
      server.close();
      await rm(workDir, { recursive: true, force: true });
      throw err;
    }
  }

  /**
   * A new key and certificate, written over certPath: tokens issued from now on are signed with it. A
   * registry reads its rootcertbundle only when it starts, so it trusts the new key after a restart and
   * then rejects tokens signed with the old one.
   */
  async rotateKey(): Promise<void> {
    try {
      await run('openssl', [
        'req',
        '-x509',
        '-newkey',
        'ec',
        '-pkeyopt',
        'ec_paramgen_curve:prime256v1',
        '-nodes',
        '-keyout',
        this.keyPath,
        '-out',
        this.certPath,
        '-days',
        '2',
        '-subj',
        `/CN=${this.issuer}`,
      ]);
    } catch (err) {
      throw new Error(
        `cannot create the token signing key with openssl (Debian package openssl): ${(err as Error).message}`,
        { cause: err },
      );
    }
    const [keyPem, certPem] = await Promise.all([
      readFile(this.keyPath, 'utf8'),
      readFile(this.certPath, 'utf8'),
    ]);
    this.signing = {
      key: await importPKCS8(keyPem, ALG),
      x5c: new X509Certificate(certPem).raw.toString('base64'),
    };
  }

  /** Requests that carried this user name (authenticated or not). */
  requestsBy(user: string | null): TokenRequestRecord[] {
    return this.requests.filter((r) => r.user === user);
  }

  /**
   * A token for these scopes, from the HTTP endpoint like any client gets one. Throws unless the
   * server issues it.
   */
  async fetchToken(user: string, password: string, scopes: string[]): Promise<string> {
    const url = new URL(this.realm);
    url.searchParams.set('service', this.service);
    for (const scope of scopes) url.searchParams.append('scope', scope);
    const res = await fetch(url, {
      headers: { authorization: `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}` },
    });
    if (res.status !== 200) throw new Error(`token server answered ${res.status}: ${await res.text()}`);
    return ((await res.json()) as { token: string }).token;
  }

  async stop(): Promise<void> {
    await new Promise<void>((resolve) => {
      this.server.close(() => resolve());
      this.server.closeAllConnections();
    });
    await rm(this.workDir, { recursive: true, force: true });
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', this.realm);
    if (url.pathname !== '/token' || (req.method !== 'GET' && req.method !== 'HEAD')) {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found');
      return;
    }
    const credentials = parseBasic(req.headers.authorization);
    const record: TokenRequestRecord = {
      at: new Date(),
      user: credentials?.user ?? null,
      authenticated: false,
      service: url.searchParams.get('service'),
      scopes: url.searchParams.getAll('scope'),
      status: 0,
      granted: [],
    };
    this.requests.push(record);
    const answer = (status: number, body: unknown, headers: Record<string, string> = {}) => {
      record.status = status;
      res.writeHead(status, { 'content-type': 'application/json', ...headers }).end(JSON.stringify(body));
    };

    if (credentials) {
      record.authenticated =
        Object.hasOwn(this.opts.users, credentials.user) &&
        sameSecret(credentials.password, this.opts.users[credentials.user]);
    }
    // Wrong credentials are a 401 even where anonymous access would be allowed: the client asked to
    // be someone and must learn that it is not.
    if (credentials ? !record.authenticated : !this.opts.anonymousPull) {
      answer(
        401,
        { error: 'invalid_client', error_description: 'authentication required' },
        { 'www-authenticate': `Basic realm="${this.issuer}"` },
      );
      return;
    }
    if (record.service !== this.service) {
      answer(400, {
        error: 'invalid_request',
        error_description: `service must be ${JSON.stringify(this.service)}`,
      });
      return;
    }
    let requested: RequestedScope[];
    try {
      requested = record.scopes.map(parseScope);
    } catch (err) {
      if (!(err instanceof BadScope)) throw err;
      answer(400, { error: 'invalid_scope', error_description: err.message });
      return;
    }

    const subject = record.authenticated ? record.user : null;
    const grant =
      this.opts.grant ??
      ((who: string | null, scope: RequestedScope) =>
        who !== null ? scope.actions : scope.actions.filter((a) => a === 'pull'));
    const access: AccessEntry[] = requested.map((scope) => ({
      type: scope.type,
      name: scope.name,
      actions: grant(subject, scope).filter((a) => scope.actions.includes(a)),
    }));

    const expiresIn = this.expiresIn;
    const now = Math.floor(Date.now() / 1000);
    const token = await new SignJWT({ access })
      .setProtectedHeader({ alg: ALG, typ: 'JWT', x5c: [this.signing.x5c] })
      .setIssuer(this.issuer)
      .setSubject(subject ?? '')
      .setAudience(this.service)
      .setIssuedAt(now)
      .setNotBefore(now)
      .setExpirationTime(now + expiresIn)
      .setJti(randomUUID())
      .sign(this.signing.key);
    record.granted = access;
    answer(200, {
      token,
      access_token: token,
      expires_in: expiresIn,
      issued_at: new Date(now * 1000).toISOString(),
    });
  }
}
