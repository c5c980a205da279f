import { describe, expect, it } from 'vitest';
import { liveFeed } from './live-feed.js';

const tick = (ms = 5) => new Promise((r) => setTimeout(r, ms));

describe('liveFeed', () => {
  function setup(states: number[]) {
    let current = 0;
    let reads = 0;
    let changed: () => void = () => undefined;
    let watching = false;
    const feed = liveFeed<number>({
      load: async () => {
        reads++;
        await tick(1);
        return states[current];
      },
      isFinal: (v) => v === 99,
      key: String,
      watch: async (cb) => {
        changed = cb;
        watching = true;
        return () => (watching = false);
      },
      pollMs: 60_000,
      minIntervalMs: 20,
    });
    return {
      feed,
      set: (i: number) => {
        current = i;
        changed();
      },
      reads: () => reads,
      watching: () => watching,
    };
  }

  it('sends the current state, each distinct change once, and ends after the final one', async () => {
    const t = setup([1, 1, 2, 3, 99]);
    expect(await t.feed.next()).toEqual({ value: 1, done: false });
    t.set(1);
    t.set(2);
    t.set(3);
    // A burst is one read, of the latest state.
    expect(await t.feed.next()).toEqual({ value: 3, done: false });
    expect(t.reads()).toBe(2);
    t.set(4);
    expect(await t.feed.next()).toEqual({ value: 99, done: false });
    expect(await t.feed.next()).toEqual({ value: undefined, done: true });
    expect(t.watching()).toBe(false);
  });

  it('stops watching at once when the consumer leaves, even while it waits', async () => {
    const t = setup([1, 2]);
    await t.feed.next();
    const waiting = t.feed.next();
    await tick();
    await t.feed.return!();
    expect(await waiting).toEqual({ value: undefined, done: true });
    expect(t.watching()).toBe(false);
  });

  it('ends with the error when a read fails', async () => {
    const feed = liveFeed<number>({
      load: async () => {
        throw new Error('gone');
      },
      isFinal: () => false,
      key: String,
      watch: async () => () => undefined,
      pollMs: 60_000,
      minIntervalMs: 0,
    });
    await expect(feed.next()).rejects.toThrow('gone');
  });
});
