import { spawn } from 'node:child_process';
import { resolve } from 'node:path';
import { createInterface } from 'node:readline';

export interface PgCluster {
  url: string;
  stop(): Promise<void>;
  start(): Promise<void>;
  close(): Promise<void>;
}

/** Starts test/support/pg-cluster.child.mjs: a real PostgreSQL the test may stop and start. */
export async function startPgCluster(): Promise<PgCluster> {
  const child = spawn(process.execPath, [resolve(__dirname, 'pg-cluster.child.mjs')], { stdio: ['pipe', 'pipe', 'inherit'], cwd: resolve(__dirname, '../..') });
  const lines = createInterface({ input: child.stdout! })[Symbol.asyncIterator]();
  const read = async () => {
    const r = await lines.next();
    if (r.done) throw new Error('the PostgreSQL cluster process ended');
    const msg = JSON.parse(r.value) as { ready?: boolean; url?: string; done?: string; error?: string };
    if (msg.error) throw new Error(msg.error);
    return msg;
  };
  const { url } = await read();
  const command = async (cmd: string) => {
    child.stdin!.write(`${cmd}\n`);
    await read();
  };
  return {
    url: url!,
    stop: () => command('stop'),
    start: () => command('start'),
    async close() {
      if (child.exitCode !== null) return;
      const exited = new Promise((r) => child.once('exit', r));
      await command('exit').catch(() => undefined);
      await exited;
    },
  };
}
