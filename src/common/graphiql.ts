import type { ApolloServerPlugin } from '@apollo/server';

/*
 * GraphiQL at /graphql, from @graphql-yoga/render-graphiql's own bundle (no CDN, so it works offline),
 * opened on tabs of saved queries for auditors. Subscriptions run over graphql-ws on the same path; the
 * token in the Headers tab goes with every query and subscription.
 */

const HEADERS = JSON.stringify({ Authorization: 'Bearer <paste your token>' }, null, 2);
const DAY_MS = 86_400_000;

interface Tab {
  query: string;
  variables: Record<string, unknown>;
}

/** The saved queries; dates relative to today, so "last week" means last week whenever the page is opened. */
export function exampleTabs(today: Date): Tab[] {
  const daysAgo = (n: number) => new Date(today.getTime() - n * DAY_MS).toISOString();
  return [
    {
      query: `# Who deleted what in a registry last week: every image and tag that went, newest first.
# Put your token in the Headers tab below. Ctrl-Enter runs; Ctrl-Space completes; the Docs pane
# (top left) describes every type and says which permission each field needs.
query WhoDeletedWhat($registry: String!, $from: DateTime!) {
  auditEvents(
    filter: { registry: $registry, action: "deletion.item.succeeded", from: $from }
    limit: 100
  ) {
    items {
      occurredAt
      actor { type id name }
      sourceIp
      repository
      tags
      digest
      deletion { id reason createdAt }
    }
    nextCursor
  }
}`,
      variables: { registry: 'demo', from: daysAgo(7) },
    },
    {
      query: `# Space reclaimed per registry per week: bytes freed by garbage collection, and manifests
# deleted by deletion requests and by GC.
query BytesFreedPerWeek($from: DateTime!) {
  reclaimedSpace(bucket: week, from: $from) {
    registry
    period
    bytesFreed
    gcRuns
    manifestsDeleted
    manifestsDeletedByRequests
    manifestsDeletedByGc
  }
}`,
      variables: { from: daysAgo(12 * 7) },
    },
    {
      query: `# Failed deletions: the requests that did not fully succeed, with the items that failed and why.
query FailedDeletions {
  deletions(filter: { status: [failed, partially_failed] }, limit: 20) {
    items {
      id
      registry
      status
      createdAt
      reason
      actor { id name }
      counts { succeeded failed }
      items(status: failed, limit: 20) {
        items { repository reference digest upstreamStatus error { code message } }
      }
    }
    nextCursor
  }
}`,
      variables: {},
    },
    {
      query: `# Everything one person or service account did, oldest first, with the GC runs they started.
query ActorTrail($actor: String!, $from: DateTime!) {
  auditEvents(filter: { actor: $actor, from: $from }, sort: asc, limit: 200) {
    items {
      occurredAt
      action
      outcome
      registry
      repository
      digest
      details
      gcRun { id status bytesFreed }
    }
    nextCursor
  }
}`,
      variables: { actor: 'bootstrap-admin', from: daysAgo(30) },
    },
    {
      query: `# Follow a deletion request while workers run it (use the id from deleteImage or createDeletion).
# gcRunProgress(id:) does the same for a garbage collection run.
subscription FollowDeletion($id: ID!) {
  deletionProgress(id: $id) {
    status
    counts { pending running succeeded failed skipped cancelled }
    finishedAt
  }
}`,
      variables: { id: '00000000-0000-0000-0000-000000000000' },
    },
  ];
}

/**
 * The page for one day: the saved dates move on once a day. GraphiQL's bundle (about 30 MB of source that
 * V8 keeps once it is loaded) comes with the first page asked for, not with every process that imports
 * this module: the worker never serves it.
 */
export async function renderConsole(today = new Date()): Promise<string> {
  const { renderGraphiQL } = await import('@graphql-yoga/render-graphiql');
  const midnight = new Date(Date.UTC(today.getUTCFullYear(), today.getUTCMonth(), today.getUTCDate()));
  const tabs = exampleTabs(midnight);
  return renderGraphiQL({
    endpoint: '/graphql',
    title: 'Registry Gateway — audit console',
    subscriptionsProtocol: 'WS',
    headers: HEADERS,
    defaultHeaders: HEADERS,
    shouldPersistHeaders: true,
    defaultTabs: tabs.map((t) => ({
      query: t.query,
      variables: JSON.stringify(t.variables, null, 2),
      headers: HEADERS,
    })),
    defaultQuery: tabs[0].query,
  });
}

/** Apollo's landing page: GraphiQL for browsers, rendered at most once a day. */
export function graphiqlPage(): ApolloServerPlugin {
  let cached: { day: string; html: string } | undefined;
  return {
    async serverWillStart() {
      return {
        async renderLandingPage() {
          return {
            html: async () => {
              const day = new Date().toISOString().slice(0, 10);
              if (cached?.day !== day) cached = { day, html: await renderConsole() };
              return cached.html;
            },
          };
        },
      };
    },
  };
}
