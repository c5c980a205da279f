/**
 * Reads what `registry garbage-collect` prints (registry/storage/garbagecollect.go and registry/root.go
 * of CNCF Distribution). Both 2.8 and 3.x print, per repository: the repository name, then
 * `<repo>: marking manifest <digest> ` (trailing space) and `<repo>: marking blob <digest>`; then
 * `\n<n> blobs marked, <n> blobs and <n> manifests eligible for deletion` and one
 * `blob eligible for deletion: <digest>` per blob. They differ in what --delete-untagged prints:
 *
 * - 2.8 prints `manifest eligible for deletion: <digest>` while it walks the repository (no repository
 *   name on the line: it is the one whose name was printed last), for every untagged manifest,
 *   including the platform manifests of a tagged multi-arch index. It deletes those too, which breaks
 *   the image: the index stays, its children answer 404 and their layers are swept.
 * - 3.x marks what an index references (recursively) before it decides, and prints after the walk
 *   `manifest eligible for deletion: {<repo> <digest> [<every tag of the repo>]}` (Go's %s of a
 *   struct) only for manifests nothing marked; it also prints
 *   `<repo>: layer link eligible for deletion: <digest>` for each unreferenced layer link it removes.
 *
 * A dry run prints the same lines and deletes nothing. Failures go to stderr as
 * `failed to garbage collect: <error>` (no trailing newline) with exit code 1. The registry's own log
 * lines (logrus, text or JSON) are interleaved; at log level info a real run logs
 * `Deleting blob: <path>` and `deleting manifest: <path>` (2.8), which confirm what was removed.
 */

export type GcOutputVersion = '2.8' | '3' | 'unknown';

export interface RepositoryDigest {
  repository: string;
  digest: string;
}

export interface GcOutputSummary {
  /** Which output format was recognised; 'unknown' when nothing told 2.8 and 3.x apart (no --delete-untagged lines). */
  version: GcOutputVersion;
  /** Repositories in the order the collector walked them. */
  repositories: string[];
  /** `<repo>: marking manifest <digest>`: manifests kept (the tagged ones, with --delete-untagged). */
  markedManifests: RepositoryDigest[];
  blobsMarked: number | null;
  blobsEligible: number | null;
  manifestsEligible: number | null;
  /** `blob eligible for deletion` digests: deleted by a real run, only listed by a dry run. */
  blobsDeleted: string[];
  /** `manifest eligible for deletion`: deleted by a real run, only listed by a dry run. */
  manifestsDeleted: RepositoryDigest[];
  /**
   * Manifests listed for deletion that a kept manifest of the same repository references (the
   * platform manifests of a tagged multi-arch index). Only Distribution 2.8 lists these, and deleting
   * them breaks the index; a non-empty list from a 2.8 dry run is the reason to refuse the real run.
   */
  referencedManifestsDeleted: RepositoryDigest[];
  /** 3.x: `<repo>: layer link eligible for deletion: <digest>`. */
  layerLinksDeleted: RepositoryDigest[];
  /** What the registry's info-level log confirms it removed (empty at log level warn or above). */
  confirmed: { blobs: string[]; manifests: RepositoryDigest[] };
  /** `manifest tags path of repository <repo> does not exist` and the like: not fatal. */
  warnings: string[];
  /** Fatal messages: `failed to garbage collect: ...`, configuration errors, error-level log lines, panics. */
  errors: string[];
  /** The summary line was printed (the mark phase finished and the sweep started). */
  summarySeen: boolean;
  /**
   * Every digest the summary line announces was listed: as many `blob eligible` lines as its blob count,
   * as many `manifest eligible` lines as its manifest count. False when lines were lost (the collector
   * ignores failed writes: a full disk under its output keeps it deleting, unheard) or no summary came.
   */
  complete: boolean;
  /**
   * The run failed only because nothing was ever pushed: 2.8 exits 1 with
   * `failed to mark: filesystem: Path not found: /docker/registry/v2/repositories` on a fresh storage.
   */
  nothingStored: boolean;
}

