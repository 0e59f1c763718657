import react from '@vitejs/plugin-react';
import { defineConfig } from 'vite';

/**
 * `vite` (dev) and `vite preview` (the built client) proxy /graphql, HTTP and WebSocket, to the
 * API server at VP_API_URL, so the browser talks to one origin and the server needs no CORS.
 */
const api = process.env.VP_API_URL ?? 'http://127.0.0.1:4000';
const proxy = {
  '/graphql': { target: api, ws: true, changeOrigin: true },
  // download links of files the coach made (File.url) when PUBLIC_URL is this origin
  '/files': { target: api, changeOrigin: true },
};

export default defineConfig({
  plugins: [react()],
  server: { host: '127.0.0.1', port: 5173, proxy },
  preview: { host: '127.0.0.1', port: Number(process.env.PORT ?? 4173), proxy },
  // Apollo Client, graphql-js and React in one chunk: about 600 kB minified, 180 kB gzipped
  build: { sourcemap: true, chunkSizeWarningLimit: 800 },
});
