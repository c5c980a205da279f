import { describe, expect, it } from 'vitest';
import { assertReference, assertRepositoryName, isRepositoryName } from './reference.js';

describe('repository names (distribution grammar)', () => {
  it.each(['alpine', 'library/alpine', 'a/b/c', 'my-app', 'my__app', 'my.app', 'a--b', 'team-a/api_v2'])(
    'accepts %s',
    (n) => {
      expect(isRepositoryName(n)).toBe(true);
    },
  );

  it.each([
    '',
    'Alpine',
    '../etc',
    'a//b',
    '/a',
    'a/',
    'a/../b',
    '-a',
    'a_',
    'a___b',
    'a%2fb',
    'a b',
    'a/./b',
    'x'.repeat(256),
  ])('rejects %s', (n) => {
    expect(isRepositoryName(n)).toBe(false);
  });

  it('throws NAME_INVALID with the name in details', () => {
    expect(() => assertRepositoryName('UP/per')).toThrow(
      expect.objectContaining({ code: 'NAME_INVALID', status: 400 }),
    );
  });
});

describe('references', () => {
  it('tells tags from digests', () => {
    expect(assertReference('v1.2.3')).toEqual({ kind: 'tag', value: 'v1.2.3' });
    const d = `sha256:${'a'.repeat(64)}`;
    expect(assertReference(d)).toEqual({ kind: 'digest', value: d });
  });

  it.each([
    ['sha256:abc', 'DIGEST_INVALID'],
    [`sha256:${'A'.repeat(64)}`, 'DIGEST_INVALID'],
    [`md5:${'a'.repeat(32)}`, 'DIGEST_INVALID'],
    ['.hidden', 'TAG_INVALID'],
    ['x'.repeat(129), 'TAG_INVALID'],
    ['a/b', 'TAG_INVALID'],
  ])('rejects %s with %s', (ref, code) => {
    expect(() => assertReference(ref)).toThrow(expect.objectContaining({ code }));
  });
});