const DIGEST = '[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]+';
// Distribution's repository name grammar (path components separated by '/').
const COMPONENT = '[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*';
const REPOSITORY = `${COMPONENT}(?:/${COMPONENT})*`;

const RE = {
  repository: new RegExp(`^${REPOSITORY}$`),
  markManifest: new RegExp(`^(${REPOSITORY}): marking manifest (${DIGEST}) ?$`),
  markBlob: new RegExp(`^(${REPOSITORY}): marking blob (${DIGEST})$`),
  manifestEligibleV3: new RegExp(
    `^manifest eligible for deletion: \\{(${REPOSITORY}) (${DIGEST}) \\[[^\\]]*\\]\\}$`,
  ),
  manifestEligible28: new RegExp(`^manifest eligible for deletion: (${DIGEST})$`),
  summary: /^(\d+) blobs marked, (\d+) blobs and (\d+) manifests eligible for deletion$/,
  // before 2.7 (no --delete-untagged)
  summaryOld: /^(\d+) blobs marked, (\d+) blobs eligible for deletion$/,
  blobEligible: new RegExp(`^blob eligible for deletion: (${DIGEST})$`),
  layerLink: new RegExp(`^(${REPOSITORY}): layer link eligible for deletion: (${DIGEST})$`),
  noTagsPath: new RegExp(`^manifest tags path of repository (${REPOSITORY}) does not exist$`),
  fatal:
    /^(failed to garbage collect: |configuration error: |failed to construct \S+ driver: |failed to construct registry: |unable to configure logging with config: |panic: |fatal error: )/,
  logrusText: /^time="[^"]*" level=(\w+) msg="((?:[^"\\]|\\.)*)"/,
  blobPath: /\/blobs\/([a-z0-9]+)\/[0-9a-f]{2}\/([0-9a-f]+)(?:\/data)?$/,
  manifestPath: new RegExp(
    `/repositories/(${REPOSITORY})/_manifests/revisions/([a-z0-9]+)/([0-9a-f]+)(?:/link)?$`,
  ),
};

/**
 * Incremental: feed chunks as they arrive with write(), then end() once for the summary. Lines are put
 * together per stream, so a chunk of stderr that arrives while a line of stdout is half written does not
 * cut into it. Fed the whole stream, it is not bound by the executor's cap on the output it keeps.
 */
export class GcOutputParser {
  private readonly pending = { stdout: '', stderr: '' };
  private currentRepository: string | null = null;
  private sawV3 = false;
  private saw28 = false;
  private readonly markedBlobs = new Set<string>();
  private readonly summary: GcOutputSummary = {
    version: 'unknown',
    repositories: [],
    markedManifests: [],
    blobsMarked: null,
    blobsEligible: null,
    manifestsEligible: null,
    blobsDeleted: [],
    manifestsDeleted: [],
    referencedManifestsDeleted: [],
    layerLinksDeleted: [],
    confirmed: { blobs: [], manifests: [] },
    warnings: [],
    errors: [],
    summarySeen: false,
    complete: false,
    nothingStored: false,
  };

  write(chunk: string, stream: 'stdout' | 'stderr' = 'stdout'): void {
    const text = this.pending[stream] + chunk;
    let start = 0;
    let newline: number;
    while ((newline = text.indexOf('\n', start)) !== -1) {
      this.line(text.slice(start, newline));
      start = newline + 1;
    }
    this.pending[stream] = text.slice(start);
  }

  end(): GcOutputSummary {
    for (const stream of ['stdout', 'stderr'] as const) {
      if (this.pending[stream]) this.line(this.pending[stream]);
      this.pending[stream] = '';
    }
    const s = this.summary;
    s.version = this.sawV3 ? '3' : this.saw28 ? '2.8' : 'unknown';
    // Nothing ever pushed (no repositories folder), or repositories but no blob yet (only uploads
    // started, or everything already swept and the folder removed).
    s.nothingStored =
      s.errors.length === 1 &&
      (/^failed to garbage collect: failed to mark: .*Path not found: \S*\/v2\/repositories\/?$/.test(
        s.errors[0],
      ) ||
        /^failed to garbage collect: error enumerating blobs: .*Path not found: \S*\/v2\/blobs\/?$/.test(
          s.errors[0],
        ));
    s.complete =
      s.summarySeen &&
      s.blobsDeleted.length === s.blobsEligible &&
      (s.manifestsEligible === null || s.manifestsDeleted.length === s.manifestsEligible);
    s.referencedManifestsDeleted = s.manifestsDeleted.filter((m) =>
      this.markedBlobs.has(`${m.repository}@${m.digest}`),
    );
    return s;
  }

  private line(raw: string): void {
    const line = raw.replace(/\r$/, '');
    if (!line) return;
    const s = this.summary;
    let m: RegExpExecArray | null;

    if ((m = RE.markManifest.exec(line))) {
      this.currentRepository = m[1];
      s.markedManifests.push({ repository: m[1], digest: m[2] });
    } else if ((m = RE.markBlob.exec(line))) {
      this.currentRepository = m[1];
      this.markedBlobs.add(`${m[1]}@${m[2]}`);
    } else if ((m = RE.blobEligible.exec(line))) {
      s.blobsDeleted.push(m[1]);
    } else if ((m = RE.manifestEligibleV3.exec(line))) {
      this.sawV3 = true;
      s.manifestsDeleted.push({ repository: m[1], digest: m[2] });
    } else if ((m = RE.manifestEligible28.exec(line))) {
      this.saw28 = true;
      s.manifestsDeleted.push({ repository: this.currentRepository ?? '', digest: m[1] });
    } else if ((m = RE.layerLink.exec(line))) {
      this.sawV3 = true;
      s.layerLinksDeleted.push({ repository: m[1], digest: m[2] });
    } else if ((m = RE.summary.exec(line))) {
      s.summarySeen = true;
      s.blobsMarked = Number(m[1]);
      s.blobsEligible = Number(m[2]);
      s.manifestsEligible = Number(m[3]);
    } else if ((m = RE.summaryOld.exec(line))) {
      s.summarySeen = true;
      s.blobsMarked = Number(m[1]);
      s.blobsEligible = Number(m[2]);
    } else if (RE.noTagsPath.test(line)) {
      s.warnings.push(line);
    } else if (RE.fatal.test(line)) {
      s.errors.push(line);
    } else if (line.startsWith('time="')) {
      this.logLine(line);
    } else if (line.startsWith('{')) {
      this.jsonLogLine(line);
    } else if (RE.repository.test(line) && !s.errors.length) {
      this.currentRepository = line;
      s.repositories.push(line);
    }
  }

  private logLine(line: string): void {
    const m = RE.logrusText.exec(line);
    if (!m) return;
    this.logMessage(m[1], m[2].replace(/\\(.)/g, '$1'));
  }

  private jsonLogLine(line: string): void {
    let entry: unknown;
    try {
      entry = JSON.parse(line);
    } catch {
      return;
    }
    if (!entry || typeof entry !== 'object') return;
    const { level, msg } = entry as { level?: unknown; msg?: unknown };
    if (typeof level === 'string' && typeof msg === 'string') this.logMessage(level, msg);
  }

  private logMessage(level: string, msg: string): void {
    const s = this.summary;
    if (level === 'error' || level === 'fatal' || level === 'panic') {
      s.errors.push(msg);
      return;
    }
    let m: RegExpExecArray | null;
    if (/^deleting blob: /i.test(msg) && (m = RE.blobPath.exec(msg.slice(msg.indexOf(':') + 2)))) {
      s.confirmed.blobs.push(`${m[1]}:${m[2]}`);
    } else if (
      /^deleting manifest: /i.test(msg) &&
      (m = RE.manifestPath.exec(msg.slice(msg.indexOf(':') + 2)))
    ) {
      s.confirmed.manifests.push({ repository: m[1], digest: `${m[2]}:${m[3]}` });
    }
  }
}

export function parseGcOutput(output: string): GcOutputSummary {
  const parser = new GcOutputParser();
  parser.write(output);
  return parser.end();
}
