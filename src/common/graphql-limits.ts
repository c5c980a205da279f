import type { ApolloServerPlugin } from '@apollo/server';
import type {
  DocumentNode,
  FieldNode,
  FragmentDefinitionNode,
  GraphQLError,
  GraphQLSchema,
  OperationDefinitionNode,
  SelectionSetNode,
} from 'graphql';
import { getComplexity, type ComplexityEstimator } from 'graphql-query-complexity';
import { graphqlRuntime } from './graphql-runtime.js';

/*
 * Depth and complexity limits of GraphQL operations, checked after validation and before execution, over
 * HTTP (an Apollo plugin) and WebSocket (graphql-ws onSubscribe) alike. Errors carry
 * `extensions.code` QUERY_TOO_DEEP or QUERY_TOO_COMPLEX with the limit and the measured value.
 *
 * Complexity counts what execution would touch: 1 per object field (leaves are free), and a paged field
 * (one with a `limit` argument) multiplies what is selected under it by that limit, so
 * `deletions(limit: 500) { items { items(limit: 500) { … } } }` costs 250,000 and is refused, while a page
 * of 500 audit events with their actor and related subjects costs about 2,000. Other lists of objects
 * count UNBOUNDED_LIST_SIZE entries each (introspection's `types { fields { … } }` included: GraphiQL's
 * own introspection query costs about 15,000, and each further level of nested lists multiplies by 10).
 */

export interface GraphqlLimits {
  maxDepth: number;
  maxComplexity: number;
}

export interface OperationCost {
  depth: number;
  complexity: number;
}

/** A `limit` argument left out counts as this many (the largest default page of the schema). */
const DEFAULT_PAGE = 100;
const UNBOUNDED_LIST_SIZE = 10;
/** getComplexity's own guard against documents that expand (through fragments) into huge trees. */
const MAX_QUERY_NODES = 20_000;

const estimator: ComplexityEstimator = ({ type, field, args, childComplexity }) => {
  const { getNamedType, isLeafType, isListType, isNonNullType } = graphqlRuntime;
  const declared = field.extensions?.complexity;
  if (typeof declared === 'number') return declared + childComplexity;
  if (isLeafType(getNamedType(field.type))) return 0;
  const limit = args.limit;
  if (field.args.some((a) => a.name === 'limit'))
    return 1 + (typeof limit === 'number' && limit > 0 ? limit : DEFAULT_PAGE) * childComplexity;
  const fieldType = isNonNullType(field.type) ? field.type.ofType : field.type;
  // The items of a page were counted by the paged field above them.
  if (isListType(fieldType) && !type.name.endsWith('Page')) return 1 + UNBOUNDED_LIST_SIZE * childComplexity;
  return 1 + childComplexity;
};

/**
 * The depth of the operation that would run: fields nested in fields, fragments expanded, introspection
 * fields counted as one level.
 */
export function operationDepth(document: DocumentNode, operationName?: string | null): number {
  const fragments = new Map<string, FragmentDefinitionNode>();
  let operation: OperationDefinitionNode | undefined;
  for (const def of document.definitions) {
    if (def.kind === 'FragmentDefinition') fragments.set(def.name.value, def);
    else if (def.kind === 'OperationDefinition' && (!operationName || def.name?.value === operationName))
      operation ??= def;
  }
  if (!operation) return 0;
  const depthOf = (set: SelectionSetNode | undefined, seen: Set<string>): number => {
    let max = 0;
    for (const s of set?.selections ?? []) {
      if (s.kind === 'Field') {
        const field = s as FieldNode;
        // Introspection (`__schema { types { fields { type { ofType … } } } }`) is as deep as the
        // clients' introspection queries make it; its lists are priced by the complexity limit.
        const below = field.name.value.startsWith('__') ? 0 : depthOf(field.selectionSet, seen);
        max = Math.max(max, 1 + below);
      } else if (s.kind === 'InlineFragment') max = Math.max(max, depthOf(s.selectionSet, seen));
      else {
        const name = s.name.value;
        const fragment = fragments.get(name);
        // Cycles are a validation error; never loop on them here.
        if (fragment && !seen.has(name))
          max = Math.max(max, depthOf(fragment.selectionSet, new Set([...seen, name])));
      }
    }
    return max;
  };
  return depthOf(operation.selectionSet, new Set());
}

export function operationCost(
  schema: GraphQLSchema,
  document: DocumentNode,
  operationName?: string | null,
  variables?: Record<string, unknown> | null,
): OperationCost {
  const depth = operationDepth(document, operationName);
  let complexity: number;
  try {
    complexity = getComplexity({
      schema,
      query: document,
      operationName: operationName ?? undefined,
      variables: variables ?? {},
      estimators: [estimator],
      maxQueryNodes: MAX_QUERY_NODES,
    });
  } catch (err) {
    // Bad variables are execution's to report; only the node guard is ours.
    if (/query nodes/i.test((err as Error).message)) complexity = Number.POSITIVE_INFINITY;
    else complexity = 0;
  }
  return { depth, complexity };
}

/** The error of an operation over a limit, or null. */
export function limitError(cost: OperationCost, limits: GraphqlLimits): GraphQLError | null {
  const { GraphQLError } = graphqlRuntime;
  const http = { status: 400 };
  if (cost.depth > limits.maxDepth)
    return new GraphQLError(
      `the query is ${cost.depth} levels deep; at most ${limits.maxDepth} are allowed (GRAPHQL_MAX_DEPTH)`,
      {
        extensions: {
          code: 'QUERY_TOO_DEEP',
          status: 400,
          details: { depth: cost.depth, maxDepth: limits.maxDepth },
          http,
        },
      },
    );
  if (cost.complexity > limits.maxComplexity) {
    const measured = Number.isFinite(cost.complexity) ? cost.complexity : null;
    return new GraphQLError(
      `the query's complexity is ${measured ?? 'beyond counting'}; at most ${limits.maxComplexity} is allowed (GRAPHQL_MAX_COMPLEXITY): ask for smaller pages or fewer nested lists`,
      {
        extensions: {
          code: 'QUERY_TOO_COMPLEX',
          status: 400,
          details: { complexity: measured, maxComplexity: limits.maxComplexity },
          http,
        },
      },
    );
  }
  return null;
}

/** Apollo: refuses an operation over a limit before any resolver runs. */
export function graphqlLimitsPlugin(limits: GraphqlLimits): ApolloServerPlugin {
  return {
    async requestDidStart() {
      return {
        async didResolveOperation({ schema, document, operationName, request }) {
          const error = limitError(operationCost(schema, document, operationName, request.variables), limits);
          if (error) throw error;
        },
      };
    },
  };
}
