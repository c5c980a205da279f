/** Parses `WWW-Authenticate: Bearer realm="...",service="...",scope="..."` (RFC 6750 / distribution token auth). */
export interface Challenge {
  scheme: string;
  params: Record<string, string>;
}

export function parseChallenge(header: string | string[] | undefined): Challenge | null {
  const value = Array.isArray(header) ? header[0] : header;
  if (!value) return null;
  const m = /^\s*([A-Za-z][\w-]*)\s*(.*)$/s.exec(value);
  if (!m) return null;
  const params: Record<string, string> = {};
  const re = /([A-Za-z][\w-]*)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]+))\s*,?/g;
  let p: RegExpExecArray | null;
  while ((p = re.exec(m[2])))
    params[p[1].toLowerCase()] = p[2] !== undefined ? p[2].replace(/\\(.)/g, '$1') : p[3];
  return { scheme: m[1].toLowerCase(), params };
}

/** Reads the `rel="next"` target of a Link header: `</v2/_catalog?last=x&n=100>; rel="next"`. */
export function parseNextLink(header: string | string[] | undefined): URL | null {
  const value = Array.isArray(header) ? header.join(',') : header;
  if (!value) return null;
  for (const part of value.split(/,(?=\s*<)/)) {
    const m = /<([^>]*)>\s*;(.*)$/.exec(part.trim());
    if (m && /rel\s*=\s*"?next"?/i.test(m[2])) return new URL(m[1], 'http://link.invalid');
  }
  return null;
}
