import { onTestFinished } from 'vitest';
import {
  ReadKeysRequest,
  type CommandSessionRequest,
  type CommandSessionResponse,
  type Target,
} from '../../src/gen/prfleet/v1/control.js';
import type { Outcome } from '../../src/gen/prfleet/v1/scsi.js';
import { AsyncQueue } from '../../src/common/async-queue.js';

/** What one command of a session came back with: a session error's code, or the result's outcome. */
export type SessionAnswer = { readonly errorCode: number } | { readonly outcome: Outcome };

/**
 * Opens a CommandSession on `client` and returns `ask()`, which sends one READ KEYS of `target` and waits for its
 * reply (one in flight at a time). The session is closed when the test finishes.
 */
export function readKeysSession(
  client: {
    commandSession(
      requests: AsyncIterable<CommandSessionRequest>,
    ): AsyncIterable<CommandSessionResponse>;
  },
  target: Partial<Target>,
): () => Promise<SessionAnswer | undefined> {
  const queue = new AsyncQueue<CommandSessionRequest>(100);
  onTestFinished(() => queue.close());
  const replies = client.commandSession(queue)[Symbol.asyncIterator]();
  let sent = 0;
  return async () => {
    sent += 1;
    queue.push({
      requestId: String(sent),
      command: { $case: 'readKeys', value: ReadKeysRequest.fromPartial({ target }) },
    });
    const reply = (await replies.next()).value as CommandSessionResponse | undefined;
    if (reply?.reply?.$case === 'error') return { errorCode: reply.reply.value.code };
    if (reply?.reply?.$case === 'result') return { outcome: reply.reply.value.outcome };
    return undefined;
  };
}
