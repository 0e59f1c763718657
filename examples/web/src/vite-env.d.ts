/// <reference types="vite/client" />

interface ImportMetaEnv {
  /** GraphQL endpoint (HTTP); the WebSocket URL is derived from it. Default: same origin `/graphql`. */
  readonly VITE_GRAPHQL_URL?: string;
}

interface ImportMeta {
  readonly env: ImportMetaEnv;
}
