import { ValidationError } from './domain-error.js';

/*
 * Repository globs (picomatch syntax, as in role bindings: `team-a/**`, `*\/api`, `team-{a,b}/*`) turned
 * into anchored regular expressions that Postgres (`~`) and JavaScript read the same way, so a filter
 * runs in SQL instead of reading every row into the process. Only the subset that repository names can
 * use is translated; anything else is refused rather than guessed (glob-sql.spec.ts checks the
 * translation against picomatch itself).
 *
 * This is also the one check of every repository glob the gateway takes (role bindings, OIDC_GROUP_ROLES,
 * webhook subscriptions, list filters, the catalog's `q`): what it accepts, picomatch and this translation
 * match alike, so a string is accepted or refused everywhere, with the same message. A plain name is its
 * own glob and passes the same check.
 */

const GLOB_CHARS = /[*?[\]{}]/;
const ALLOWED = /^[a-z0-9._/*?[\]{},-]{1,255}$/;
/** Character classes: letters, digits, `._-` and ranges such as `a-z`. */
const CLASS_BODY = /^[a-z0-9._-]+$/;

export interface RepositoryMatch {
  /** No glob characters: compare with `=` (and use the indexes that equality can use). */
  exact?: string;
  /** Anchored regular expression for `~`. */
  regex?: string;
  /**
   * Every match lies in [from, to) in byte order (COLLATE "C"), when the glob starts with literal text:
   * an index range read narrows before the regex runs.
   */
  range?: { from: string; to: string };
}

/** Whether the value has glob characters at all; a plain repository name is its own glob. */
export function isGlob(value: string): boolean {
  return GLOB_CHARS.test(value);
}

/**
 * Why `glob` is not a repository name or glob the gateway takes, or null: the one check of every
 * repository glob (role bindings, webhook subscriptions, filters).
 */
export function repositoryGlobProblem(glob: string): string | null {
  try {
    translate(glob);
    return null;
  } catch (err) {
    if (err instanceof GlobProblem) return err.message;
    throw err;
  }
}

/** VALIDATION_FAILED (`<field>: <problem>`, details.field) unless `glob` is a repository name or glob. */
export function checkRepositoryGlob(glob: string, field = 'repository'): void {
  globToRegex(glob, field);
}

/**
 * How to filter a repository column by `glob` (or a plain name). Throws VALIDATION_FAILED on what is
 * neither a repository name nor a glob it can translate: such a filter would match nothing.
 */
export function repositoryMatch(glob: string, field = 'repository'): RepositoryMatch {
  const regex = globToRegex(glob, field);
  if (!isGlob(glob)) return { exact: glob };
  // `team-a/**` also matches `team-a`: the literal prefix stops before a trailing "/".
  const prefix = glob.slice(0, glob.search(GLOB_CHARS)).replace(/\/$/, '');
  return prefix ? { regex, range: prefixRange(prefix) } : { regex };
}

/** The strings that start with `prefix`, as a byte-order range (repository names are ASCII). */
export function prefixRange(prefix: string): { from: string; to: string } {
  const last = prefix.charCodeAt(prefix.length - 1);
  return { from: prefix, to: prefix.slice(0, -1) + String.fromCharCode(last + 1) };
}

/** `^…$` for the glob; throws VALIDATION_FAILED when it uses syntax outside the supported subset. */
export function globToRegex(glob: string, field = 'repository'): string {
  try {
    return translate(glob);
  } catch (err) {
    if (err instanceof GlobProblem) throw new ValidationError(`${field}: ${err.message}`, { field });
    throw err;
  }
}

function translate(glob: string): string {
  if (!ALLOWED.test(glob))
    throw new GlobProblem(
      'a repository name or glob has 1 to 255 characters: lower-case letters, digits, "._-/" and the glob characters "*?[]{},"',
    );
  if (glob.startsWith('/') || glob.endsWith('/'))
    throw new GlobProblem('a repository name or glob neither starts nor ends with "/"');
  return `^${segments(glob)}$`;
}

/**
 * Splits on `/` outside braces and translates segment by segment, because `**` means "any number of
 * segments" only as a whole segment, and then also matches none: `a/**` matches `a`, `a/**\/b` matches `a/b`.
 */
function segments(glob: string): string {
  // `a/**/**/b` is `a/**/b`.
  const parts = splitTopLevel(glob, '/').filter((p, i, all) => !(p === '**' && all[i - 1] === '**'));
  let out = '';
  parts.forEach((part, i) => {
    const first = i === 0;
    const last = i === parts.length - 1;
    if (part === '**') {
      if (parts.length === 1) out += '.*';
      else if (first) out += '(?:.*/)?';
      else if (last) out += '(?:/.*)?';
      else out += '(?:/.*)?/';
      return;
    }
    const previousWasGlobstar = !first && parts[i - 1] === '**';
    if (!first && !previousWasGlobstar) out += '/';
    if (part === '') throw new GlobProblem('a repository name or glob has no empty path segments ("//")');
    out += segment(part);
  });
  return out;
}

/** One path segment: literals, `*` (any run of characters but `/`), `?`, `[class]` and `{a,b}`. */
function segment(part: string): string {
  let out = '';
  for (let i = 0; i < part.length; i++) {
    const c = part[i];
    if (c === '*') {
      // `**` inside a segment (`a**`) is a plain star in picomatch.
      while (part[i + 1] === '*') i++;
      out += '[^/]*';
    } else if (c === '?') out += '[^/]';
    else if (c === '[') {
      const end = part.indexOf(']', i + 1);
      if (end === -1) throw new GlobProblem('a "[" has no matching "]"');
      const body = part.slice(i + 1, end);
      if (!CLASS_BODY.test(body) || /^-|-$/.test(body))
        throw new GlobProblem('a character class holds letters, digits, "._" and ranges such as [a-z]');
      out += `[${body.replace(/\./g, '\\.')}]`;
      i = end;
    } else if (c === '{') {
      const end = closingBrace(part, i);
      if (end === -1) throw new GlobProblem('a "{" has no matching "}"');
      const body = part.slice(i + 1, end);
      const options = splitTopLevel(body, ',');
      if (options.length < 2 || body.includes('..'))
        throw new GlobProblem(
          'braces list two or more alternatives, e.g. {api,web}; ranges are not supported',
        );
      out += `(?:${options.map((o) => (o === '' ? '' : segment(o))).join('|')})`;
      i = end;
    } else if (c === ']' || c === '}' || c === ',') throw new GlobProblem(`unexpected "${c}" in the glob`);
    else out += c === '.' ? '\\.' : c;
  }
  return out;
}

function closingBrace(s: string, open: number): number {
  let depth = 0;
  for (let i = open; i < s.length; i++) {
    if (s[i] === '{') depth++;
    else if (s[i] === '}' && --depth === 0) return i;
  }
  return -1;
}

function splitTopLevel(s: string, sep: string): string[] {
  const out: string[] = [];
  let depth = 0;
  let start = 0;
  for (let i = 0; i < s.length; i++) {
    if (s[i] === '{') depth++;
    else if (s[i] === '}') depth--;
    else if (s[i] === sep && depth === 0) {
      out.push(s.slice(start, i));
      start = i + 1;
    }
  }
  out.push(s.slice(start));
  return out;
}

/** What translate() found wrong, before it is a VALIDATION_FAILED naming the field. */
class GlobProblem extends Error {}
