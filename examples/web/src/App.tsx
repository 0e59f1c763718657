import { ApolloProvider } from '@apollo/client/react';
import { useEffect, useState } from 'react';
import { makeClient, type AppClient, type SocketState } from './apollo';
import { graphqlHttpUrl, hasIdentity, loadIdentity, saveIdentity, type Identity } from './config';
import { VisionList } from './VisionList';
import { VisionView } from './VisionView';

/** The selected vision lives in the URL (#/v/<id>), so a reload shows the same feed. */
function useRoute(): [string | null, (id: string | null) => void] {
  const read = () => /^#\/v\/([0-9a-fA-F-]{36})$/.exec(window.location.hash)?.[1] ?? null;
  const [id, setId] = useState(read);
  useEffect(() => {
    const on = () => setId(read());
    window.addEventListener('hashchange', on);
    return () => window.removeEventListener('hashchange', on);
  }, []);
  return [id, (next) => (window.location.hash = next ? `#/v/${next}` : '')];
}

export function App() {
  const [identity, setIdentity] = useState<Identity>(loadIdentity);
  const [client, setClient] = useState<AppClient | null>(null);
  const [socket, setSocket] = useState<SocketState>('closed');
  // counts the WebSocket's returns after a loss: the open vision fetches what it missed
  const [reconnects, setReconnects] = useState(0);
  const [visionId, setVisionId] = useRoute();
  const key = `${identity.userId}\u0000${identity.token}`;

  // one client per identity; the previous one (and its WebSocket) is closed
  useEffect(() => {
    if (!hasIdentity(identity)) {
      setClient(null);
      return;
    }
    const c = makeClient(identity, (state, reconnected) => {
      setSocket(state);
      if (reconnected) setReconnects((n) => n + 1);
    });
    setClient(c);
    return () => c.dispose();
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [key]);

  return (
    <div className="app">
      <header className="top">
        <h1>Vision Path</h1>
        <IdentityForm
          identity={identity}
          onSave={(next) => {
            saveIdentity(next);
            setIdentity(next);
          }}
        />
        <span className={`socket ${socket}`} data-testid="ws-status" data-state={socket} title={graphqlHttpUrl()}>
          {socket === 'connected' ? 'онлайн' : socket === 'connecting' ? 'подключение…' : 'нет соединения'}
        </span>
      </header>
      {client ? (
        <ApolloProvider client={client.apollo}>
          <main className="layout" key={key}>
            <VisionList selected={visionId} onSelect={setVisionId} />
            {visionId ? <VisionView key={`${key}/${visionId}`} visionId={visionId} reconnects={reconnects} /> : <p className="muted empty">Выберите визию или создайте новую.</p>}
          </main>
        </ApolloProvider>
      ) : (
        <p className="muted empty" data-testid="need-identity">
          Укажите пользователя (x-user-id, только для сервера в режиме development) или токен.
        </p>
      )}
    </div>
  );
}

function IdentityForm({ identity, onSave }: { identity: Identity; onSave(i: Identity): void }) {
  const [userId, setUserId] = useState(identity.userId);
  const [token, setToken] = useState(identity.token);
  return (
    <form
      className="identity"
      onSubmit={(e) => {
        e.preventDefault();
        onSave({ userId: userId.trim(), token: token.trim() });
      }}
    >
      <input data-testid="user-id" value={userId} placeholder="x-user-id" aria-label="Пользователь (x-user-id)" onChange={(e) => setUserId(e.target.value)} />
      <input data-testid="token" value={token} placeholder="Bearer-токен (JWT)" aria-label="Токен" type="password" onChange={(e) => setToken(e.target.value)} />
      <button type="submit" data-testid="sign-in">
        Войти
      </button>
    </form>
  );
}
