import pino, { type Logger } from 'pino';

export type { Logger };

/**
 * One JSON line per event on stdout. Message content, tokens and secrets never go to the log:
 * `redact` removes credentials that could arrive in logged objects.
 */
export function createLogger(level: string): Logger {
  return pino({
    level,
    base: { service: 'vision-path' },
    redact: {
      paths: ['authorization', '*.authorization', 'headers.authorization', 'password', '*.password', 'token'],
      censor: '[redacted]',
    },
  });
}
