/**
 * The Vision Path playground: GraphiQL 5 bundled with the server (no CDN), served at
 * `GET /graphql` to browsers. Queries and mutations go over HTTP to the same URL, subscriptions
 * over graphql-ws to the same URL; the Headers tab is the identity, also sent as the WebSocket's
 * connectionParams.
 */
// Monaco's editor, JSON and GraphQL workers, bundled by Vite as files of their own
import 'graphiql/setup-workers/vite';
import 'graphiql/style.css';
import './playground.css';
import { createGraphiQLFetcher, type Fetcher, type FetcherOpts, type FetcherParams, type Storage } from '@graphiql/toolkit';
import { PlayIcon, StopIcon, tryParseJSONC, useGraphiQL, type GraphiQLPlugin, type MonacoEditor } from '@graphiql/react';
import { GraphiQL, HISTORY_PLUGIN } from 'graphiql';
import { createClient, type Client } from 'graphql-ws';
import { StrictMode, useEffect, useRef, useState } from 'react';
import { createRoot } from 'react-dom/client';
import { EXAMPLE_QUERY, exampleHeaders, exampleVariables } from './examples';

// ---------------------------------------------------------------------------------------------
// where the API is and how this server accepts identity

/** The page is served at the API's own URL (`/graphql`, or wherever a proxy mounts it). */
const httpUrl = `${location.origin}${location.pathname}`;
const wsUrl = httpUrl.replace(/^http/, 'ws');

/** Written by the server into the page: `dev` when x-user-id is accepted, `jwt` otherwise. */
const identityMode = document.querySelector<HTMLMetaElement>('meta[name="vision-path-identity"]')?.content === 'jwt' ? 'jwt' : 'dev';
const defaultHeaders = exampleHeaders(identityMode === 'dev');

