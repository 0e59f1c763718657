import { useApolloClient, useQuery, useSubscription } from '@apollo/client/react';
import { useCallback, useEffect, useLayoutEffect, useMemo, useRef, useState, useSyncExternalStore } from 'react';
import { newClientMessageId } from './config';
import { describeError, type ShownError } from './errors';
import {
  MessageAddedDocument,
  RenameVisionDocument,
  ReplyDeltaDocument,
  RetryReplyDocument,
  SendMessageDocument,
  SetVisionStatusDocument,
  StopReplyDocument,
  VisionFeedDocument,
  type MessageState,
  type VisionFeedQuery,
  type VisionStatus,
} from './gql/graphql';
import { LiveReplies, type LiveReply, type ResumePoint } from './live';
import { ErrorBanner } from './ErrorBanner';

/** Messages per page: the newest page first, then older pages on demand. */
export const PAGE_SIZE = 20;

type Edge = NonNullable<VisionFeedQuery['vision']>['messages']['edges'][number];
type Message = Edge['node'];

/** Codes after which the user message is stored (the key must not be reused for new text). */
const STORED_CODES = new Set(['LLM_FAILED', 'QUOTA_EXCEEDED']);

/**
 * One vision: its title and status, the feed "question - answer - question - answer", and the
 * composer. The server is the truth: the feed is its pages (newest first, older ones prepended
 * with `last`/`before`), newer messages are fetched after the last settled one (`first`/`after`),
 * and a reply in progress is shown from its `replyDelta` events until the stored message is final.
 */
