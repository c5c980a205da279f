import DataLoader from 'dataloader';

/*
 * DataLoaders live for one GraphQL request: they batch the lookups of every field resolver of a list
 * into one query, and never serve one caller's rows to another. They are keyed by the request object
 * (the same key the auth guard uses), so nothing has to be put into the GraphQL context. They batch but
 * do not cache: a subscription's request lives as long as the subscription, and each state it sends
 * must be read fresh.
 */
const perRequest = new WeakMap<object, Map<string, DataLoader<unknown, unknown>>>();

export function requestLoader<K, V, C = K>(
  req: object,
  name: string,
  batch: DataLoader.BatchLoadFn<K, V>,
  options?: DataLoader.Options<K, V, C>,
): DataLoader<K, V, C> {
  let loaders = perRequest.get(req);
  if (!loaders) perRequest.set(req, (loaders = new Map()));
  let loader = loaders.get(name) as DataLoader<K, V, C> | undefined;
  if (!loader) {
    loader = new DataLoader<K, V, C>(batch, { cache: false, ...options });
    loaders.set(name, loader as unknown as DataLoader<unknown, unknown>);
  }
  return loader;
}