/** A random UUID, also where crypto.randomUUID is missing (plain http on another host). */
function uuid(): string {
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[6] = (b[6]! & 0x0f) | 0x40;
  b[8] = (b[8]! & 0x3f) | 0x80;
  const h = [...b].map((x) => x.toString(16).padStart(2, '0')).join('');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

/**
 * The Headers tab as sent: lower-case names (the WebSocket reads `x-user-id` and
 * `authorization` from connectionParams), empty values left out, a bare JWT given its `Bearer `.
 */
function normalizeHeaders(raw: Record<string, unknown> | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, value] of Object.entries(raw ?? {})) {
    if (value === undefined || value === null) continue;
    const text = String(value).trim();
    if (!text) continue;
    out[name.toLowerCase()] = text;
  }
  if (out.authorization && !/^bearer\s/i.test(out.authorization) && /^[\w-]+\.[\w-]+\.[\w-]*$/.test(out.authorization)) {
    out.authorization = `Bearer ${out.authorization}`;
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// the editors, reached from outside React (the fetcher fills variables in)

const editors: { variables?: MonacoEditor; headers?: MonacoEditor } = {};
const visionCreated = new EventTarget();

function currentVariables(): Record<string, unknown> | undefined {
  try {
    const parsed = tryParseJSONC(editors.variables?.getValue());
    return parsed && typeof parsed === 'object' ? (parsed as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

function currentHeaders(): Record<string, string> {
  try {
    return normalizeHeaders(tryParseJSONC(editors.headers?.getValue()) as Record<string, unknown> | undefined);
  } catch {
    return {};
  }
}

/** Sets one variable in the Variables tab (kept as JSON; left alone when it does not parse). */
function setVariable(name: string, value: unknown): void {
  const editor = editors.variables;
  const vars = currentVariables();
  if (!editor || (!vars && editor.getValue().trim())) return;
  editor.setValue(JSON.stringify({ ...vars, [name]: value }, null, 2));
}

/** Renders nothing: hands the editors GraphiQL created to the code above. */
function EditorBridge() {
  const variableEditor = useGraphiQL((s) => s.variableEditor);
  const headerEditor = useGraphiQL((s) => s.headerEditor);
  useEffect(() => {
    editors.variables = variableEditor;
    editors.headers = headerEditor;
  }, [variableEditor, headerEditor]);
  return null;
}

// ---------------------------------------------------------------------------------------------
// fetcher: HTTP for queries and mutations, graphql-ws for subscriptions

const baseFetcher = createGraphiQLFetcher({ url: httpUrl, subscriptionUrl: wsUrl, enableIncrementalDelivery: false });

const fetcher: Fetcher = async (params: FetcherParams, opts?: FetcherOpts) => {
  const result = await baseFetcher(params, { ...opts, headers: normalizeHeaders(opts?.headers) });
  // a created vision becomes the visionId of the other examples; a sent message gets a new key
  const data = (result as { data?: Record<string, any> } | null)?.data;
  if (data?.createVision?.id) {
    setVariable('visionId', data.createVision.id);
    visionCreated.dispatchEvent(new CustomEvent('vision', { detail: data.createVision.id }));
  }
  if (data?.sendMessage && 'clientMessageId' in (currentVariables() ?? {})) setVariable('clientMessageId', uuid());
  return result;
};

// ---------------------------------------------------------------------------------------------
// "Live reply" panel: replyDelta and messageAdded of one vision while the editor sends

interface Line {
  key: string;
  who: string;
  text: string;
  state: string;
}

const MESSAGE_ADDED = `subscription PlaygroundMessages($visionId: ID!) {
  messageAdded(visionId: $visionId) { id sender state content }
}`;
const REPLY_DELTA = `subscription PlaygroundReply($visionId: ID!) {
  replyDelta(visionId: $visionId) { replyId seq delta done state }
}`;

function LiveReplyPanel() {
  const [visionId, setVisionId] = useState(() => {
    const v = currentVariables()?.visionId;
    return typeof v === 'string' && !v.includes(' ') ? v : '';
  });
  const [watching, setWatching] = useState<string | null>(null);
  const [lines, setLines] = useState<Line[]>([]);
  const [status, setStatus] = useState('');
  const client = useRef<Client | null>(null);
  // after a reload the panel may be open before the Variables editor exists
  const variableEditor = useGraphiQL((st) => st.variableEditor);
  useEffect(() => {
    if (!variableEditor) return;
    let v: unknown;
    try {
      v = (tryParseJSONC(variableEditor.getValue()) as { visionId?: unknown } | undefined)?.visionId;
    } catch {
      return;
    }
    if (typeof v === 'string' && v && !v.includes(' ')) setVisionId((cur) => cur || v);
  }, [variableEditor]);

  useEffect(() => {
    const onVision = (e: Event) => {
      if (!client.current) setVisionId((e as CustomEvent<string>).detail);
    };
    visionCreated.addEventListener('vision', onVision);
    return () => visionCreated.removeEventListener('vision', onVision);
  }, []);

  useEffect(() => {
    if (!watching) return;
    const c = createClient({ url: wsUrl, connectionParams: currentHeaders(), lazy: false, retryAttempts: 0 });
    client.current = c;
    setStatus('connecting…');
    c.on('connected', () => setStatus(`watching ${watching}`));
    c.on('closed', (e) => {
      const ev = e as { code?: number; reason?: string };
      if (ev.code && ev.code !== 1000) setStatus(`socket closed: ${ev.code} ${ev.reason ?? ''}`);
    });
    const upsert = (line: Line, append: boolean) =>
      setLines((prev) => {
        const i = prev.findIndex((l) => l.key === line.key);
        if (i < 0) return [...prev, line].slice(-50);
        const next = prev.slice();
        next[i] = { ...line, text: append ? prev[i]!.text + line.text : line.text || prev[i]!.text };
        return next;
      });
    const fail = (err: unknown) => setStatus(`error: ${Array.isArray(err) ? err.map((x) => x.message).join('; ') : String((err as Error)?.message ?? (err as { reason?: string })?.reason ?? err)}`);
    const stopMessages = c.subscribe<{ messageAdded: { id: string; sender: string; state: string; content: string } }>(
      { query: MESSAGE_ADDED, variables: { visionId: watching } },
      {
        next: ({ data, errors }) => {
          if (errors?.length) return fail(errors);
          const m = data?.messageAdded;
          if (m) upsert({ key: m.id, who: m.sender.toLowerCase(), text: m.content, state: m.state }, false);
        },
        error: fail,
        complete: () => undefined,
      },
    );
    const stopReply = c.subscribe<{ replyDelta: { replyId: string; seq: number; delta: string; done: boolean; state: string } }>(
      { query: REPLY_DELTA, variables: { visionId: watching } },
      {
        next: ({ data, errors }) => {
          if (errors?.length) return fail(errors);
          const d = data?.replyDelta;
          if (d) upsert({ key: d.replyId, who: 'assistant', text: d.delta, state: d.done ? d.state : 'STREAMING' }, true);
        },
        error: fail,
        complete: () => undefined,
      },
    );
    return () => {
      stopMessages();
      stopReply();
      void c.dispose();
      client.current = null;
    };
  }, [watching]);

  const start = () => {
    setLines([]);
    setWatching(visionId.trim() || null);
  };
  const stop = () => {
    setWatching(null);
    setStatus('');
  };

  return (
    <div className="vp-live">
      <div className="graphiql-doc-explorer-title">Live reply</div>
      <p className="vp-live-help">
        Watches <code>messageAdded</code> and <code>replyDelta</code> of one vision over graphql-ws (with the identity in the Headers
        tab) while you run <code>SendMessage</code> in the editor. Closing this panel stops watching.
      </p>
      <div className="vp-live-row">
        <input
          aria-label="Vision id to watch"
          placeholder="vision id (CreateVision fills it in)"
          value={visionId}
          disabled={!!watching}
          onChange={(e) => setVisionId(e.target.value)}
        />
        {watching ? (
          <button type="button" className="graphiql-button" onClick={stop} aria-label="Stop watching">
            <StopIcon /> Stop
          </button>
        ) : (
          <button type="button" className="graphiql-button" onClick={start} disabled={!visionId.trim()} aria-label="Watch vision">
            <PlayIcon /> Watch
          </button>
        )}
      </div>
      {status && <div className="vp-live-status">{status}</div>}
      <ol className="vp-live-lines" aria-label="Live dialog">
        {lines.map((l) => (
          <li key={l.key} className={`vp-live-${l.who}`} data-state={l.state}>
            <span className="vp-live-who">
              {l.who}
              {l.state !== 'COMPLETE' ? ` · ${l.state.toLowerCase()}` : ''}
            </span>
            <span className="vp-live-text">{l.text}</span>
          </li>
        ))}
      </ol>
    </div>
  );
}

const LIVE_REPLY_PLUGIN: GraphiQLPlugin = {
  title: 'Live reply',
  icon: () => (
    <svg viewBox="0 0 24 24" width="1em" height="1em" fill="none" stroke="currentColor" strokeWidth="1.5" aria-hidden="true">
      <path d="M4 5h16v10H9l-5 4z" strokeLinejoin="round" />
      <path d="M8 9h8M8 12h5" strokeLinecap="round" />
    </svg>
  ),
  content: LiveReplyPanel,
};

// ---------------------------------------------------------------------------------------------
// storage: this playground's own localStorage keys (other GraphiQLs on this origin keep theirs)

const PREFIX = 'vision-path-playground:';
const storage: Storage = {
  getItem: (key) => localStorage.getItem(PREFIX + key),
  setItem: (key, value) => localStorage.setItem(PREFIX + key, value),
  removeItem: (key) => localStorage.removeItem(PREFIX + key),
  clear() {
    for (const key of Object.keys(localStorage)) if (key.startsWith(PREFIX)) localStorage.removeItem(key);
  },
  get length() {
    return Object.keys(localStorage).filter((k) => k.startsWith(PREFIX)).length;
  },
};

/**
 * A first visit starts with the examples; later visits with what was left (GraphiQL's tabs).
 * Headers are kept across reloads with the development identity (the preset would be lost
 * otherwise), not when the server wants JWTs: a pasted token stays out of localStorage unless
 * the settings dialog says so.
 */
const firstVisit = storage.getItem('graphiql:tabState') === null;

/**
 * GraphiQL restores the tab whose contents equal its separately stored query, variables and
 * headers, and opens a new empty tab when none does; the query is stored only when typed, so a
 * tab filled by the examples (or by this page) would come back as a second, empty tab. The
 * stored values are made those of the active tab first.
 */
function alignStoredEditorsWithActiveTab(): void {
  try {
    const state = JSON.parse(storage.getItem('graphiql:tabState') ?? 'null') as {
      activeTabIndex?: number;
      tabs?: { query?: string | null; variables?: string | null; headers?: string | null }[];
    } | null;
    const tab = state?.tabs?.[state.activeTabIndex ?? 0];
    if (!tab) return;
    for (const key of ['query', 'variables', 'headers'] as const) {
      const value = tab[key];
      if (typeof value === 'string' && value) storage.setItem(`graphiql:${key}`, value);
      else if (key !== 'headers') storage.removeItem(`graphiql:${key}`);
    }
  } catch {
    // unreadable state: GraphiQL starts afresh by itself
  }
}
if (!firstVisit) alignStoredEditorsWithActiveTab();
const initial = firstVisit ? { initialQuery: EXAMPLE_QUERY, initialVariables: exampleVariables(uuid()), initialHeaders: defaultHeaders } : {};

const PLUGINS = [HISTORY_PLUGIN, LIVE_REPLY_PLUGIN];

function Playground() {
  return (
    <GraphiQL
      fetcher={fetcher}
      storage={storage}
      plugins={PLUGINS}
      {...initial}
      defaultQuery={EXAMPLE_QUERY}
      defaultHeaders={defaultHeaders}
      shouldPersistHeaders={identityMode === 'dev'}
      defaultEditorToolsVisibility="variables"
      isHeadersEditorEnabled
      showPersistHeadersSettings
    >
      <GraphiQL.Logo>Vision Path</GraphiQL.Logo>
      <GraphiQL.Footer>
        <EditorBridge />
        <div className="vp-footer">
          {identityMode === 'dev'
            ? 'Identity: the Headers tab (x-user-id in development, or Authorization: Bearer <JWT>).'
            : 'Identity: paste a JWT into the Authorization header (Headers tab).'}{' '}
          Subscriptions: graphql-ws on this URL.
        </div>
      </GraphiQL.Footer>
    </GraphiQL>
  );
}

createRoot(document.getElementById('root')!).render(
  <StrictMode>
    <Playground />
  </StrictMode>,
);
