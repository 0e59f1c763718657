/* eslint-disable */
import * as types from './graphql';
import type { TypedDocumentNode as DocumentNode } from '@graphql-typed-document-node/core';

/**
 * Map of all GraphQL operations in the project.
 *
 * This map has several performance disadvantages:
 * 1. It is not tree-shakeable, so it will include all operations in the project.
 * 2. It is not minifiable, so the string of a GraphQL query will be multiple times inside the bundle.
 * 3. It does not support dead code elimination, so it will add unused operations.
 *
 * Therefore it is highly recommended to use the babel or swc plugin for production.
 * Learn more about it here: https://the-guild.dev/graphql/codegen/plugins/presets/preset-client#reducing-bundle-size
 */
type Documents = {
    "mutation CreateVision($input: CreateVisionInput) {\n  createVision(input: $input) {\n    ...VisionFields\n  }\n}": typeof types.CreateVisionDocument,
    "fragment MessageFields on VisionMessage {\n  id\n  visionId\n  sender\n  type\n  content\n  state\n  payload\n  createdAt\n}\n\nfragment VisionFields on Vision {\n  id\n  title\n  status\n  updatedAt\n}": typeof types.MessageFieldsFragmentDoc,
    "subscription MessageAdded($visionId: ID!) {\n  messageAdded(visionId: $visionId) {\n    ...MessageFields\n  }\n}": typeof types.MessageAddedDocument,
    "mutation RenameVision($id: ID!, $title: String!) {\n  renameVision(id: $id, title: $title) {\n    ...VisionFields\n  }\n}": typeof types.RenameVisionDocument,
    "subscription ReplyDelta($visionId: ID!, $replyId: ID, $afterSeq: Int) {\n  replyDelta(visionId: $visionId, replyId: $replyId, afterSeq: $afterSeq) {\n    visionId\n    replyId\n    seq\n    delta\n    done\n    state\n  }\n}": typeof types.ReplyDeltaDocument,
    "mutation RetryReply($visionId: ID!) {\n  retryReply(visionId: $visionId) {\n    userMessage {\n      ...MessageFields\n    }\n    assistantMessage {\n      ...MessageFields\n    }\n  }\n}": typeof types.RetryReplyDocument,
    "mutation SendMessage($input: SendMessageInput!) {\n  sendMessage(input: $input) {\n    userMessage {\n      ...MessageFields\n    }\n    assistantMessage {\n      ...MessageFields\n    }\n  }\n}": typeof types.SendMessageDocument,
    "mutation SetVisionStatus($id: ID!, $status: VisionStatus!) {\n  setVisionStatus(id: $id, status: $status) {\n    ...VisionFields\n  }\n}": typeof types.SetVisionStatusDocument,
    "mutation StopReply($visionId: ID!) {\n  stopReply(visionId: $visionId)\n}": typeof types.StopReplyDocument,
    "query VisionFeed($id: ID!, $last: Int, $before: String, $first: Int, $after: String) {\n  vision(id: $id) {\n    ...VisionFields\n    messages(last: $last, before: $before, first: $first, after: $after) {\n      totalCount\n      pageInfo {\n        hasPreviousPage\n        hasNextPage\n        startCursor\n        endCursor\n      }\n      edges {\n        cursor\n        node {\n          ...MessageFields\n        }\n      }\n    }\n  }\n}": typeof types.VisionFeedDocument,
    "query Visions($status: [VisionStatus!], $first: Int) {\n  visions(status: $status, first: $first) {\n    totalCount\n    edges {\n      node {\n        ...VisionFields\n        lastMessage {\n          id\n          sender\n          content\n          state\n        }\n      }\n    }\n  }\n}": typeof types.VisionsDocument,
};
const documents: Documents = {
    "mutation CreateVision($input: CreateVisionInput) {\n  createVision(input: $input) {\n    ...VisionFields\n  }\n}": types.CreateVisionDocument,
    "fragment MessageFields on VisionMessage {\n  id\n  visionId\n  sender\n  type\n  content\n  state\n  payload\n  createdAt\n}\n\nfragment VisionFields on Vision {\n  id\n  title\n  status\n  updatedAt\n}": types.MessageFieldsFragmentDoc,
    "subscription MessageAdded($visionId: ID!) {\n  messageAdded(visionId: $visionId) {\n    ...MessageFields\n  }\n}": types.MessageAddedDocument,
    "mutation RenameVision($id: ID!, $title: String!) {\n  renameVision(id: $id, title: $title) {\n    ...VisionFields\n  }\n}": types.RenameVisionDocument,
    "subscription ReplyDelta($visionId: ID!, $replyId: ID, $afterSeq: Int) {\n  replyDelta(visionId: $visionId, replyId: $replyId, afterSeq: $afterSeq) {\n    visionId\n    replyId\n    seq\n    delta\n    done\n    state\n  }\n}": types.ReplyDeltaDocument,
    "mutation RetryReply($visionId: ID!) {\n  retryReply(visionId: $visionId) {\n    userMessage {\n      ...MessageFields\n    }\n    assistantMessage {\n      ...MessageFields\n    }\n  }\n}": types.RetryReplyDocument,
    "mutation SendMessage($input: SendMessageInput!) {\n  sendMessage(input: $input) {\n    userMessage {\n      ...MessageFields\n    }\n    assistantMessage {\n      ...MessageFields\n    }\n  }\n}": types.SendMessageDocument,
    "mutation SetVisionStatus($id: ID!, $status: VisionStatus!) {\n  setVisionStatus(id: $id, status: $status) {\n    ...VisionFields\n  }\n}": types.SetVisionStatusDocument,
    "mutation StopReply($visionId: ID!) {\n  stopReply(visionId: $visionId)\n}": types.StopReplyDocument,
    "query VisionFeed($id: ID!, $last: Int, $before: String, $first: Int, $after: String) {\n  vision(id: $id) {\n    ...VisionFields\n    messages(last: $last, before: $before, first: $first, after: $after) {\n      totalCount\n      pageInfo {\n        hasPreviousPage\n        hasNextPage\n        startCursor\n        endCursor\n      }\n      edges {\n        cursor\n        node {\n          ...MessageFields\n        }\n      }\n    }\n  }\n}": types.VisionFeedDocument,
    "query Visions($status: [VisionStatus!], $first: Int) {\n  visions(status: $status, first: $first) {\n    totalCount\n    edges {\n      node {\n        ...VisionFields\n        lastMessage {\n          id\n          sender\n          content\n          state\n        }\n      }\n    }\n  }\n}": types.VisionsDocument,
};

