import { createReadStream, existsSync, statSync } from 'node:fs';
import { createServer, request as httpRequest, type IncomingMessage, type Server } from 'node:http';
import { connect, type AddressInfo, type Socket } from 'node:net';
import { extname, join, normalize, sep } from 'node:path';

/**
 * A tiny web server for browser tests: serves a built single-page app (examples/web/dist) and
 * proxies `/graphql` (HTTP and the WebSocket upgrade) and `/files` to the API server, so the
 * page and the API share one origin and the API server needs no CORS. What `vite preview`
 * does with its proxy, without loading Vite into jest.
 */
export interface StaticProxy {
  url: string;
  /** Requests proxied to the API so far: method and path. */
  proxied: { method: string; path: string }[];
  /**
   * Cuts every proxied WebSocket and refuses new ones (as a network that went away) until the
   * returned function is called.
   */
  dropWebSockets(): () => void;
  close(): Promise<void>;
}

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json',
  '.map': 'application/json',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
};

const PROXIED = /^\/(graphql|files)(\/|\?|$)/;

export async function startStaticProxy(opts: { root: string; apiUrl: string }): Promise<StaticProxy> {
  const api = new URL(opts.apiUrl);
  const root = normalize(opts.root);
  const proxied: StaticProxy['proxied'] = [];
  const sockets = new Set<Socket>();
  const upgrades = new Set<Socket>();
  let refuseUpgrades = false;

  const server: Server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0]!;
    if (PROXIED.test(req.url ?? '')) {
      proxied.push({ method: req.method ?? '', path });
      const upstream = httpRequest(
        { host: api.hostname, port: api.port, method: req.method, path: req.url, headers: { ...req.headers, host: api.host } },
        (up) => {
          res.writeHead(up.statusCode ?? 502, up.headers);
          up.pipe(res);
        },
      );
      upstream.on('error', () => {
        if (!res.headersSent) res.writeHead(502, { 'content-type': 'text/plain' });
        res.end('bad gateway');
      });
      req.pipe(upstream);
      return;
    }
    let file: string;
    try {
      file = join(root, normalize(decodeURIComponent(path)));
    } catch {
      res.writeHead(400).end();
      return;
    }
    if (!file.startsWith(root + sep) && file !== root) {
      res.writeHead(403).end();
      return;
    }
    if (!existsSync(file) || statSync(file).isDirectory()) file = join(root, 'index.html'); // SPA fallback
    res.writeHead(200, { 'content-type': TYPES[extname(file)] ?? 'application/octet-stream', 'cache-control': 'no-store' });
    createReadStream(file).pipe(res);
  });

  // WebSocket: hand the raw upgrade request to the API server and splice the two sockets
  server.on('upgrade', (req: IncomingMessage, client: Socket, head: Buffer) => {
    if (!PROXIED.test(req.url ?? '') || refuseUpgrades) {
      client.destroy();
      return;
    }
    proxied.push({ method: 'UPGRADE', path: (req.url ?? '/').split('?')[0]! });
    upgrades.add(client);
    client.on('close', () => upgrades.delete(client));
    const upstream = connect(Number(api.port), api.hostname, () => {
      const lines = [`${req.method} ${req.url} HTTP/${req.httpVersion}`];
      for (let i = 0; i < req.rawHeaders.length; i += 2) {
        const name = req.rawHeaders[i]!;
        lines.push(`${name}: ${name.toLowerCase() === 'host' ? api.host : req.rawHeaders[i + 1]}`);
      }
      upstream.write(lines.join('\r\n') + '\r\n\r\n');
      if (head.length) upstream.write(head);
      upstream.pipe(client);
      client.pipe(upstream);
    });
    sockets.add(upstream);
    upstream.on('close', () => sockets.delete(upstream));
    const end = () => {
      upstream.destroy();
      client.destroy();
    };
    upstream.on('error', end);
    client.on('error', end);
    client.on('close', () => upstream.destroy());
    upstream.on('close', () => client.destroy());
  });
  server.on('connection', (s: Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    proxied,
    dropWebSockets() {
      refuseUpgrades = true;
      for (const s of upgrades) s.destroy();
      return () => {
        refuseUpgrades = false;
      };
    },
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