export function VisionView({ visionId, reconnects = 0 }: { visionId: string; reconnects?: number }) {
  const client = useApolloClient();
  const feed = useQuery(VisionFeedDocument, {
    variables: { id: visionId, last: PAGE_SIZE },
    fetchPolicy: 'network-only',
    nextFetchPolicy: 'cache-first',
  });
  const vision = feed.data?.vision ?? null;
  const edges = useMemo(() => vision?.messages.edges ?? [], [vision]);
  const edgesRef = useRef<Edge[]>(edges);
  edgesRef.current = edges;
  const feedIds = useMemo(() => new Set(edges.map((e) => e.node.id)), [edges]);
  const feedIdsRef = useRef(feedIds);
  feedIdsRef.current = feedIds;

  const [error, setError] = useState<ShownError | null>(null);
  const [draft, setDraft] = useState('');
  const [pending, setPending] = useState<string | null>(null);
  const [busy, setBusy] = useState<null | 'send' | 'retry'>(null);
  const [loadingOlder, setLoadingOlder] = useState(false);
  const inFlight = useRef(false);
  const draftKey = useRef<{ text: string; id: string } | null>(null);

  // ---------------------------------------------------------------- newer messages (server truth)

  /**
   * One page from the network, written into the cache; the relayStylePagination field policy
   * splices it into the vision's list by its `after`/`before` argument, and the feed's query sees
   * the change. (`client.query` rather than the query's own `fetchMore`: two fetchMore calls in a
   * row can leave the watching query with the first result, since Apollo Client 4 drops a cache
   * notification that arrives while the query has another operation in flight.)
   */
  const fetchPage = useCallback(
    (page: { first?: number; after?: string; last?: number; before?: string }) =>
      client.query({
        query: VisionFeedDocument,
        variables: { id: visionId, first: null, after: null, last: null, before: null, ...page },
        fetchPolicy: 'network-only',
      }),
    [client, visionId],
  );

  const tail = useRef<Promise<void>>(Promise.resolve());
  /** Fetches what is newer than the last settled message (a reply still streaming is fetched again). */
  const syncTail = useCallback((): Promise<void> => {
    const run = async () => {
      const current = edgesRef.current;
      let anchor: string | undefined;
      for (let i = current.length - 1; i >= 0; i--) {
        if (current[i]!.node.state !== 'STREAMING') {
          anchor = current[i]!.cursor;
          break;
        }
      }
      if (!anchor) {
        // nothing settled yet: the newest page again
        await fetchPage({ last: PAGE_SIZE });
        return;
      }
      for (let pages = 0; pages < 10; pages++) {
        const r = await fetchPage({ after: anchor, first: 100 });
        const info = r.data?.vision?.messages.pageInfo;
        if (!info?.hasNextPage || !info.endCursor) break;
        anchor = info.endCursor;
      }
    };
    tail.current = tail.current.then(run, run).catch((err: unknown) => setError(describeError(err)));
    return tail.current;
  }, [fetchPage]);

  // ---------------------------------------------------------------- the reply as it streams

  const live = useMemo(() => new LiveReplies(), []);
  const liveReplies = useSyncExternalStore(live.subscribe, live.getSnapshot);
  // undefined until the first page is here: a reply streaming at load is resumed from its first chunk
  const [resume, setResume] = useState<ResumePoint | null | undefined>(undefined);
  useEffect(() => {
    if (resume !== undefined || !vision) return;
    const last = vision.messages.edges.at(-1)?.node;
    setResume(last && last.state === 'STREAMING' ? { replyId: last.id, afterSeq: 0 } : null);
  }, [vision, resume]);

  useSubscription(ReplyDeltaDocument, {
    variables: resume ? { visionId, replyId: resume.replyId, afterSeq: resume.afterSeq } : { visionId },
    skip: resume === undefined,
    fetchPolicy: 'no-cache',
    onData: ({ data }) => {
      const event = data.data?.replyDelta;
      if (!event) return;
      const point = live.apply(event);
      if (point) setResume(point);
    },
    onError: (err) => setError(describeError(err)),
  });

  // every committed message: final replies update the cache by id; one the feed lacks (another
  // tab, another device) is fetched, unless this tab's own send is running (it fetches at the end)
  useSubscription(MessageAddedDocument, {
    variables: { visionId },
    skip: !vision,
    onData: ({ data }) => {
      const m = data.data?.messageAdded;
      if (m && !feedIdsRef.current.has(m.id) && !inFlight.current) void syncTail();
    },
  });

  // back after the WebSocket was lost: messageAdded events of the gap are gone, so the feed
  // fetches what is newer than its last settled message (a reply still streaming comes back
  // through the resumed replyDelta), and the list its summaries
  const seenReconnects = useRef(reconnects);
  useEffect(() => {
    if (reconnects === seenReconnects.current) return;
    seenReconnects.current = reconnects;
    if (!inFlight.current) void syncTail();
    void client.refetchQueries({ include: ['Visions'] });
  }, [reconnects, syncTail, client]);

  // replies the feed shows in their final state need no live text any more
  useEffect(() => {
    const final = edges.filter((e) => e.node.state !== 'STREAMING' && liveReplies.has(e.node.id)).map((e) => e.node.id);
    if (final.length) live.forget(final);
  }, [edges, liveReplies, live]);

  // ---------------------------------------------------------------- actions

  const afterTurn = async () => {
    inFlight.current = false;
    await syncTail();
    setPending(null);
    setBusy(null);
    void client.refetchQueries({ include: ['Visions'] });
  };

  const send = async () => {
    const content = draft.trim();
    if (!content || busy) return;
    // the same text sent again after a lost answer reuses its key: the server answers the first result
    if (!draftKey.current || draftKey.current.text !== content) draftKey.current = { text: content, id: newClientMessageId() };
    const clientMessageId = draftKey.current.id;
    setError(null);
    setPending(content);
    setBusy('send');
    inFlight.current = true;
    try {
      await client.mutate({ mutation: SendMessageDocument, variables: { input: { visionId, content, clientMessageId } } });
      setDraft('');
      draftKey.current = null;
    } catch (err) {
      const shown = describeError(err);
      setError(shown);
      if (STORED_CODES.has(shown.code)) {
        setDraft('');
        draftKey.current = null;
      }
    } finally {
      await afterTurn();
    }
  };

  const retry = async () => {
    if (busy) return;
    setError(null);
    setBusy('retry');
    inFlight.current = true;
    try {
      await client.mutate({ mutation: RetryReplyDocument, variables: { visionId } });
    } catch (err) {
      setError(describeError(err));
    } finally {
      await afterTurn();
    }
  };

  const stop = async () => {
    try {
      await client.mutate({ mutation: StopReplyDocument, variables: { visionId } });
    } catch (err) {
      setError(describeError(err));
    }
    // this tab's own send fetches when it returns; a reply of another tab is fetched now
    if (!inFlight.current) await syncTail();
  };

  const loadOlder = async () => {
    const start = vision?.messages.pageInfo.startCursor;
    if (!start || loadingOlder) return;
    setLoadingOlder(true);
    keepScroll.current = true;
    try {
      await fetchPage({ before: start, last: PAGE_SIZE });
    } catch (err) {
      setError(describeError(err));
    } finally {
      setLoadingOlder(false);
    }
  };

  // ---------------------------------------------------------------- scrolling

  const feedBox = useRef<HTMLDivElement>(null);
  const keepScroll = useRef(false);
  const stick = useRef(true);
  const lastHeight = useRef(0);
  const liveLength = [...liveReplies.values()].reduce((n, r) => n + r.text.length, 0);
  useLayoutEffect(() => {
    const box = feedBox.current;
    if (!box) return;
    if (keepScroll.current) {
      // older messages were prepended: keep what the reader was looking at in place
      box.scrollTop += box.scrollHeight - lastHeight.current;
      keepScroll.current = false;
    } else if (stick.current) {
      box.scrollTop = box.scrollHeight;
    }
    lastHeight.current = box.scrollHeight;
  }, [edges, pending, liveLength]);

  // ---------------------------------------------------------------- render

  if (feed.error && !vision) return <ErrorBanner error={describeError(feed.error)} />;
  if (!vision) {
    if (feed.loading) return <p className="muted" data-testid="feed-loading">Загрузка…</p>;
    return <p data-testid="vision-missing">Визия не найдена (или принадлежит другому человеку).</p>;
  }

  const lastNode = edges.at(-1)?.node;
  const unseenLive = [...liveReplies.values()].filter((r) => !feedIds.has(r.replyId)).sort((a, b) => a.order - b.order);
  const streaming = busy !== null || lastNode?.state === 'STREAMING' || [...liveReplies.values()].some((r) => !r.done);
  const active = vision.status === 'ACTIVE';
  const canRetry = active && !streaming && lastNode?.sender === 'ASSISTANT' && lastNode.state === 'FAILED';

  return (
    <section className="vision">
      <VisionHeader id={vision.id} title={vision.title} status={vision.status} onError={setError} />
      <div
        className="feed"
        ref={feedBox}
        data-testid="feed"
        onScroll={(e) => {
          const box = e.currentTarget;
          // follow the newest text only while the reader is at the bottom
          stick.current = box.scrollHeight - box.scrollTop - box.clientHeight < 48;
        }}
      >
        {vision.messages.pageInfo.hasPreviousPage && (
          <button type="button" className="older" data-testid="load-older" disabled={loadingOlder} onClick={() => void loadOlder()}>
            {loadingOlder ? 'Загрузка…' : 'Показать более ранние'}
          </button>
        )}
        <p className="muted count" data-testid="feed-count">
          показано {edges.length} из {vision.messages.totalCount}
        </p>
        {edges.map(({ node }) => (
          <MessageBlock key={node.id} message={node} live={liveReplies.get(node.id)} />
        ))}
        {pending !== null && (
          <article className="block user" data-testid="message" data-sender="USER" data-state="PENDING">
            <header>Вы</header>
            <div className="content" data-testid="message-content">
              {pending}
            </div>
          </article>
        )}
        {unseenLive.map((r) => (
          <LiveBlock key={r.replyId} reply={r} />
        ))}
        {edges.length === 0 && pending === null && unseenLive.length === 0 && (
          <p className="muted" data-testid="feed-empty">
            Пока пусто. Напишите, куда вы идёте.
          </p>
        )}
      </div>
      {error && <ErrorBanner error={error} onClose={() => setError(null)} />}
      <form
        className="composer"
        onSubmit={(e) => {
          e.preventDefault();
          void send();
        }}
      >
        <textarea
          data-testid="composer-input"
          value={draft}
          placeholder={active ? 'Ваш вопрос или мысль… (Ctrl+Enter — отправить)' : 'Визия не активна: восстановите её, чтобы писать'}
          disabled={!active}
          rows={3}
          onChange={(e) => setDraft(e.target.value)}
          onKeyDown={(e) => {
            if (e.key === 'Enter' && (e.ctrlKey || e.metaKey)) {
              e.preventDefault();
              void send();
            }
          }}
        />
        <div className="actions">
          <button type="submit" data-testid="send" disabled={!active || busy !== null || draft.trim() === ''}>
            Отправить
          </button>
          {streaming && (
            <button type="button" data-testid="stop" className="danger" onClick={() => void stop()}>
              Стоп
            </button>
          )}
          {canRetry && (
            <button type="button" data-testid="retry" onClick={() => void retry()}>
              Повторить ответ
            </button>
          )}
        </div>
      </form>
    </section>
  );
}

