/**
 * What a new playground shows: one document with the example operations, their variables and
 * the identity header. Operation and argument names follow schema.graphql.
 */

export const EXAMPLE_QUERY = `# Vision Path playground: a dialog with the AI coach toward a vision.
#
# 1. Run CreateVision (the run button ▶ lists the operations; Ctrl/Cmd+Enter runs the one under
#    the cursor). Its id is copied into the "visionId" variable below by the playground.
# 2. Edit "content" in the variables and run SendMessage: the answer holds your message and the
#    coach's reply. After each send the playground puts a fresh "clientMessageId" in the
#    variables (the same key sent twice returns the first result and never calls the model twice).
# 3. Watch a reply stream: open the "Live reply" panel (left sidebar) and send a message, or run
#    WatchReply in a second playground window and SendMessage in this one.
#
# Identity (Headers tab below): "x-user-id" is the development identity, accepted only while
# the server has no JWT settings (AUTH_JWT_SECRET / AUTH_JWKS_URL) and NODE_ENV is not
# production. With JWT settings, replace the headers with
#   { "Authorization": "Bearer <JWT>" }
# The same headers are sent as graphql-ws connectionParams for subscriptions.

mutation CreateVision($title: String) {
  createVision(input: { title: $title, meta: { source: "playground" } }) {
    id
    title
    status
    createdAt
  }
}

mutation SendMessage($visionId: ID!, $content: String!, $clientMessageId: ID) {
  sendMessage(input: { visionId: $visionId, content: $content, clientMessageId: $clientMessageId }) {
    userMessage {
      id
      content
    }
    assistantMessage {
      id
      state
      content
    }
  }
}

subscription WatchReply($visionId: ID!) {
  replyDelta(visionId: $visionId) {
    replyId
    seq
    delta
    done
    state
  }
}

query Visions {
  visions(first: 20) {
    totalCount
    edges {
      node {
        id
        title
        status
        updatedAt
        lastMessage {
          sender
          content
        }
      }
    }
  }
}

query Messages($visionId: ID!) {
  vision(id: $visionId) {
    title
    tokenUsage {
      calls
      totalTokens
    }
    messages(last: 20) {
      totalCount
      pageInfo {
        hasPreviousPage
        startCursor
      }
      edges {
        node {
          id
          sender
          state
          content
          createdAt
        }
      }
    }
  }
}
`;

export function exampleVariables(clientMessageId: string): string {
  return JSON.stringify(
    {
      title: 'Run a marathon next spring',
      visionId: 'run CreateVision first: its id lands here',
      content: 'Hello coach! Where do I start?',
      clientMessageId,
    },
    null,
    2,
  );
}

/** The Headers tab of a new playground (JSONC: comments are allowed there). */
export function exampleHeaders(devIdentity: boolean): string {
  return devIdentity
    ? `{
  // development identity (accepted while the server has no JWT settings);
  // with JWT settings use instead: "Authorization": "Bearer <JWT>"
  "x-user-id": "playground-user"
}`
    : `{
  // this server verifies JWTs: paste one after "Bearer "
  // ("x-user-id" is accepted only in development without JWT settings)
  "Authorization": ""
}`;
}