/**
 * The graphql function is used to parse GraphQL queries into a document that can be used by GraphQL clients.
 *
 *
 * @example
 * ```ts
 * const query = graphql(`query GetUser($id: ID!) { user(id: $id) { name } }`);
 * ```
 *
 * The query argument is unknown!
 * Please regenerate the types.
 */
export function graphql(source: string): unknown;

/**
 * The graphql function is used to parse GraphQL queries into a document that can be used by GraphQL clients.
 */
export function graphql(source: "mutation CreateVision($input: CreateVisionInput) {\n  createVision(input: $input) {\n    ...VisionFields\n  }\n}"): (typeof documents)["mutation CreateVision($input: CreateVisionInput) {\n  createVision(input: $input) {\n    ...VisionFields\n  }\n}"];
/**
 * The graphql function is used to parse GraphQL queries into a document that can be used by GraphQL clients.
 */
export function graphql(source: "fragment MessageFields on VisionMessage {\n  id\n  visionId\n  sender\n  type\n  content\n  state\n  payload\n  createdAt\n}\n\nfragment VisionFields on Vision {\n  id\n  title\n  status\n  updatedAt\n}"): (typeof documents)["fragment MessageFields on VisionMessage {\n  id\n  visionId\n  sender\n  type\n  content\n  state\n  payload\n  createdAt\n}\n\nfragment VisionFields on Vision {\n  id\n  title\n  status\n  updatedAt\n}"];
/**
 * The graphql function is used to parse GraphQL queries into a document that can be used by GraphQL clients.
 */
export function graphql(source: "subscription MessageAdded($visionId: ID!) {\n  messageAdded(visionId: $visionId) {\n    ...MessageFields\n  }\n}"): (typeof documents)["subscription MessageAdded($visionId: ID!) {\n  messageAdded(visionId: $visionId) {\n    ...MessageFields\n  }\n}"];
/**
 * The graphql function is used to parse GraphQL queries into a document that can be used by GraphQL clients.
 */
export function graphql(source: "mutation RenameVision($id: ID!, $title: String!) {\n  renameVision(id: $id, title: $title) {\n    ...VisionFields\n  }\n}"): (typeof documents)["mutation RenameVision($id: ID!, $title: String!) {\n  renameVision(id: $id, title: $title) {\n    ...VisionFields\n  }\n}"];
/**
 * The graphql function is used to parse GraphQL queries into a document that can be used by GraphQL clients.
 */
