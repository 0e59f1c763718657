// PGlite (PostgreSQL compiled to WebAssembly) with the pgvector extension, served over the
// PostgreSQL wire protocol on a free loopback port (pglite-socket). Run as a child process: jest's
// module sandbox cannot load PGlite's WebAssembly (dynamic import). Prints `port <n>` when ready
// and stops when its stdin closes.
import { PGlite } from '@electric-sql/pglite';
import { vector } from '@electric-sql/pglite-pgvector';
import { PGLiteSocketServer } from '@electric-sql/pglite-socket';

const db = await PGlite.create({ extensions: { vector } });
const server = new PGLiteSocketServer({ db, port: 0, host: '127.0.0.1' });
await server.start();
process.stdout.write(`port ${server.server.address().port}\n`);
process.stdin.resume();
process.stdin.on('end', async () => {
  await server.stop();
  await db.close();
  process.exit(0);
});
