import { describe, expect, it } from 'vitest';
import { AppConfig } from '../config/app-config.js';
import { SecretBox } from './secret-box.js';

const box = (byte: number) => new SecretBox({ secretsKey: Buffer.alloc(32, byte) } as AppConfig);

describe('SecretBox', () => {
  it('round-trips and never stores the plain text', () => {
    const sealed = box(1).seal('hunter2');
    expect(sealed).not.toContain('hunter2');
    expect(box(1).open(sealed)).toBe('hunter2');
    expect(box(1).seal('hunter2')).not.toBe(sealed);
  });

  it('rejects a wrong key or a tampered ciphertext', () => {
    const sealed = box(1).seal('hunter2');
    expect(() => box(2).open(sealed)).toThrow();
    const parts = sealed.split('.');
    parts[3] = Buffer.from('x').toString('base64url');
    expect(() => box(1).open(parts.join('.'))).toThrow();
  });
});
