import { readFileSync } from 'node:fs';

/** Whether a process runs: not gone and not a zombie (PID 1 on these machines may never reap orphans). */
export function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return !stat.slice(stat.lastIndexOf(')') + 2).startsWith('Z');
  } catch {
    return false;
  }
}

/** Waits up to `withinMs` for the process to be gone (or a zombie); false if it still runs then. */
export async function gone(pid: number, withinMs = 15_000): Promise<boolean> {
  const deadline = Date.now() + withinMs;
  while (alive(pid)) {
    if (Date.now() > deadline) return false;
    await new Promise((r) => setTimeout(r, 100));
  }
  return true;
}

/** The HTTP status of a request, or undefined when nothing answers. */
export async function httpStatus(url: string, init?: RequestInit): Promise<number | undefined> {
  try {
    const res = await fetch(url, init);
    await res.arrayBuffer();
    return res.status;
  } catch {
    return undefined;
  }
}
