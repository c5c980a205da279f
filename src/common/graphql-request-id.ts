import type { ApolloServerPlugin } from '@apollo/server';

/**
 * Every GraphQL error answered over HTTP carries the request's id in `extensions.requestId`, as a REST
 * error body does: also the errors of a document that never ran (parse, validation, limits), which no
 * resolver's error filter sees.
 */
export function graphqlRequestIdPlugin(): ApolloServerPlugin<{ req?: { id?: unknown } }> {
  return {
    async requestDidStart({ contextValue }) {
      return {
        async willSendResponse({ response }) {
          const id = contextValue.req?.id;
          if (id === undefined || response.body.kind !== 'single') return;
          const { singleResult } = response.body;
          if (singleResult.errors)
            singleResult.errors = singleResult.errors.map((e) => ({
              ...e,
              extensions: { ...e.extensions, requestId: String(id) },
            }));
        },
      };
    },
  };
}
