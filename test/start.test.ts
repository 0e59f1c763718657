import { spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { chmodSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { findFreePort } from '../src/db/embedded';
import { startFakeOpenAI, type FakeOpenAI } from './support/fake-openai';

/*
 * `npm start`, the README's quick start, as a process manager, `timeout` or a container runtime
 * runs it: the signal goes to the npm process only. Nothing of the run may be left afterwards.
 * Linux only (processes are read from /proc).
 */

const root = resolve(__dirname, '..');
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Run {
  npm: ChildProcess;
  url: string;
  /** Every stdout/stderr line so far (npm's, the server's). */
  output: string[];
  /** npm's own exit; the pipes may stay open as long as anything it started lives. */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/**
 * Runs `npm start --ignore-scripts` in the repository with no DATABASE_URL (embedded PostgreSQL in
 * `dataDir`) and waits until /healthz answers. `--ignore-scripts` skips only the `prestart` build
 * (other test files use dist/ meanwhile); the start script, its `exec` and npm's signal
 * forwarding are the ones `npm start` runs.
 */
async function npmStart(dataDir: string, env: Record<string, string> = {}): Promise<Run> {
  const port = await findFreePort();
  const npm = spawn('npm', ['start', '--ignore-scripts'], {
    cwd: root,
    env: {
      PATH: process.env.PATH ?? '',
      HOME: process.env.HOME ?? '/tmp',
      NODE_ENV: 'development',
      LOG_LEVEL: 'info',
      HOST: '127.0.0.1',
      PORT: String(port),
      DATA_DIR: dataDir,
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const output: string[] = [];
  const onData = (chunk: Buffer) => output.push(...chunk.toString('utf8').split('\n').filter(Boolean));
  npm.stdout!.on('data', onData);
  npm.stderr!.on('data', onData);
  let done = false;
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((r) =>
    npm.on('exit', (code, signal) => {
      done = true;
      r({ code, signal });
    }),
  );
  const url = `http://127.0.0.1:${port}`;
  for (;;) {
    if (done) throw new Error(`npm start exited before /healthz answered:\n${output.join('\n')}`);
    const ok = await fetch(`${url}/healthz`).then((r) => r.ok, () => false);
    if (ok) return { npm, url, output, exited };
    await sleep(100);
  }
}

interface Proc {
  pid: number;
  args: string;
}

/**
 * The processes of one run: those whose environment holds its DATA_DIR (npm, the shell, the
 * server, the postmaster), or whose command line or working directory is that directory (every
 * PostgreSQL process works in its data directory; its children rewrite their command lines).
 */
function processesOf(dataDir: string): Proc[] {
  const found: Proc[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const args = readFileSync(`/proc/${name}/cmdline`, 'utf8').split('\0').filter(Boolean);
      if (args.length === 0) continue; // a zombie or a kernel thread
      const env = readFileSync(`/proc/${name}/environ`, 'utf8').split('\0');
      let cwd = '';
      try {
        cwd = readlinkSync(`/proc/${name}/cwd`);
      } catch {
        // not ours to look at
      }
      if (env.includes(`DATA_DIR=${dataDir}`) || args.includes(dataDir) || cwd === dataDir) found.push({ pid: Number(name), args: args.join(' ') });
    } catch {
      // ended while we looked
    }
  }
  return found;
}

/** The processes of the run still there once they are all gone or 15 s have passed. */
async function leftovers(dataDir: string): Promise<Proc[]> {
  for (let waited = 0; waited < 15_000; waited += 100) {
    if (processesOf(dataDir).length === 0) return [];
    await sleep(100);
  }
  return processesOf(dataDir);
}

const isServer = (p: Proc) => p.args.includes('dist/src/index.js') && !p.args.startsWith('sh ');
const isPostmaster = (p: Proc) => /\/postgres -D /.test(p.args);

let dir: string;
let dataDir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'vision-path-start-'));
  chmodSync(dir, 0o755); // as root, PostgreSQL runs as the postgres user, which must reach it
  dataDir = join(dir, 'pg');
});
afterEach(() => {
  // whatever a failed test left behind
  for (const p of processesOf(dataDir)) {
    try {
      process.kill(p.pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
  rmSync(dir, { recursive: true, force: true });
});

describe('npm start', () => {
  it.each(['SIGTERM', 'SIGINT'] as const)('%s to the npm process stops the server and its embedded PostgreSQL', async (signal) => {
    const run = await npmStart(dataDir);
    const running = processesOf(dataDir);
    expect(running.filter(isServer)).toHaveLength(1);
    expect(running.filter(isPostmaster)).toHaveLength(1);

    run.npm.kill(signal);

    expect(await leftovers(dataDir)).toEqual([]);
    expect(await run.exited).toEqual({ code: 0, signal: null });
    expect(run.output).toContainEqual(expect.stringContaining('"msg":"stopped"'));
  });

  it('after the server was killed (SIGKILL), the PostgreSQL it left running does not keep the next start from working', async () => {
    const first = await npmStart(dataDir);
    const [server] = processesOf(dataDir).filter(isServer);
    const [postmaster] = processesOf(dataDir).filter(isPostmaster);
    process.kill(server!.pid, 'SIGKILL');
    await first.exited;
    // nothing tells PostgreSQL that its parent died: it runs on, holding the data directory
    expect(processesOf(dataDir).filter(isPostmaster)).toEqual([postmaster]);

    const second = await npmStart(dataDir);
    expect((await fetch(`${second.url}/readyz`)).status).toBe(200);
    expect(processesOf(dataDir).filter(isPostmaster)).not.toContainEqual(postmaster);
    second.npm.kill('SIGTERM');
    expect(await leftovers(dataDir)).toEqual([]);
    expect(await second.exited).toEqual({ code: 0, signal: null });
  });

  describe('with a reply running', () => {
    let fake: FakeOpenAI;
    beforeAll(async () => {
      fake = await startFakeOpenAI();
    });
    afterAll(() => fake?.close());

    it('SIGTERM lets the reply finish and store itself before PostgreSQL stops', async () => {
      let release!: () => void;
      fake.enqueue({ kind: 'stream', chunks: ['Finished', ' after the signal'], hold: new Promise<void>((r) => (release = r)) });
      const run = await npmStart(dataDir, { OPENAI_API_KEY: 'test-key', OPENAI_BASE_URL: fake.baseURL, LLM_MAX_RETRIES: '0' });
      const user = `start-${randomUUID()}`;
      const gql = async (query: string, variables: unknown = {}) =>
        (await (await fetch(`${run.url}/graphql`, { method: 'POST', headers: { 'content-type': 'application/json', 'x-user-id': user }, body: JSON.stringify({ query, variables }) })).json()) as any;
      const visionId = (await gql('mutation { createVision(input: {}) { id } }')).data.createVision.id as string;
      const sending = gql('mutation($i: SendMessageInput!) { sendMessage(input: $i) { assistantMessage { state content } } }', {
        i: { visionId, content: 'hello' },
      });
      await fake.waitForRequests(1);

      run.npm.kill('SIGTERM');
      const shuttingDown = () => run.output.some((l) => l.includes('"msg":"shutting down"'));
      let npmExited = false;
      void run.exited.then(() => (npmExited = true));
      while (!shuttingDown() && !npmExited) await sleep(20);
      expect(shuttingDown()).toBe(true);
      release();

      expect(await sending).toEqual({ data: { sendMessage: { assistantMessage: { state: 'COMPLETE', content: 'Finished after the signal' } } } });
      expect(await leftovers(dataDir)).toEqual([]);
      expect(await run.exited).toEqual({ code: 0, signal: null });
      expect(run.output).toContainEqual(expect.stringContaining('"msg":"stopped"'));
    });
  });
});
