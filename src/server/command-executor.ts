import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import type { Command } from '../gen/prfleet/v1/agent.js';
import type { CommandResult } from '../gen/prfleet/v1/scsi.js';
import { Outcome } from '../gen/prfleet/v1/scsi.js';
import { systemClock, type Clock } from '../common/clock.js';
import { durationToMs } from '../common/command.js';
import { dryRunResult } from '../common/result.js';
import { invalidArgument } from '../common/errors.js';
import type { AgentRegistry } from './agents/index.js';
import { scopedKey } from './commands/keys.js';
import { storeCall } from './commands/journal-stage.js';
import { checkCapability, type CommandPipeline } from './commands/pipeline.js';
import type { CommandInput } from './commands/types.js';
import { commandBudgetMs, type BudgetPolicy } from './deadline.js';
import { ANONYMOUS, checkReason } from './history.js';
import type { CommandJournal } from './journal.js';
import {
  encodeOrReject,
  fingerprintOf,
  MAX_IDEMPOTENCY_KEY_LENGTH,
  type CommandSpec,
} from './requests.js';
import { resolveTarget } from './targets.js';

/** Prefix of the idempotency key the server assigns to a PROUT sent without one. */
export const ASSIGNED_KEY_PREFIX = 'prfleet-assigned:';

/** Dependencies of {@link createCommandExecutor}. */
export interface CommandExecutorDeps {
  /** Agents and inventories (target resolution, capabilities). */
  readonly registry: AgentRegistry;
  /** The one command path. */
  readonly pipeline: CommandPipeline;
  /** The journal the pipeline uses (a repeated key is answered from it before the agent is looked up). */
  readonly journal: CommandJournal;
  /** Budget defaults. */
  readonly budget: BudgetPolicy;
  /** Reads the time left before the caller's deadline. @default systemClock */
  readonly clock?: Clock | undefined;
  /** Logger. */
  readonly log: Logger;
}

/** The caller's cancellation and deadline for one command. */
export interface ExecuteOptions {
  /** Aborts when the caller cancels (or its deadline passes). */
  readonly signal: AbortSignal;
  /** Caller's absolute deadline (epoch ms), if any. */
  readonly deadlineMs?: number;
  /** The authenticated principal (history, journal, key scope). @default 'anonymous' */
  readonly actor?: string;
}

/** Turns ControlService requests into pipeline inputs: validate → journal-first repeat → resolve → run. */
export interface CommandExecutor {
  /**
   * Runs `spec` and resolves with its CommandResult (device refusals and UNKNOWN included). Throws
   * RichServerError for INVALID_ARGUMENT, NOT_FOUND, FAILED_PRECONDITION, UNAVAILABLE, RESOURCE_EXHAUSTED,
   * DEADLINE_EXCEEDED; rejects with the signal's reason when the caller goes away.
   */
  execute(spec: CommandSpec, options: ExecuteOptions): Promise<CommandResult>;
}

/** The result as its caller knows it: with the key it gave, not the principal-scoped one the agent saw. */
function asCallerKey(result: CommandResult, journalKey: string, key: string): CommandResult {
  return result.idempotencyKey === journalKey && journalKey !== key
    ? { ...result, idempotencyKey: key }
    : result;
}

