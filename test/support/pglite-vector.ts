import { spawn } from 'node:child_process';
import { resolve } from 'node:path';
import { createInterface } from 'node:readline';

/** Starts test/support/pglite-vector.child.mjs: a PostgreSQL with pgvector on loopback; its URL and a stop function. */
export async function startPgliteWithVector(): Promise<{ url: string; stop(): Promise<void> }> {
  const child = spawn(process.execPath, [resolve(__dirname, 'pglite-vector.child.mjs')], { stdio: ['pipe', 'pipe', 'inherit'], cwd: resolve(__dirname, '../..') });
  const lines = createInterface({ input: child.stdout! });
  const port = await new Promise<number>((ok, fail) => {
    lines.on('line', (l) => {
      const m = /^port (\d+)$/.exec(l);
      if (m) ok(Number(m[1]));
    });
    child.once('exit', (code) => fail(new Error(`PGlite exited with ${code} before it listened`)));
  });
  return {
    url: `postgres://postgres@127.0.0.1:${port}/postgres`,
    async stop() {
      if (child.exitCode !== null) return;
      const exited = new Promise((r) => child.once('exit', r));
      child.stdin!.end();
      const t = setTimeout(() => child.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(t);
    },
  };
}