export function graphql(source: "subscription ReplyDelta($visionId: ID!, $replyId: ID, $afterSeq: Int) {\n  replyDelta(visionId: $visionId, replyId: $replyId, afterSeq: $afterSeq) {\n    visionId\n    replyId\n    seq\n    delta\n    done\n    state\n  }\n}"): (typeof documents)["subscription ReplyDelta($visionId: ID!, $replyId: ID, $afterSeq: Int) {\n  replyDelta(visionId: $visionId, replyId: $replyId, afterSeq: $afterSeq) {\n    visionId\n    replyId\n    seq\n    delta\n    done\n    state\n  }\n}"];
/**
 * The graphql function is used to parse GraphQL queries into a document that can be used by GraphQL clients.
 */
export function graphql(source: "mutation RetryReply($visionId: ID!) {\n  retryReply(visionId: $visionId) {\n    userMessage {\n      ...MessageFields\n    }\n    assistantMessage {\n      ...MessageFields\n    }\n  }\n}"): (typeof documents)["mutation RetryReply($visionId: ID!) {\n  retryReply(visionId: $visionId) {\n    userMessage {\n      ...MessageFields\n    }\n    assistantMessage {\n      ...MessageFields\n    }\n  }\n}"];
/**
 * The graphql function is used to parse GraphQL queries into a document that can be used by GraphQL clients.
 */
export function graphql(source: "mutation SendMessage($input: SendMessageInput!) {\n  sendMessage(input: $input) {\n    userMessage {\n      ...MessageFields\n    }\n    assistantMessage {\n      ...MessageFields\n    }\n  }\n}"): (typeof documents)["mutation SendMessage($input: SendMessageInput!) {\n  sendMessage(input: $input) {\n    userMessage {\n      ...MessageFields\n    }\n    assistantMessage {\n      ...MessageFields\n    }\n  }\n}"];
/**
 * The graphql function is used to parse GraphQL queries into a document that can be used by GraphQL clients.
 */
export function graphql(source: "mutation SetVisionStatus($id: ID!, $status: VisionStatus!) {\n  setVisionStatus(id: $id, status: $status) {\n    ...VisionFields\n  }\n}"): (typeof documents)["mutation SetVisionStatus($id: ID!, $status: VisionStatus!) {\n  setVisionStatus(id: $id, status: $status) {\n    ...VisionFields\n  }\n}"];
/**
 * The graphql function is used to parse GraphQL queries into a document that can be used by GraphQL clients.
 */
export function graphql(source: "mutation StopReply($visionId: ID!) {\n  stopReply(visionId: $visionId)\n}"): (typeof documents)["mutation StopReply($visionId: ID!) {\n  stopReply(visionId: $visionId)\n}"];
/**
 * The graphql function is used to parse GraphQL queries into a document that can be used by GraphQL clients.
 */
export function graphql(source: "query VisionFeed($id: ID!, $last: Int, $before: String, $first: Int, $after: String) {\n  vision(id: $id) {\n    ...VisionFields\n    messages(last: $last, before: $before, first: $first, after: $after) {\n      totalCount\n      pageInfo {\n        hasPreviousPage\n        hasNextPage\n        startCursor\n        endCursor\n      }\n      edges {\n        cursor\n        node {\n          ...MessageFields\n        }\n      }\n    }\n  }\n}"): (typeof documents)["query VisionFeed($id: ID!, $last: Int, $before: String, $first: Int, $after: String) {\n  vision(id: $id) {\n    ...VisionFields\n    messages(last: $last, before: $before, first: $first, after: $after) {\n      totalCount\n      pageInfo {\n        hasPreviousPage\n        hasNextPage\n        startCursor\n        endCursor\n      }\n      edges {\n        cursor\n        node {\n          ...MessageFields\n        }\n      }\n    }\n  }\n}"];
/**
 * The graphql function is used to parse GraphQL queries into a document that can be used by GraphQL clients.
 */
export function graphql(source: "query Visions($status: [VisionStatus!], $first: Int) {\n  visions(status: $status, first: $first) {\n    totalCount\n    edges {\n      node {\n        ...VisionFields\n        lastMessage {\n          id\n          sender\n          content\n          state\n        }\n      }\n    }\n  }\n}"): (typeof documents)["query Visions($status: [VisionStatus!], $first: Int) {\n  visions(status: $status, first: $first) {\n    totalCount\n    edges {\n      node {\n        ...VisionFields\n        lastMessage {\n          id\n          sender\n          content\n          state\n        }\n      }\n    }\n  }\n}"];

export function graphql(source: string) {
  return (documents as any)[source] ?? {};
}

export type DocumentType<TDocumentNode extends DocumentNode<any, any>> = TDocumentNode extends DocumentNode<  infer TType,  any>  ? TType  : never;