import { describe, expect, it } from 'vitest';
import { parseChallenge, parseNextLink } from './www-authenticate.js';

describe('parseChallenge', () => {
  it('reads a bearer challenge with quoted values and commas inside scope', () => {
    const c = parseChallenge(
      'Bearer realm="https://auth.example.com/token",service="registry.example.com",scope="repository:a/b:pull,push"',
    );
    expect(c).toEqual({
      scheme: 'bearer',
      params: {
        realm: 'https://auth.example.com/token',
        service: 'registry.example.com',
        scope: 'repository:a/b:pull,push',
      },
    });
  });

  it('reads a basic challenge and rejects empty input', () => {
    expect(parseChallenge('Basic realm="basic-realm"')).toEqual({
      scheme: 'basic',
      params: { realm: 'basic-realm' },
    });
    expect(parseChallenge(undefined)).toBeNull();
  });
});

describe('parseNextLink', () => {
  it('finds the next page among several links', () => {
    const u = parseNextLink('</v2/_catalog?last=b%2Fc&n=2>; rel="next", </v2/_catalog?n=2>; rel="first"');
    expect(u?.searchParams.get('last')).toBe('b/c');
    expect(parseNextLink('</v2/_catalog?n=2>; rel="prev"')).toBeNull();
    expect(parseNextLink(undefined)).toBeNull();
  });
});
