import { useApolloClient, useQuery } from '@apollo/client/react';
import { useState } from 'react';
import { describeError, type ShownError } from './errors';
import { ErrorBanner } from './ErrorBanner';
import { CreateVisionDocument, VisionsDocument } from './gql/graphql';
import { STATUS_LABEL } from './VisionView';

/** The caller's visions (most recently updated first) and the form that creates one. */
export function VisionList({ selected, onSelect }: { selected: string | null; onSelect(id: string): void }) {
  const client = useApolloClient();
  const [showDeleted, setShowDeleted] = useState(false);
  const [title, setTitle] = useState('');
  const [creating, setCreating] = useState(false);
  const [error, setError] = useState<ShownError | null>(null);
  const list = useQuery(VisionsDocument, {
    variables: { first: 100, status: showDeleted ? ['ACTIVE', 'FROZEN', 'DELETED'] : null },
    fetchPolicy: 'cache-and-network',
  });

  const create = async () => {
    setCreating(true);
    setError(null);
    try {
      // no title: the server names it "Визия от DD.MM.YYYY"
      const t = title.trim();
      const r = await client.mutate({
        mutation: CreateVisionDocument,
        variables: { input: t ? { title: t } : {} },
        refetchQueries: ['Visions'],
        awaitRefetchQueries: true,
      });
      setTitle('');
      if (r.data) onSelect(r.data.createVision.id);
    } catch (err) {
      setError(describeError(err));
    } finally {
      setCreating(false);
    }
  };

  const edges = list.data?.visions.edges ?? [];
  return (
    <nav className="visions" data-testid="visions">
      <form
        className="create"
        onSubmit={(e) => {
          e.preventDefault();
          void create();
        }}
      >
        <input data-testid="new-vision-title" value={title} maxLength={200} placeholder="Название (необязательно)" onChange={(e) => setTitle(e.target.value)} />
        <button type="submit" data-testid="create-vision" disabled={creating}>
          Новая визия
        </button>
      </form>
      {error && <ErrorBanner error={error} onClose={() => setError(null)} />}
      {list.error && <ErrorBanner error={describeError(list.error)} />}
      <ul>
        {edges.map(({ node }) => (
          <li key={node.id} data-testid="vision-item" data-id={node.id} data-status={node.status} className={node.id === selected ? 'selected' : ''}>
            <a
              href={`#/v/${node.id}`}
              onClick={(e) => {
                e.preventDefault();
                onSelect(node.id);
              }}
            >
              <span className="title">{node.title}</span>
              {node.status !== 'ACTIVE' && <span className={`status ${node.status.toLowerCase()}`}>{STATUS_LABEL[node.status]}</span>}
              {node.lastMessage && <span className="preview">{node.lastMessage.content.slice(0, 80)}</span>}
            </a>
          </li>
        ))}
      </ul>
      {list.data && edges.length === 0 && <p className="muted">Визий пока нет.</p>}
      <label className="muted toggle">
        <input type="checkbox" data-testid="show-deleted" checked={showDeleted} onChange={(e) => setShowDeleted(e.target.checked)} /> показать удалённые
      </label>
    </nav>
  );
}
