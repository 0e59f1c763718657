// The floor of scenario 5: the fan-out with nothing of ours in between. A bare node:http server
// with `ws` on /graphql speaks just enough of graphql-transport-ws for the subscriber swarm
// (connection_ack, pong, subscribe and complete remembered; no identity, no GraphQL), and on
// POST /graphql "sends a message": it makes the user message's event (its createdAt is now) and
// writes its `next` frame to every subscriber in one loop (the payload serialized once, each
// socket's frame behind its own operation id), then the reply's event the same way, and answers
// with sendMessage's JSON shape. What is left is `ws`, the kernel's loopback TCP and the swarm.
//
// Env: PORT.
import { randomUUID } from 'node:crypto';
import { createServer } from 'node:http';
import { WebSocketServer } from 'ws';

const subscribers = new Map(); // socket → Map<operation id, frame prefix>

function fanOut(message) {
  const payload = JSON.stringify({ data: { messageAdded: message } });
  for (const [socket, ops] of subscribers) {
    if (socket.readyState !== socket.OPEN) continue;
    for (const prefix of ops.values()) socket.send(prefix + payload + '}');
  }
}

const server = createServer((req, res) => {
  if (req.url === '/healthz') return res.end('{"status":"ok"}');
  req.resume();
  req.on('end', () => {
    const user = { id: randomUUID(), sender: 'USER', createdAt: new Date().toISOString() };
    fanOut(user);
    const reply = { id: randomUUID(), sender: 'ASSISTANT', createdAt: new Date().toISOString() };
    fanOut(reply);
    const body = JSON.stringify({ data: { sendMessage: { userMessage: { id: user.id }, assistantMessage: { id: reply.id, state: 'COMPLETE' } } } });
    res.writeHead(200, { 'content-type': 'application/json' }).end(body);
  });
});

const wss = new WebSocketServer({ server, path: '/graphql', handleProtocols: (protocols) => (protocols.has('graphql-transport-ws') ? 'graphql-transport-ws' : false) });
wss.on('connection', (socket) => {
  const ops = new Map();
  socket.on('message', (data) => {
    const m = JSON.parse(String(data));
    if (m.type === 'connection_init') {
      subscribers.set(socket, ops);
      socket.send('{"type":"connection_ack"}');
    } else if (m.type === 'ping') socket.send('{"type":"pong"}');
    else if (m.type === 'subscribe') ops.set(m.id, `{"id":${JSON.stringify(m.id)},"type":"next","payload":`);
    else if (m.type === 'complete') ops.delete(m.id);
  });
  socket.on('close', () => subscribers.delete(socket));
});

server.listen(Number(process.env.PORT), '127.0.0.1');
process.on('SIGTERM', () => {
  for (const socket of wss.clients) socket.terminate();
  server.close(() => process.exit(0));
});
