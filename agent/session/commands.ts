import type { Logger } from 'pino';
import { describeCommand } from '../../src/common/command.js';
import { refusedResult } from '../../src/common/result.js';
import type { Command } from '../../src/gen/prfleet/v1/agent.js';
import type { CommandResult } from '../../src/gen/prfleet/v1/scsi.js';
import type { Executor } from '../executor.js';
import type { CommandTracer } from '../session.js';

/** What running a command from the server needs. */
export interface CommandRunnerDeps {
  readonly agentId: string;
  readonly executor: Executor;
  readonly traceCommand?: CommandTracer | undefined;
  readonly log: Logger;
}

/**
 * Runs a command the server sent on the executor (in a span continuing its trace, when tracing) and hands its
 * result to `answer`. Every command gets exactly one answer: the executor answers everything it accepts, and a
 * failure before submission (a bug) becomes a REFUSED result.
 */
export function runCommand(
  command: Command,
  deps: CommandRunnerDeps,
  answer: (command: Command, result: CommandResult) => void,
): void {
  const log = deps.log;
  if (log.isLevelEnabled('debug')) {
    log.debug(
      { commandId: command.commandId, path: command.path, command: describeCommand(command) },
      'command received',
    );
  }
  let executed: Promise<CommandResult>;
  try {
    executed =
      deps.traceCommand === undefined
        ? deps.executor.submit(command)
        : deps.traceCommand(command, () => deps.executor.submit(command));
  } catch (e) {
    executed = Promise.reject(e instanceof Error ? e : new Error(String(e)));
  }
  void executed.then(
    (result) => answer(command, result),
    (e: unknown) => {
      log.error({ err: e, commandId: command.commandId }, 'command failed before submission');
      answer(
        command,
        refusedResult(
          command,
          { agentId: deps.agentId },
          `agent error before submission: ${e instanceof Error ? e.message : String(e)}`,
        ),
      );
    },
  );
}
