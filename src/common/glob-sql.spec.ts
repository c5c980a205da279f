import picomatch from 'picomatch';
import { describe, expect, it } from 'vitest';
import { globToRegex, repositoryGlobProblem, repositoryMatch } from './glob-sql.js';

const NAMES = [
  'team-a',
  'team-a/api',
  'team-a/web',
  'team-a/api/v2',
  'team-a/x/y/z/api',
  'team-ab/api',
  'team-b/api',
  'team-b/web.app',
  'team-b/webxapp',
  'library/alpine',
  'alpine',
  'a/b',
  'a/b/c',
  'x/a/b',
  '.hidden/api',
  'team-1/api',
  'team-9/db',
];

const GLOBS = [
  'team-a/**',
  'team-a/*',
  '**',
  '*',
  '**/api',
  'team-*/api',
  'team-?/api',
  'team-[ab]/*',
  'team-[0-9]/*',
  'team-{a,b}/api',
  'team-{a,b}/{api,web}',
  'team-b/web.app',
  'team-a/**/api',
  'a/**/b',
  'a/**/**/c',
  '*/b',
  'team-a**',
  '*/api/**',
  'team-{a,b/web}*',
];

describe('repository globs as SQL regular expressions', () => {
  it.each(GLOBS)('%s matches exactly what picomatch matches', (glob) => {
    const re = new RegExp(globToRegex(glob));
    const pm = picomatch(glob, { dot: true, nonegate: true });
    for (const name of NAMES) expect(re.test(name), `${glob} vs ${name}`).toBe(pm(name));
  });

  it('compares plain names with equality, and bounds globs by their literal prefix', () => {
    expect(repositoryMatch('team-a/api')).toEqual({ exact: 'team-a/api' });
    expect(repositoryMatch('team-a/*')).toEqual({
      regex: '^team-a/[^/]*$',
      range: { from: 'team-a', to: 'team-b' },
    });
    expect(repositoryMatch('**/api')).toEqual({ regex: '^(?:.*/)?api$' });
  });

  it.each(GLOBS)('%s: every match lies in its prefix range', (glob) => {
    const { range, regex } = repositoryMatch(glob);
    if (!range) return;
    for (const name of NAMES)
      if (new RegExp(regex!).test(name)) expect(name >= range.from && name < range.to, name).toBe(true);
  });

  it.each([
    '/team-a',
    'team-a/',
    'a//b',
    'team-{a',
    'team-[!a]/x',
    'x{1..3}',
    'UPPER/*',
    'a]b',
    "a'b",
    'a\\b',
    'team-[a/**',
    'team-{a/**',
    'team-a//x',
    'team-a/(x|y)',
  ])('refuses %s, as a filter and as a binding', (glob) => {
    expect(() => globToRegex(glob)).toThrow(expect.objectContaining({ code: 'VALIDATION_FAILED' }));
    expect(() => repositoryMatch(glob)).toThrow(expect.objectContaining({ code: 'VALIDATION_FAILED' }));
    expect(repositoryGlobProblem(glob)).toEqual(expect.any(String));
  });
});
