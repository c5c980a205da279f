export interface LiveFeedOptions<T> {
  /** Reads the current state. */
  load(): Promise<T>;
  /** The stream ends after sending a final state. */
  isFinal(value: T): boolean;
  /** States with the same key are sent once. */
  key(value: T): string;
  /**
   * Starts calling `changed` whenever the state may have changed; resolves (with the way to stop) once
   * changes are being watched, so the first read cannot miss one.
   */
  watch(changed: () => void): Promise<() => void>;
  /** Reads again this often even without a change signal (a signal lost on a reconnect, say). */
  pollMs: number;
  /** At most one read per this many milliseconds; signals in between are folded into the next read. */
  minIntervalMs: number;
}

/**
 * The states of one row as an async iterator, for a GraphQL subscription: the current state at once,
 * then every distinct state after a change signal, ending with the first final one. Reads never overlap,
 * a burst of signals costs one read, and `return()` (the client unsubscribed or went away) stops watching
 * at once, even while waiting.
 */
export function liveFeed<T>(opts: LiveFeedOptions<T>): AsyncIterableIterator<T> {
  const queue: T[] = [];
  let waiting: { resolve: (r: IteratorResult<T>) => void; reject: (e: unknown) => void } | null = null;
  let failure: unknown = null;
  let done = false;
  let loading = false;
  let dirty = false;
  let lastKey: string | null = null;
  let lastRead = 0;
  let timer: NodeJS.Timeout | undefined;
  let poll: NodeJS.Timeout | undefined;
  let unwatch: (() => void) | undefined;

  const stop = () => {
    done = true;
    clearTimeout(timer);
    clearInterval(poll);
    unwatch?.();
    unwatch = undefined;
  };

  const deliver = () => {
    if (!waiting) return;
    const w = waiting;
    if (queue.length) {
      waiting = null;
      w.resolve({ value: queue.shift()!, done: false });
    } else if (failure) {
      waiting = null;
      w.reject(failure);
    } else if (done) {
      waiting = null;
      w.resolve({ value: undefined, done: true });
    }
  };

  const read = async () => {
    if (done) return;
    loading = true;
    dirty = false;
    try {
      const value = await opts.load();
      lastRead = Date.now();
      if (done) return;
      const key = opts.key(value);
      if (key !== lastKey) {
        lastKey = key;
        queue.push(value);
      }
      if (opts.isFinal(value)) stop();
    } catch (err) {
      failure = err;
      stop();
    } finally {
      loading = false;
      deliver();
      if (dirty && !done) schedule();
    }
  };

  const schedule = () => {
    dirty = true;
    if (loading || timer || done) return;
    const wait = Math.max(0, lastRead + opts.minIntervalMs - Date.now());
    timer = setTimeout(() => {
      timer = undefined;
      void read();
    }, wait);
  };

  const started = (async () => {
    try {
      const off = await opts.watch(schedule);
      if (done) off();
      else unwatch = off;
    } catch (err) {
      failure = err;
      stop();
      return;
    }
    poll = setInterval(schedule, opts.pollMs);
    poll.unref();
    await read();
  })();

  const iterator: AsyncIterableIterator<T> = {
    async next() {
      await started;
      if (queue.length) return { value: queue.shift()!, done: false };
      if (failure) throw failure;
      if (done) return { value: undefined, done: true };
      return new Promise<IteratorResult<T>>((resolve, reject) => {
        waiting = { resolve, reject };
      });
    },
    async return() {
      stop();
      queue.length = 0;
      deliver();
      return { value: undefined, done: true };
    },
    [Symbol.asyncIterator]() {
      return iterator;
    },
  };
  return iterator;
}
