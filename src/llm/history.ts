import type { ChatCompletionMessageParam } from 'openai/resources/chat/completions';

export interface HistoryItem {
  sender: 'user' | 'assistant';
  content: string;
}

/** The system prompt with the vision's title, then the window in order with roles user/assistant. */
export function toChatMessages(opts: { systemPrompt: string; title: string; history: HistoryItem[] }): ChatCompletionMessageParam[] {
  return [
    { role: 'system', content: opts.systemPrompt.split('{title}').join(opts.title) },
    ...opts.history.map((m): ChatCompletionMessageParam => ({ role: m.sender, content: m.content })),
  ];
}
