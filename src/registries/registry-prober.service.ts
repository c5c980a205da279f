import { Injectable, Logger } from '@nestjs/common';
import { DomainError } from '../common/domain-error.js';
import { RegistryClient, readBytes } from './client/registry-client.js';
import { UpstreamError, UpstreamErrorBody } from './client/upstream-error.js';
import { RegistryProbe } from './registry.entity.js';

// A digest and a tag that exist nowhere: deleting them is harmless, and how a registry refuses tells
// whether deletes are enabled, the registry is read-only, or it is a pull-through cache.
const ABSENT_DIGEST = `sha256:${'0'.repeat(64)}`;
const ABSENT_TAG = 'registry-gateway-probe-absent-tag';
const PROBE_REPOSITORY = 'registry-gateway/probe';

/**
 * Learns what a registry is before anyone relies on it: reachable, API version, whether the
 * gateway's credentials work, whether deletes can work (and if not, why), and its major version.
 */
@Injectable()
export class RegistryProber {
  private readonly logger = new Logger(RegistryProber.name);

  async probe(client: RegistryClient, authType: string): Promise<RegistryProbe> {
    const result: RegistryProbe = {
      checkedAt: new Date().toISOString(),
      reachable: false,
      latencyMs: null,
      apiVersion: null,
      // Told only by an answer: a registry that cannot be reached says nothing of its credentials.
      auth: authType === 'none' ? 'not-required' : 'unknown',
      deletes: 'unknown',
      distributionVersion: null,
      error: null,
    };
    try {
      const ping = await client.ping();
      result.reachable = true;
      result.latencyMs = Math.round(ping.latencyMs);
      result.apiVersion = ping.apiVersion;
      result.auth = authType === 'none' ? 'not-required' : 'ok';
    } catch (err) {
      if (err instanceof UpstreamError && err.upstreamStatus !== null) result.reachable = true;
      if (
        err instanceof UpstreamError &&
        (err.code === 'UNAUTHORIZED_UPSTREAM' || err.code === 'FORBIDDEN_UPSTREAM')
      )
        result.auth = 'failed';
      result.error = errorOf(err);
      return result;
    }
    try {
      const repository = await this.someRepository(client);
      result.deletes = await this.deleteMode(client, repository);
      result.distributionVersion = await this.majorVersion(client, repository, result.deletes);
    } catch (err) {
      this.logger.warn(`probe of ${client.name} could not finish: ${(err as Error).message}`);
      result.error = errorOf(err);
    }
    return result;
  }

  private async someRepository(client: RegistryClient): Promise<string> {
    try {
      return (await client.catalogPage(1)).repositories[0] ?? PROBE_REPOSITORY;
    } catch {
      return PROBE_REPOSITORY;
    }
  }

  private async deleteMode(client: RegistryClient, repository: string): Promise<RegistryProbe['deletes']> {
    const res = await client.send({
      method: 'DELETE',
      path: `${repository}/manifests/${ABSENT_DIGEST}`,
      what: 'a probe delete of an absent manifest',
    });
    const body = await errorBody(res);
    if (res.statusCode === 202 || res.statusCode === 404) return 'enabled';
    if (res.statusCode !== 405) return 'unknown';
    // Read-only mode removes the DELETE route: a bare 405 with an Allow header and no error body.
    if (body?.errors?.[0]?.code !== 'UNSUPPORTED') return 'read-only';
    // UNSUPPORTED comes from storage.delete disabled and from proxy caches; only a proxy refuses uploads too.
    const upload = await client.send({
      method: 'POST',
      path: `${repository}/blobs/uploads/`,
      what: 'a probe upload',
    });
    const uploadBody = await errorBody(upload);
    if (upload.statusCode === 202) {
      const location = upload.headers.location;
      const loc = Array.isArray(location) ? location[0] : location;
      if (loc) await this.cancelUpload(client, loc);
      return 'disabled';
    }
    return uploadBody?.errors?.[0]?.code === 'UNSUPPORTED' || upload.statusCode === 405
      ? 'pull-through'
      : 'disabled';
  }

  private async cancelUpload(client: RegistryClient, location: string): Promise<void> {
    const url = new URL(location, 'http://registry.invalid');
    const path = url.pathname.replace(/^.*?\/v2\//, '');
    const res = await client.send({
      method: 'DELETE',
      path: `${path}${url.search}`.replace(/^\/+/, ''),
      what: 'the probe upload',
    });
    await res.body.dump();
  }

  /** 2.x parses the reference as a digest and answers a tag with 400; 3.x looks the tag up (404). */
  private async majorVersion(
    client: RegistryClient,
    repository: string,
    deletes: RegistryProbe['deletes'],
  ): Promise<string | null> {
    if (deletes !== 'enabled') return null;
    const res = await client.send({
      method: 'DELETE',
      path: `${repository}/manifests/${ABSENT_TAG}`,
      what: 'a probe delete of an absent tag',
    });
    await res.body.dump();
    if (res.statusCode === 400) return '2.x';
    if (res.statusCode === 404 || res.statusCode === 202) return '3.x';
    return null;
  }
}

async function errorBody(
  res: Awaited<ReturnType<RegistryClient['send']>>,
): Promise<UpstreamErrorBody | undefined> {
  try {
    const raw = await readBytes('', res, 64 * 1024);
    return raw.length ? (JSON.parse(raw.toString('utf8')) as UpstreamErrorBody) : undefined;
  } catch {
    return undefined;
  }
}

function errorOf(err: unknown): { code: string; message: string } {
  if (err instanceof DomainError) return { code: err.code, message: err.message };
  return { code: 'INTERNAL', message: 'probe failed unexpectedly' };
}