const STATE_LABEL: Record<MessageState, string> = {
  STREAMING: 'пишет…',
  COMPLETE: '',
  STOPPED: 'остановлено',
  FAILED: 'ошибка',
};

function MessageBlock({ message, live }: { message: Message; live?: LiveReply }) {
  // a reply still streaming shows what arrived over the subscription (the stored text lags by a flush)
  const useLive = message.state === 'STREAMING' && live?.whole && live.text.length >= message.content.length;
  const content = useLive ? live!.text : message.content;
  const state = message.state === 'STREAMING' && live?.done ? live.state : message.state;
  const failure = (message.payload as { error?: { reason?: string } } | null)?.error?.reason;
  const who = message.sender === 'USER' ? 'Вы' : message.sender === 'ASSISTANT' ? 'Коуч' : 'Система';
  return (
    <article
      className={`block ${message.sender.toLowerCase()} ${state.toLowerCase()}`}
      data-testid="message"
      data-id={message.id}
      data-sender={message.sender}
      data-state={state}
    >
      <header>
        {who}
        {message.type !== 'TEXT' && <span className="tag">{message.type}</span>}
        {STATE_LABEL[state] && (
          <span className="tag" data-testid="message-state">
            {STATE_LABEL[state]}
            {state === 'FAILED' && failure ? `: ${failure}` : ''}
          </span>
        )}
        <time dateTime={message.createdAt}>{new Date(message.createdAt).toLocaleString('ru-RU')}</time>
      </header>
      <div className="content" data-testid="message-content">
        {content}
      </div>
    </article>
  );
}

