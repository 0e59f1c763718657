// Builds the playground (GraphiQL 5, React, Monaco and its workers) into dist/playground/, which
// the server serves at GET /graphql (index.html) and /graphql/playground/assets/* (the rest).
// `npm run build:playground`; README "Playground".
import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vite';

const root = fileURLToPath(new URL('.', import.meta.url));

export default defineConfig({
  root,
  // relative URLs everywhere: chunks, workers and fonts are found next to the module that asks
  base: './',
  publicDir: false,
  logLevel: 'warn',
  clearScreen: false,
  oxc: { jsx: { runtime: 'automatic' } },
  build: {
    outDir: fileURLToPath(new URL('../dist/playground', import.meta.url)),
    emptyOutDir: true,
    assetsDir: 'assets',
    target: 'es2022',
    sourcemap: false,
    reportCompressedSize: false,
    // Monaco is large by nature; it is loaded once and cached for a year (hashed names)
    chunkSizeWarningLimit: 6000,
    rolldownOptions: {
      onwarn(warning, warn) {
        // framer-motion's "use client" markers mean nothing outside React Server Components
        if (warning.code === 'MODULE_LEVEL_DIRECTIVE') return;
        warn(warning);
      },
    },
  },
  worker: { format: 'es' },
  experimental: {
    // the page is served at /graphql, so the HTML reaches its assets under graphql/playground/
    // (relative to /graphql); from JS and CSS, assets stay relative to the file that asks
    renderBuiltUrl(filename, { hostType }) {
      if (hostType === 'html') return `graphql/playground/${filename}`;
      return { relative: true };
    },
  },
});
