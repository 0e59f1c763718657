/**
 * The offline responder's document: when the model is offered `create_document` and the person
 * asks for a document, a file or a plan, it calls the tool (arguments streamed in pieces), so the
 * feature can be tried with no key. Deterministic: the same history gives the same file.
 */

type ChatMessage = { role: string; content: unknown };

const ASKS_FOR_DOCUMENT = /\b(?:document|file|plan)s?\b|(?:^|[^а-яё])(?:документ\S*|файл\S*|план|плана|планом|плане|планы|планов)(?=$|[^а-яё])/i;

/** The person's latest message, when it is the last message of the request (not after a tool's result). */
function lastUserText(messages: ChatMessage[]): string | undefined {
  const last = messages[messages.length - 1];
  return last?.role === 'user' && typeof last.content === 'string' ? last.content : undefined;
}

/** The vision's title from the system prompt (`... their vision: "title". ...`), when it says it. */
function titleOf(messages: ChatMessage[]): string | undefined {
  const system = messages.find((m) => m.role === 'system' && typeof m.content === 'string');
  return (system?.content as string | undefined)?.match(/vision: "([^"]*)"/)?.[1];
}

/** Whether the request offers the tool and the person asks for a document. */
export function wantsOfflineDocument(body: Record<string, any>): boolean {
  const offered = Array.isArray(body.tools) && body.tools.some((t: any) => t?.function?.name === 'create_document');
  const text = lastUserText(Array.isArray(body.messages) ? body.messages : []);
  return offered && text !== undefined && ASKS_FOR_DOCUMENT.test(text);
}

/** The tool call's arguments (JSON text): a Markdown plan toward the vision, with a caption. */
export function offlineDocumentArguments(messages: ChatMessage[]): string {
  const text = (lastUserText(messages) ?? '').trim().replace(/\s+/g, ' ');
  const title = titleOf(messages) ?? '';
  const ru = /[а-яё]/i.test(text + title);
  const quote = text.length > 200 ? `${text.slice(0, 197)}...` : text;
  const content = ru
    ? [`# План: ${title || 'ваша визия'}`, '', '_(офлайн-документ, модель не подключена)_', '', `Запрос: «${quote}»`, '', '1. Опишите, как выглядит результат.', '2. Выберите один шаг на эту неделю.', '3. Отметьте, что мешает, и как это обойти.', '4. Вернитесь через неделю и сверьтесь с планом.', ''].join('\n')
    : [`# Plan: ${title || 'your vision'}`, '', '_(offline document, no model connected)_', '', `Request: "${quote}"`, '', '1. Describe what the result looks like.', '2. Pick one step for this week.', '3. Note what is in the way and how to get around it.', '4. Come back in a week and check the plan.', ''].join('\n');
  const caption = ru ? '(офлайн-ответ) Составил план в файле plan.md.' : '(offline reply) I put the plan in plan.md.';
  return JSON.stringify({ filename: 'plan.md', mime: 'text/markdown', content, caption });
}
