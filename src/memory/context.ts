import type { ChatCompletionMessageParam } from 'openai/resources/chat/completions';
import type { SqlRunner } from '../db/sql';
import type { Tokenizer } from '../llm/tokenizer';
import { VisionMessage } from '../vision/message.entity';
import { MessageType } from '../vision/vision.enums';
import { findSummaryAndWindow, storeMessageTokens, type SummaryAndWindow } from './memory.queries';
import type { VisionSummary } from './summary.entity';

/** The heading of the summary's system message; part of the stable prefix. */
export const SUMMARY_HEADING = 'Summary of the path so far (earlier messages, in order):\n';

/** The heading of the recalled moments' system message. */
export const RECALL_HEADING = 'Earlier moments of this path, recalled because they bear on the latest message (oldest first):';

/** Recalled messages may take this share of the room at most; the window keeps the rest. */
const RECALL_SHARE = 0.25;
/** Longest recalled message, in tokens (a longer one keeps its beginning). */
const RECALL_MESSAGE_TOKENS = 400;

/**
 * Finds older messages that bear on `latest`, outside the window (older than `beforeMessageId`),
 * best first (search/recall.ts).
 */
/** `windowIds`: every message from `beforeMessageId` on (the window could hold them), which recall leaves out. */
export type Recaller = (latest: VisionMessage, beforeMessageId: string, windowIds: string[]) => Promise<{ message: VisionMessage; score: number }[]>;

export interface ContextRules {
  /** CONTEXT_TOKEN_BUDGET */
  budgetTokens: number;
  /** REPLY_TOKEN_RESERVE */
  replyReserveTokens: number;
  /** MAX_MESSAGES: the window's largest size. */
  maxMessages: number;
  /** VISION_SYSTEM_PROMPT; `{title}` is replaced by the vision's title. */
  systemPrompt: string;
  /**
   * Tokens of the tool definitions sent with every reply (the document tool), an estimate: the
   * tokenizer's count of their JSON (providers do not publish how they render tools). Kept out of
   * the messages' room. @default 0
   */
  toolTokens?: number;
}

/** What one request to the model carries, and how it was chosen. */
export interface ModelContextPlan {
  budgetTokens: number;
  /** Tokens of the request's messages as the model's tokenizer counts them. */
  totalTokens: number;
  /** The tool definitions' estimate that came off the room ({@link ContextRules.toolTokens}). */
  toolTokens: number;
  summary: VisionSummary | null;
  recalled: VisionMessage[];
  /** Oldest first; a message cut to fit carries its cut content. */
  window: VisionMessage[];
  /** System prompt, summary, recalled, window: what changes least comes first (prompt caching). */
  messages: ChatCompletionMessageParam[];
  /** Eligible messages after the summary's coverage that are not in the window: the summary's next step. */
  outside: boolean;
}

export function summaryMessage(s: VisionSummary): string {
  return SUMMARY_HEADING + s.content;
}

/** The recalled moments as one system message, each with its date and who said it. */
export function recalledMessage(list: VisionMessage[]): string {
  const lines = list.map((m) => `[${m.createdAt.toISOString().slice(0, 10)}] ${m.sender === 'user' ? 'Person' : 'Coach'}: ${m.content}`);
  return `${RECALL_HEADING}\n\n${lines.join('\n\n')}`;
}

/** Token counts of system prompts (one per vision title), by encoding: the same text is counted on every send of a vision. */
const systemCounts = new Map<string, number>();

function systemTokens(tok: Tokenizer, system: string): number {
  const key = `${tok.encoding}\u0000${system}`;
  let n = systemCounts.get(key);
  if (n === undefined) {
    // a bound, not an LRU: when full it starts again (a vision's sends come in bursts, so the
    // fresh map soon holds the active ones again)
    if (systemCounts.size >= 2000) systemCounts.clear();
    systemCounts.set(key, (n = tok.count(system)));
  }
  return n;
}

/**
 * Chooses what the model is sent for a vision: the system prompt with the title, the rolling
 * summary (as a system message right after it, so the prefix stays byte-identical between
 * summary updates), then the newest eligible messages after the summary's coverage that fit
 * CONTEXT_TOKEN_BUDGET minus REPLY_TOKEN_RESERVE, at most MAX_MESSAGES. The newest message is
 * always included: one longer than what is left keeps its end. With a `recall`, older messages that
 * bear on the latest user message come after the summary (at most a quarter of the room). One
 * indexed statement (plus recall's), whatever the length of the dialog, or none with `read` (the
 * same rows, read by the dialog's turn); token counts are read, not computed (rows from before
 * counts existed are counted once and stored).
 */
