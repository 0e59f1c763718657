import { ApolloClient, ApolloLink, DocumentTransform, HttpLink, InMemoryCache } from '@apollo/client';
import { PersistedQueryLink } from '@apollo/client/link/persisted-queries';
import { GraphQLWsLink } from '@apollo/client/link/subscriptions';
import { relayStylePagination } from '@apollo/client/utilities';
import {
  createPersistedQueryManifestVerificationLink,
  generatePersistedQueryIdsFromManifest,
  sortTopLevelDefinitions,
  type PersistedQueryManifestForVerification,
} from '@apollo/persisted-query-lists';
import { OperationTypeNode } from 'graphql';
import { createClient, type Client as WsClient } from 'graphql-ws';
// written by `npm run codegen` (generate-persisted-query-manifest): { id: sha256(body), name, type, body }
import manifest from '../persisted-query-manifest.json';
import { graphqlHttpUrl, graphqlWsUrl, identityConnectionParams, identityHeaders, type Identity } from './config';

/** State of the WebSocket, shown in the header (and waited for by the browser test). */
export type SocketState = 'connecting' | 'connected' | 'closed';

export interface AppClient {
  apollo: ApolloClient;
  ws: WsClient;
  dispose(): void;
}

/**
 * One Apollo Client per identity.
 *
 * Links, in order:
 * 1. the manifest check: every operation must be one of the manifest's, printed exactly as its
 *    body (a mismatch is logged: it would fail against a server in safelist mode);
 * 2. persisted queries: the request carries `extensions.persistedQuery.sha256Hash`, the
 *    manifest's id of the operation. The HTTP request sends only the hash; a server without that
 *    hash (APQ, the server's default) answers PERSISTED_QUERY_NOT_FOUND and the link sends the
 *    query with the hash once, which registers it. A server in safelist mode
 *    (PERSISTED_DOCUMENTS) knows every hash of the manifest;
 * 3. subscriptions over graphql-ws (`GraphQLWsLink`; the query text and the hash travel
 *    together), queries and mutations over HTTP.
 *
 * The manifest's body is what this client prints (generate-persisted-query-manifest runs the
 * documents through an Apollo Client with the same InMemoryCache, which adds `__typename`), so
 * sha256(printed query) equals the id and APQ accepts the query that goes with the hash.
 *
 * `onSocket` hears the WebSocket's state; `reconnected` is true when a connection is back after
 * one was lost (graphql-ws retried): events published meanwhile were not delivered.
 */
export function makeClient(identity: Identity, onSocket: (s: SocketState, reconnected?: boolean) => void): AppClient {
  const ws = createClient({
    url: graphqlWsUrl(),
    connectionParams: () => identityConnectionParams(identity),
    lazy: true,
    // keep retrying (with graphql-ws's back-off); a resumed replyDelta subscription fills the gap
    retryAttempts: Infinity,
    shouldRetry: () => true,
    on: {
      connecting: () => onSocket('connecting'),
      connected: (_socket, _payload, wasRetry) => onSocket('connected', wasRetry),
      closed: () => onSocket('closed'),
    },
  });

  const verify = createPersistedQueryManifestVerificationLink({
    loadManifest: () => manifest as PersistedQueryManifestForVerification,
    onVerificationFailed: (details) => {
      // eslint-disable-next-line no-console
      console.error(`[persisted-queries] ${details.operation.operationName}: ${details.reason} (run npm run codegen)`);
    },
  });
  const persisted = new PersistedQueryLink(generatePersistedQueryIdsFromManifest({ loadManifest: () => manifest }));
  const transport = ApolloLink.split(
    (op) => op.operationType === OperationTypeNode.SUBSCRIPTION,
    new GraphQLWsLink(ws),
    new HttpLink({ uri: graphqlHttpUrl(), headers: identityHeaders(identity) }),
  );

  const apollo = new ApolloClient({
    link: ApolloLink.from([verify, persisted, transport]),
    // the manifest's bodies have their fragments sorted by name: sent the same way, a query's
    // text hashes to its manifest id (APQ checks it) however its fragments were spread
    documentTransform: new DocumentTransform(sortTopLevelDefinitions),
    cache: new InMemoryCache({
      typePolicies: {
        Vision: {
          fields: {
            // one list per vision, whatever the page arguments: older pages are prepended
            // (last/before), newer messages appended (first/after)
            messages: relayStylePagination(),
          },
        },
      },
    }),
  });

  return {
    apollo,
    ws,
    dispose() {
      apollo.stop();
      void ws.dispose();
    },
  };
}
