export function median(values: number[]): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

export function formatMs(ms: number): string {
  return ms >= 10_000 ? `${(ms / 1000).toFixed(1)} s` : `${Math.round(ms)} ms`;
}

export function formatSeconds(seconds: number): string {
  return `${seconds.toFixed(seconds >= 100 ? 0 : 1)} s`;
}

export function formatBytes(bytes: number): string {
  const mib = bytes / (1024 * 1024);
  return mib >= 1 ? `${mib.toFixed(0)} MiB` : `${Math.round(bytes / 1024)} KiB`;
}

export function formatList(values: number[], format: (v: number) => string): string {
  return values.map(format).join(', ');
}
