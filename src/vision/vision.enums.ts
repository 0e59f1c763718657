import { registerEnumType } from 'type-graphql';

/** Stored lower-case as in the seed; GraphQL shows the keys. */
export enum VisionStatus {
  ACTIVE = 'active',
  FROZEN = 'frozen',
  DELETED = 'deleted',
}

export enum MessageSender {
  USER = 'user',
  ASSISTANT = 'assistant',
  SYSTEM = 'system',
}

export enum MessageType {
  TEXT = 'text',
  AUDIO = 'audio',
  FILE_RESULT = 'file_result',
  INFO = 'info',
}

export enum MessageState {
  STREAMING = 'streaming',
  COMPLETE = 'complete',
  STOPPED = 'stopped',
  FAILED = 'failed',
}

registerEnumType(VisionStatus, { name: 'VisionStatus' });
registerEnumType(MessageSender, { name: 'MessageSender' });
registerEnumType(MessageType, { name: 'MessageType' });
registerEnumType(MessageState, {
  name: 'MessageState',
  description: 'Lifecycle of a message. User and system messages are always COMPLETE.',
  valuesConfig: {
    STREAMING: { description: 'An assistant reply still being generated; content holds what has arrived so far.' },
    STOPPED: { description: 'Stopped by stopReply, by a status change, or by shutdown; content holds the partial text.' },
    FAILED: { description: 'The model call failed; content holds whatever arrived (maybe nothing).' },
  },
});