/** A reply known only from its events so far (this tab's own send, before the feed has it). */
function LiveBlock({ reply }: { reply: LiveReply }) {
  const state = reply.done ? reply.state : 'STREAMING';
  return (
    <article className={`block assistant ${state.toLowerCase()}`} data-testid="message" data-id={reply.replyId} data-sender="ASSISTANT" data-state={state} data-live="true">
      <header>
        Коуч
        {STATE_LABEL[state] && <span className="tag" data-testid="message-state">{STATE_LABEL[state]}</span>}
      </header>
      <div className="content" data-testid="message-content">
        {reply.whole ? reply.text : '…'}
      </div>
    </article>
  );
}

function VisionHeader(props: { id: string; title: string; status: VisionStatus; onError(e: ShownError | null): void }) {
  const client = useApolloClient();
  const [editing, setEditing] = useState(false);
  const [title, setTitle] = useState(props.title);
  const [working, setWorking] = useState(false);

  const run = async (fn: () => Promise<unknown>) => {
    setWorking(true);
    props.onError(null);
    try {
      await fn();
      return true;
    } catch (err) {
      props.onError(describeError(err));
      return false;
    } finally {
      setWorking(false);
    }
  };

  const rename = async () => {
    const ok = await run(() =>
      client.mutate({ mutation: RenameVisionDocument, variables: { id: props.id, title: title.trim() }, refetchQueries: ['Visions'] }),
    );
    if (ok) setEditing(false);
  };
  const setStatus = (status: VisionStatus) =>
    run(() => client.mutate({ mutation: SetVisionStatusDocument, variables: { id: props.id, status }, refetchQueries: ['Visions'] }));

  return (
    <header className="vision-header">
      {editing ? (
        <form
          className="rename"
          onSubmit={(e) => {
            e.preventDefault();
            void rename();
          }}
        >
          <input data-testid="rename-input" value={title} maxLength={200} autoFocus onChange={(e) => setTitle(e.target.value)} />
          <button type="submit" data-testid="rename-save" disabled={working || title.trim() === ''}>
            Сохранить
          </button>
          <button type="button" onClick={() => setEditing(false)}>
            Отмена
          </button>
        </form>
      ) : (
        <h2 data-testid="vision-title">{props.title}</h2>
      )}
      <span className={`status ${props.status.toLowerCase()}`} data-testid="vision-status">
        {STATUS_LABEL[props.status]}
      </span>
      <div className="vision-actions">
        {!editing && (
          <button
            type="button"
            data-testid="rename"
            onClick={() => {
              setTitle(props.title);
              setEditing(true);
            }}
          >
            Переименовать
          </button>
        )}
        {props.status === 'ACTIVE' && (
          <button type="button" data-testid="freeze" disabled={working} onClick={() => void setStatus('FROZEN')}>
            Заморозить
          </button>
        )}
        {props.status !== 'ACTIVE' && (
          <button type="button" data-testid="restore" disabled={working} onClick={() => void setStatus('ACTIVE')}>
            Восстановить
          </button>
        )}
        {props.status !== 'DELETED' && (
          <button type="button" data-testid="delete" className="danger" disabled={working} onClick={() => void setStatus('DELETED')}>
            Удалить
          </button>
        )}
      </div>
    </header>
  );
}

export const STATUS_LABEL: Record<VisionStatus, string> = {
  ACTIVE: 'активна',
  FROZEN: 'заморожена',
  DELETED: 'удалена',
};