/** Creates the executor shared by the unary RPCs and CommandSession. */
export function createCommandExecutor(deps: CommandExecutorDeps): CommandExecutor {
  const { registry, pipeline, journal, log } = deps;
  const clock = deps.clock ?? systemClock;

  /**
   * A repeat of a recorded PROUT is answered from the journal before the agent is looked up, so it gets its
   * recorded result whatever the agent's state (offline, unknown after a restart). An UNKNOWN, an entry in
   * flight or a mismatch goes on through the pipeline (which reconciles, waits or refuses).
   */
  async function recorded(spec: CommandSpec, key: string): Promise<CommandResult | undefined> {
    const agentId = spec.target?.agentId ?? '';
    const path = spec.target?.path ?? '';
    if (agentId === '' || path === '') return undefined;
    const entry = await storeCall('read the journal', () => journal.get(key));
    if (entry?.state !== 'completed' || entry.result.outcome === Outcome.OUTCOME_UNKNOWN)
      return undefined;
    const fingerprint = fingerprintOf(agentId, { ...spec.command, path });
    if (entry.request.fingerprint !== fingerprint) return undefined;
    log.info(
      { idempotencyKey: key, commandId: entry.result.commandId },
      'idempotent repeat: recorded result returned',
    );
    return entry.result;
  }

  return {
    async execute(spec, options) {
      const actor = options.actor ?? ANONYMOUS;
      const callerKey = spec.prout?.idempotencyKey ?? '';
      if (Buffer.byteLength(callerKey) > MAX_IDEMPOTENCY_KEY_LENGTH) {
        throw invalidArgument(
          'options.idempotency_key',
          `longer than ${MAX_IDEMPOTENCY_KEY_LENGTH} bytes`,
        );
      }
      const journaled = spec.mode === 'prout' && spec.prout?.dryRun !== true;
      if (journaled && callerKey !== '') {
        const journalKey = scopedKey(actor, callerKey);
        const answer = await recorded(spec, journalKey);
        if (answer !== undefined) return asCallerKey(answer, journalKey, callerKey);
      }
      const target = resolveTarget(registry, spec.target, spec.mode);
      // The spec's command is complete (built with fromPartial): a shallow copy with the path, no deep copy.
      const command: Command = { ...spec.command, path: target.path.path };
      const encoded = encodeOrReject(spec, command);
      checkReason(spec.prout?.reason);
      // Validates command_timeout and the deadline up front (nothing is journaled for a request that cannot run).
      const timeoutMs = commandBudgetMs(
        spec.commandTimeout,
        options.deadlineMs === undefined ? undefined : options.deadlineMs - clock.now(),
        deps.budget,
      );
      const requestedMs =
        spec.commandTimeout === undefined || durationToMs(spec.commandTimeout) === 0
          ? deps.budget.defaultTimeoutMs
          : durationToMs(spec.commandTimeout);
      const input: CommandInput = {
        target: {
          agentId: target.agentId,
          path: target.path.path,
          luId: target.luId,
          capabilities: target.path.capabilities,
        },
        command,
        actor,
        reason: spec.prout?.reason,
        precondition: spec.prout?.precondition,
        timeoutMs: requestedMs,
        journal: 'pipeline',
      };
      if (spec.prout?.dryRun === true) return dryRun(log, input, encoded, timeoutMs);
      const runOptions = { signal: options.signal, deadline: options.deadlineMs };
      if (!journaled) return (await pipeline.run(input, runOptions)).result;
      // Every PROUT is journaled before it is sent. Without the caller's key it gets a server-assigned one
      // (returned in the result), so a server that dies mid-command still leaves a pending entry that
      // recovery settles as UNKNOWN with a history entry: none is ever lost without a record.
      const key = callerKey === '' ? `${ASSIGNED_KEY_PREFIX}${randomUUID()}` : callerKey;
      const journalKey = scopedKey(actor, key);
      const { result } = await pipeline.run(
        {
          ...input,
          command: { ...command, idempotencyKey: journalKey },
          journalKey,
          callerKey: key,
        },
        runOptions,
      );
      return asCallerKey(result, journalKey, key);
    },
  };
}

/** What the PROUT would be, checked like the real one (capability), never sent nor journaled. */
function dryRun(
  log: Logger,
  input: CommandInput,
  encoded: ReturnType<typeof encodeOrReject>,
  timeoutMs: number,
): CommandResult {
  checkCapability(input);
  const { target, command } = input;
  const result = dryRunResult(
    command,
    { agentId: target.agentId, path: target.path, luId: target.luId },
    { ...encoded, timeoutMs },
  );
  log.info(
    { agentId: target.agentId, path: command.path, luId: target.luId, cdb: result.cdb },
    'dry run',
  );
  return result;
}
