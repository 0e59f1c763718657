import type { ApolloServerPlugin, BaseContext } from '@apollo/server';
import type { Metrics } from './metrics';

/**
 * Counts and times every operation Apollo answers over HTTP: by the resolved operation's name and
 * type and by the first error code the client sees (after `formatError`, so the contract's codes).
 */
export function metricsPlugin<C extends BaseContext>(metrics: Metrics): ApolloServerPlugin<C> {
  return {
    async requestDidStart() {
      const started = performance.now();
      return {
        async willSendResponse({ operation, errors, response }) {
          const body = response.body.kind === 'single' ? response.body.singleResult : undefined;
          const code = body ? body.errors?.[0]?.extensions?.code : errors?.[0]?.extensions?.code;
          metrics.operation({ operation, code, transport: 'http', seconds: (performance.now() - started) / 1000 });
        },
      };
    },
  };
}
