import type { OpenAI } from 'openai';
import type { PriceTable } from '../tokenscount/prices';
import type { TokenBudgets } from '../tokenscount/budgets';
import type { Metrics } from '../metrics/metrics';
import type { ChatCompletionMessageParam } from 'openai/resources/chat/completions';
import type { SqlRunner } from '../db/sql';
import { SUMMARY_PROMPT_MARKER } from '../llm/offline-responder';
import type { Tokenizer } from '../llm/tokenizer';
import type { Logger } from '../logger';
import { callModelAndLogTokens } from '../tokenscount/call-model';
import type { VisionMessage } from '../vision/message.entity';
import { planContext, summaryMessage, type ContextRules } from './context';
import { findMessagesToSummarize, findVisionState, insertSummary } from './memory.queries';
import type { VisionSummary } from './summary.entity';

/** Messages read for one summary step at most; a longer backlog takes several steps. */
const MAX_STEP_MESSAGES = 200;

export interface SummarizerDeps {
  sql: SqlRunner;
  llm: { client: OpenAI; model: string; provider: string; /** Prices of the calls' tokenscount rows. */ prices?: PriceTable; /** The clients' token budgets. */ budgets?: TokenBudgets; /** Model calls are reported here (metrics/). */ metrics?: Metrics };
  tokenizer: Tokenizer;
  rules: ContextRules & { summaryMaxTokens: number };
  timeoutMs: number;
  logger: Logger;
}

export type SummaryOutcome = 'nothing' | 'stored' | 'more' | 'lost_race';

function summaryPrompt(title: string, maxTokens: number): string {
  return (
    `${SUMMARY_PROMPT_MARKER} of a coaching dialog. The person is working toward their vision: "${title}". ` +
    'Rewrite the previous summary so that it also covers the new messages. Keep what matters for the rest of the path: ' +
    'the vision in the person\'s own words, decisions, commitments and plans (with dates), obstacles and worries, progress, and the next steps. ' +
    'Drop small talk. Write in the language the person writes in, in the third person, as plain text. ' +
    `Stay under ${maxTokens} tokens: when it grows, compress older details rather than dropping decisions. Answer with the summary only.`
  );
}

function transcript(messages: VisionMessage[]): string {
  return messages.map((m) => `${m.sender === 'user' ? 'Person' : 'Coach'}: ${m.content}`).join('\n\n');
}

/**
 * One step of a vision's rolling summary: the previous summary plus the eligible messages that
 * left the window since (never the whole history again), summarised by the model through the
 * metering wrapper (`meta.purpose: "summary"`), bounded by SUMMARY_MAX_TOKENS. A failed call
 * throws (the job is retried with back-off) and the previous summary stays in use; nothing is
 * summarised before it leaves the window; DELETED visions are skipped.
 */
export class Summarizer {
  constructor(private readonly deps: SummarizerDeps) {}

  async step(visionId: string, signal?: AbortSignal): Promise<SummaryOutcome> {
    const { sql, tokenizer: tok, rules } = this.deps;
    const vision = await findVisionState(sql, visionId);
    if (!vision || vision.status === 'deleted') return 'nothing';
    const plan = await planContext(sql, tok, rules, { id: visionId, title: vision.title });
    const oldestInWindow = plan.window[0];
    if (!plan.outside || !oldestInWindow) return 'nothing';
    const backlog = await findMessagesToSummarize(sql, visionId, plan.summary, oldestInWindow, MAX_STEP_MESSAGES);
    if (!backlog.length) return 'nothing';

    const system = summaryPrompt(vision.title, rules.summaryMaxTokens);
    const previous = plan.summary?.content ?? '(none yet: this is the start of the path)';
    // the step's input stays within the budget: prompt, previous summary, as many messages as fit
    let room = rules.budgetTokens - rules.summaryMaxTokens - tok.chatBase - 2 * tok.perMessage - tok.count(system) - tok.count(previous) - 64;
    const step: VisionMessage[] = [];
    for (const m of backlog) {
      const cost = (m.tokens ?? tok.count(m.content)) + 8;
      if (step.length > 0 && cost > room) break;
      step.push(m);
      room -= cost;
    }
    const messages: ChatCompletionMessageParam[] = [
      { role: 'system', content: system },
      { role: 'user', content: `Previous summary:\n${previous}\n\nNew messages, oldest first:\n\n${transcript(step)}` },
    ];
    const result = await callModelAndLogTokens({
      em: sql,
      client: this.deps.llm.client,
      clientId: vision.userid,
      clientType: 'user',
      provider: this.deps.llm.provider,
      model: this.deps.llm.model,
      prices: this.deps.llm.prices,
      budgets: this.deps.llm.budgets,
      metrics: this.deps.llm.metrics,
      messages,
      meta: { module: 'vision', visionid: visionId, purpose: 'summary' },
      timeoutMs: this.deps.timeoutMs,
      signal,
      maxTokens: rules.summaryMaxTokens,
      logger: this.deps.logger,
    });
    if (result.finish !== 'complete') throw new Error(`the summary call ended ${result.finish} (${result.reason ?? 'no reason'}); the previous summary stays`);
    let content = result.content.trim();
    if (!content) throw new Error('the model returned an empty summary; the previous summary stays');
    // bounded whatever the model did with max_tokens
    content = tok.head(content, rules.summaryMaxTokens - tok.count(summaryMessage({ content: '' } as VisionSummary))).replace(/\uFFFD+$/, '');
    const stored = await insertSummary(sql, {
      visionId,
      base: plan.summary,
      content,
      tokens: tok.count(summaryMessage({ content } as VisionSummary)),
      coveredMessages: (plan.summary?.coveredMessages ?? 0) + step.length,
      through: step[step.length - 1]!,
      model: this.deps.llm.model,
    });
    if (!stored) return 'lost_race';
    return step.length < backlog.length || backlog.length === MAX_STEP_MESSAGES ? 'more' : 'stored';
  }
}
