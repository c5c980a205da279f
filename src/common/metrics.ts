import { Counter, Histogram, register } from 'prom-client';

// Metrics live in prom-client's default registry, which /metrics serves. Several Nest applications
// in one process (the e2e suites start API and workers together) must share, not re-register, them.
export function counter<L extends string>(name: string, help: string, labelNames: L[]): Counter<L> {
  return (
    (register.getSingleMetric(name) as Counter<L> | undefined) ?? new Counter({ name, help, labelNames })
  );
}

export function histogram<L extends string>(
  name: string,
  help: string,
  labelNames: L[],
  buckets?: number[],
): Histogram<L> {
  return (
    (register.getSingleMetric(name) as Histogram<L> | undefined) ??
    new Histogram({ name, help, labelNames, buckets })
  );
}
