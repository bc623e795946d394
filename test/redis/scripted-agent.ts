import { onTestFinished } from 'vitest';
import { createAgentClient } from '../../src/common/client.js';
import type { ConnectRequest } from '../../src/gen/prfleet/v1/agent.js';
import { type Command, type DeepPartial } from '../../src/gen/prfleet/v1/agent.js';
import { CommandResult, Outcome, Path } from '../../src/gen/prfleet/v1/scsi.js';
import { AsyncQueue } from '../../src/common/async-queue.js';

/** What a scripted agent does with a command: answer now (a result), or hold it (answer later via `respond`). */
export type CommandAnswer = DeepPartial<CommandResult> | 'hold';

/** An agent speaking AgentService over a real stream, answering commands as the test says. */
export interface ScriptedAgent {
  /** Commands received, in order. */
  readonly commands: Command[];
  /** Cancels received (command ids). */
  readonly cancels: string[];
  /** Sends a result for a held command. */
  respond(command: Command, result?: DeepPartial<CommandResult>): void;
  /** Drops the stream as a crashed process would (no goodbye). */
  kill(): void;
  /** Resolves when the stream is over (ended by either side). */
  readonly ended: Promise<void>;
}

/**
 * Connects `agentId` to the server at `address`, sends Hello and an Inventory with /dev/sg1, resolves after the
 * Welcome. Each command gets `answer(command)`: GOOD by default.
 */
export async function connectScriptedAgent(
  address: string,
  agentId: string,
  answer: (command: Command) => CommandAnswer = () => ({}),
): Promise<ScriptedAgent> {
  const client = createAgentClient(address);
  const outgoing = new AsyncQueue<DeepPartial<ConnectRequest>>(1000);
  const abort = new AbortController();
  const commands: Command[] = [];
  const cancels: string[] = [];
  const send = (m: DeepPartial<ConnectRequest>) => outgoing.push(m);
  const respond = (command: Command, result: DeepPartial<CommandResult> = {}) =>
    send({
      message: {
        $case: 'result',
        value: CommandResult.fromPartial({
          commandId: command.commandId,
          outcome: Outcome.OUTCOME_GOOD,
          agentId,
          path: command.path,
          ...result,
        }),
      },
    });
  send({
    message: {
      $case: 'hello',
      value: { agentId, hostname: agentId, version: 'scripted', transport: 'emulated' },
    },
  });
  send({
    message: {
      $case: 'inventory',
      value: {
        paths: [Path.fromPartial({ path: '/dev/sg1', luId: 'naa.5000e11100000001', online: true })],
      },
    },
  });
  let welcomed!: () => void;
  const welcome = new Promise<void>((resolve) => (welcomed = resolve));
  const ended = (async () => {
    try {
      for await (const response of client.connect(outgoing, {
        signal: abort.signal,
      })) {
        const m = response.message;
        if (m?.$case === 'welcome') welcomed();
        if (m?.$case === 'cancel') cancels.push(m.value.commandId);
        if (m?.$case === 'command') {
          commands.push(m.value);
          const a = answer(m.value);
          if (a !== 'hold') respond(m.value, a);
        }
      }
    } catch {
      // the stream ended with an error (killed, evicted): that is an end too
    } finally {
      welcomed();
      outgoing.close();
      client.close();
    }
  })();
  const kill = () => abort.abort();
  onTestFinished(async () => {
    kill();
    await ended;
  });
  await welcome;
  return { commands, cancels, respond, kill, ended };
}
