import { existsSync, mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { chromium, type Browser } from 'playwright-core';

/** Where browser tests write screenshots (git-ignored). */
export const ARTIFACTS_DIR = resolve(__dirname, '../artifacts');

const CANDIDATES = [process.env.CHROMIUM_PATH, '/usr/bin/chromium', '/usr/bin/chromium-browser', '/usr/bin/google-chrome'].filter(
  (p): p is string => !!p,
);

/** Debian's Chromium (or CHROMIUM_PATH); undefined when none is installed. */
export function chromiumPath(): string | undefined {
  return CANDIDATES.find((p) => existsSync(p));
}

/**
 * `describe` for browser tests: without a Chromium binary the block is skipped with a loud
 * notice, except under CI=true, where `.ci/run` installs Debian's chromium and a missing binary
 * fails the suite.
 */
export function describeWithChromium(name: string, fn: () => void): void {
  if (chromiumPath() || process.env.CI === 'true') {
    describe(name, fn);
    return;
  }
  // eslint-disable-next-line no-console
  console.warn(
    `\n*** BROWSER TESTS SKIPPED (${name}): no Chromium at ${CANDIDATES.join(', ')}. ` +
      'Install it with "apt-get install -y chromium" (or set CHROMIUM_PATH); under CI=true this is a failure. ***\n',
  );
  describe.skip(name, fn);
}

/** Headless Chromium with the flags this machine's closed network needs; installs nothing. */
export async function launchChromium(): Promise<Browser> {
  const executablePath = chromiumPath();
  if (!executablePath) throw new Error(`no Chromium binary (looked at ${CANDIDATES.join(', ')}); install Debian's "chromium"`);
  return chromium.launch({
    executablePath,
    headless: true,
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--disable-dev-shm-usage',
    ],
  });
}

/** A path under test/artifacts/ for a screenshot, the directory made. */
export function artifactPath(file: string): string {
  mkdirSync(ARTIFACTS_DIR, { recursive: true });
  return join(ARTIFACTS_DIR, file);
}
