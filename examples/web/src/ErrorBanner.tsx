import type { ShownError } from './errors';

/** An error with its contract code (UNAUTHENTICATED, VISION_BUSY, LLM_FAILED, …). */
export function ErrorBanner({ error, onClose }: { error: ShownError; onClose?: () => void }) {
  return (
    <div className="error" role="alert" data-testid="error" data-code={error.code}>
      <code data-testid="error-code">{error.code}</code>
      {error.reason && <code data-testid="error-reason">{error.reason}</code>}
      <span>{error.message}</span>
      {onClose && (
        <button type="button" className="link" onClick={onClose} aria-label="Закрыть">
          ×
        </button>
      )}
    </div>
  );
}
