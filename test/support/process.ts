import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { findFreePort } from '../../src/db/embedded';
import { testFileDir } from './server';

export const ENTRY = resolve(__dirname, '../../dist/src/index.js');

/** How long a spawned server may take to listen. */
const READY_TIMEOUT_MS = 30_000;

export interface ServerProcess {
  url: string;
  proc: ChildProcess;
  /** Every stdout/stderr line so far. */
  output: string[];
  /** Sends a signal and resolves with the exit code. */
  kill(signal?: NodeJS.Signals): Promise<number | null>;
  exited: Promise<number | null>;
}

/** Runs the built server (`node dist/src/index.js`) as its own process on a free port. */
export async function spawnServer(env: Record<string, string>): Promise<ServerProcess> {
  if (!existsSync(ENTRY)) throw new Error(`${ENTRY} is missing: run "npm run build" (npm test does)`);
  const port = await findFreePort();
  const base: Record<string, string> = { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/tmp' };
  const proc = spawn(process.execPath, [ENTRY], {
    // embedding jobs add metered rows in the background (as in startTestServer, search tests turn them on)
    env: { ...base, NODE_ENV: 'development', LOG_LEVEL: 'info', PORT: String(port), HOST: '127.0.0.1', EMBEDDINGS: 'false', FILE_DIR: testFileDir(), ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const output: string[] = [];
  // 'close' comes after the output streams ended, so every line is in `output`
  const exited = new Promise<number | null>((r) => proc.on('close', (code) => r(code)));
  const ready = new Promise<void>((resolveReady, reject) => {
    const onLine = (chunk: Buffer) => {
      for (const line of chunk.toString('utf8').split('\n')) {
        if (!line) continue;
        output.push(line);
        if (line.includes('GraphQL server listening')) resolveReady();
      }
    };
    proc.stdout!.on('data', onLine);
    proc.stderr!.on('data', onLine);
    void exited.then((code) => reject(new Error(`server exited (${code}) before listening:\n${output.join('\n')}`)));
  });
  // a server that never listens fails the test with what it said, instead of hanging it
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      proc.kill('SIGKILL');
      reject(new Error(`server did not listen within ${READY_TIMEOUT_MS} ms:\n${output.join('\n')}`));
    }, READY_TIMEOUT_MS);
  });
  try {
    await Promise.race([ready, timeout]);
  } finally {
    clearTimeout(timer);
  }
  return {
    url: `http://127.0.0.1:${port}`,
    proc,
    output,
    exited,
    async kill(signal = 'SIGTERM') {
      if (proc.exitCode === null) proc.kill(signal);
      return exited;
    },
  };
}
