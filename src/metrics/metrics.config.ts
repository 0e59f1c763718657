import { bool, ConfigError, int, str, type Env } from '../config.env';

/** Prometheus metrics (metrics/). README's configuration table mirrors it. */
export interface MetricsConfig {
  /** METRICS: collect metrics and serve `GET /metrics`. @default true */
  enabled: boolean;
  /**
   * METRICS_TOKEN: when set, `/metrics` answers only `Authorization: Bearer <token>` (at least
   * 16 characters). In production `/metrics` is served on the public port only with a token.
   */
  token?: string;
  /** METRICS_PORT: serve `/metrics` on its own listener instead of the public port (0: any free port). */
  port?: number;
  /** METRICS_HOST: the address of that listener. @default "127.0.0.1" */
  host: string;
}

export function loadMetricsConfig(env: Env): MetricsConfig {
  const token = str(env, 'METRICS_TOKEN');
  if (token !== undefined && token.length < 16) throw new ConfigError('METRICS_TOKEN must be at least 16 characters');
  const port = str(env, 'METRICS_PORT') === undefined ? undefined : int(env, 'METRICS_PORT', 0, 0, 65535);
  return { enabled: bool(env, 'METRICS', true), token, port, host: str(env, 'METRICS_HOST') ?? '127.0.0.1' };
}
