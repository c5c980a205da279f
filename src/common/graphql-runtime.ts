import { createRequire } from 'node:module';

/**
 * The copy of graphql that Nest and Apollo load. graphql 16 has no `exports` map, so Node's import and
 * require both load its CommonJS build; a bundler-style resolver (vitest's) picks the ESM build for our
 * own sources instead, and graphql refuses errors and types from another copy (`instanceof` checks in
 * Apollo and graphql-ws). Runtime values that cross into them come from here; types may be imported
 * from 'graphql' as usual.
 */
export const graphqlRuntime = createRequire(import.meta.url)('graphql') as typeof import('graphql');
