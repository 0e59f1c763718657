import { bool, oneOf, type Env } from '../config.env';

/** The in-browser IDE at `GET /graphql` (playground/). README's configuration table mirrors it. */
export interface PlaygroundConfig {
  /** PLAYGROUND: serve an IDE to browsers at `GET /graphql`. @default true outside production, false in production */
  enabled: boolean;
  /**
   * PLAYGROUND_UI: `graphiql` (bundled with the server, works offline, subscriptions over
   * graphql-ws, development identity box) or `apollo` (Apollo Sandbox's landing page, loaded from
   * Apollo's CDN). @default "graphiql"
   */
  ui: 'graphiql' | 'apollo';
}

export function loadPlaygroundConfig(env: Env, production: boolean): PlaygroundConfig {
  return { enabled: bool(env, 'PLAYGROUND', !production), ui: oneOf(env, 'PLAYGROUND_UI', 'graphiql', ['graphiql', 'apollo'] as const) };
}