export async function planContext(
  sql: SqlRunner,
  tok: Tokenizer,
  rules: ContextRules,
  vision: { id: string; title: string },
  recall?: Recaller,
  read?: SummaryAndWindow,
): Promise<ModelContextPlan> {
  // one more than the window can hold: whether anything is left outside (`read` was read so by the dialog's turn)
  const { summary, candidates } = read ?? (await findSummaryAndWindow(sql, vision.id, rules.maxMessages + 1));
  const missing = candidates.filter((m) => m.tokens == null).map((m) => ({ id: m.id, tokens: (m.tokens = tok.count(m.content)) }));
  if (missing.length) await storeMessageTokens(sql, missing);

  const system = rules.systemPrompt.split('{title}').join(vision.title);
  let total = tok.chatBase + tok.perMessage + systemTokens(tok, system);
  if (summary) total += tok.perMessage + summary.tokens;
  const toolTokens = rules.toolTokens ?? 0;
  const room = rules.budgetTokens - rules.replyReserveTokens - toolTokens;

  // recall looks only before the oldest message the window could hold, and only when something is there
  const recalled: VisionMessage[] = [];
  const latestUser = candidates.find((m) => m.sender === 'user');
  const floorAt = Math.min(candidates.length, rules.maxMessages) - 1;
  const windowFloor = candidates[floorAt];
  if (recall && latestUser && windowFloor && (summary || candidates.length > rules.maxMessages)) {
    const found = await recall(latestUser, windowFloor.id, candidates.slice(0, floorAt + 1).map((m) => m.id));
    let share = Math.floor((room - total) * RECALL_SHARE) - tok.perMessage - tok.count(RECALL_HEADING);
    for (const { message } of found) {
      const content = tok.head(message.content, RECALL_MESSAGE_TOKENS).replace(/\uFFFD+$/, '');
      const cost = tok.count(content) + 12;
      if (cost > share) continue;
      share -= cost;
      recalled.push(Object.setPrototypeOf({ ...message, content }, VisionMessage.prototype) as VisionMessage);
    }
    recalled.sort((a, b) => a.createdAt.getTime() - b.createdAt.getTime() || (a.id < b.id ? -1 : 1));
    if (recalled.length) total += tok.perMessage + tok.count(recalledMessage(recalled));
  }

  const chosen: VisionMessage[] = [];
  for (const m of candidates.slice(0, rules.maxMessages)) {
    const cost = tok.perMessage + m.tokens!;
    if (total + cost <= room) {
      chosen.push(m);
      total += cost;
      continue;
    }
    if (chosen.length === 0) {
      // the latest message never drops out: it keeps as much of its end as fits
      const content = tok.tail(m.content, Math.max(1, room - total - tok.perMessage)).replace(/^\uFFFD+/, '');
      const tokens = tok.count(content);
      chosen.push(Object.setPrototypeOf({ ...m, content, tokens }, VisionMessage.prototype) as VisionMessage);
      total += tok.perMessage + tokens;
    }
    break;
  }
  const window = chosen.reverse();
  const messages: ChatCompletionMessageParam[] = [{ role: 'system', content: system }];
  if (summary) messages.push({ role: 'system', content: summaryMessage(summary) });
  if (recalled.length) messages.push({ role: 'system', content: recalledMessage(recalled) });
  for (const m of window) messages.push({ role: m.sender === 'user' ? 'user' : 'assistant', content: withFileNote(m) });
  return {
    budgetTokens: rules.budgetTokens,
    totalTokens: total,
    toolTokens,
    summary,
    recalled,
    window,
    messages,
    outside: candidates.length > window.length,
  };
}

/** A document the coach made is shown to the model by its name (its content is not resent). */
function withFileNote(m: VisionMessage): string {
  const name = m.type === MessageType.FILE_RESULT ? m.payload?.filename : undefined;
  return typeof name === 'string' ? `${m.content}\n\n[document attached: ${name}]` : m.content;
}
