/**
 * The two shapes of a vision export, written piece by piece: a head, every message in history
 * order, a tail. Each writer is pure string formatting, so the service can stream pages through
 * it without ever holding the whole document.
 */
import { registerEnumType } from 'type-graphql';
import { MessageSender, MessageState, MessageType, VisionStatus } from '../vision/vision.enums';

/** What `exportVision` writes. GraphQL shows the keys; the values are what `files.meta.format` stores. */
export enum ExportFormat {
  MARKDOWN = 'markdown',
  JSON = 'json',
}

registerEnumType(ExportFormat, { name: 'ExportFormat' });

/** The vision as the document's head shows it. */
export interface ExportedVision {
  id: string;
  title: string;
  status: VisionStatus;
  createdAt: Date;
  updatedAt: Date;
}

/** The file a message points at (its `payload.fileid`), as the API's `VisionMessage.file` shows it. */
export interface ExportedFileRef {
  id: string;
  filename: string;
  mime: string;
  size: number;
}

/** One message of the path, as read from one page of the export's statement. */
export interface ExportedMessage {
  id: string;
  sender: MessageSender;
  type: MessageType;
  state: MessageState;
  content: string;
  payload: Record<string, unknown> | null;
  file: ExportedFileRef | null;
  createdAt: Date;
}

/** A document format: its mime, and the text of its head, of each message and of its tail. */
export interface ExportWriter {
  readonly mime: string;
  head(vision: ExportedVision, exportedAt: Date): string;
  /** `index` counts from 0 in history order. */
  message(m: ExportedMessage, index: number): string;
  tail(count: number): string;
}

/**
 * The GraphQL name of a stored enum value (`file_result` → `FILE_RESULT`). The tables' CHECK
 * constraints keep values known; the upper-case fallback only keeps an unexpected one readable.
 */
function apiName(values: Record<string, string>): (stored: string) => string {
  const byValue = new Map(Object.entries(values).map(([key, value]) => [value, key]));
  return (stored) => byValue.get(stored) ?? String(stored).toUpperCase();
}
const statusName = apiName(VisionStatus);
const senderName = apiName(MessageSender);
const typeName = apiName(MessageType);
const stateName = apiName(MessageState);

/**
 * `{ vision, exportedAt, messages: [...] }` with enum values as the API shows them and times in
 * ISO 8601 (milliseconds, as the API's DateTimeISO). One message per line: the document stays
 * valid JSON and can still be read with line tools.
 */
export const jsonWriter: ExportWriter = {
  mime: 'application/json',
  head(v, exportedAt) {
    const vision = {
      id: v.id,
      title: v.title,
      status: statusName(v.status),
      createdAt: v.createdAt.toISOString(),
      updatedAt: v.updatedAt.toISOString(),
    };
    // `messages` comes last so that it can be left open while the pages stream in
    return `{"vision":${JSON.stringify(vision)},\n"exportedAt":${JSON.stringify(exportedAt.toISOString())},\n"messages":[`;
  },
  message(m, index) {
    const out = {
      id: m.id,
      sender: senderName(m.sender),
      type: typeName(m.type),
      state: stateName(m.state),
      content: m.content,
      payload: m.payload,
      file: m.file,
      createdAt: m.createdAt.toISOString(),
    };
    return `${index === 0 ? '\n' : ',\n'}${JSON.stringify(out)}`;
  },
  tail() {
    return '\n]}\n';
  },
};

/** A line of Markdown that cannot start a heading, list or quote by accident. */
const inline = (s: string) => s.replace(/[\r\n]+/g, ' ');

/**
 * A heading with the title, then the status and dates; then each message as a `##` section
 * (number, sender, time, the type when not TEXT and the state when not COMPLETE), its content
 * as written, and a file line when it points at a stored file. Content is Markdown already (the
 * coach writes it), so it is not escaped; a rule between messages keeps a message's own
 * headings from running into the next one.
 */
export const markdownWriter: ExportWriter = {
  mime: 'text/markdown',
  head(v, exportedAt) {
    return [
      `# ${inline(v.title)}`,
      '',
      `- Status: ${statusName(v.status)}`,
      `- Created: ${v.createdAt.toISOString()}`,
      `- Updated: ${v.updatedAt.toISOString()}`,
      `- Exported: ${exportedAt.toISOString()}`,
      `- Vision id: ${v.id}`,
      '',
    ].join('\n');
  },
  message(m, index) {
    const notes = [senderName(m.sender), m.createdAt.toISOString()];
    if (m.type !== MessageType.TEXT) notes.push(typeName(m.type));
    if (m.state !== MessageState.COMPLETE) notes.push(stateName(m.state));
    const lines = ['', '---', '', `## ${index + 1}. ${notes.join(' · ')}`, '', m.content === '' ? '_(empty)_' : m.content];
    if (m.file) {
      lines.push('', `File: ${inline(m.file.filename)} (${m.file.mime}, ${m.file.size} bytes, id ${m.file.id})`);
    }
    lines.push('');
    return lines.join('\n');
  },
  tail(count) {
    return `\n---\n\n_${count} message${count === 1 ? '' : 's'}._\n`;
  },
};

/** The writer of a format. */
export function writerFor(format: ExportFormat): ExportWriter {
  return format === ExportFormat.JSON ? jsonWriter : markdownWriter;
}
