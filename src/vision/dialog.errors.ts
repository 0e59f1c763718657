import { AppError, ErrorCode } from '../graphql/errors';
import type { ModelFailureReason } from '../tokenscount/call-model';

/** The errors a turn answers with when its reply failed; the user message is stored either way. */

export class LlmFailedError extends AppError {
  constructor(reason: ModelFailureReason | 'interrupted', userMessageId: string, replyId: string) {
    super(`The model call failed (${reason}); your message is kept and retryReply asks again`, ErrorCode.LLM_FAILED, {
      reason,
      userMessageId,
      replyId,
    });
  }
}

/** QUOTA_EXCEEDED for a turn whose reply a token budget refused (the user message is stored). */
export class QuotaRefusedError extends AppError {
  constructor(budget: Record<string, unknown>, userMessageId: string, replyId: string) {
    super(
      `Your ${budget.period === 'DAY' ? 'daily' : 'monthly'} token budget is spent; your message is kept and retryReply asks again after ${String(budget.resetsAt)}`,
      ErrorCode.QUOTA_EXCEEDED,
      { period: budget.period, limitTokens: budget.limitTokens, usedTokens: budget.usedTokens, resetsAt: budget.resetsAt, userMessageId, replyId },
    );
  }
}
