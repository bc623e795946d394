import type { Logger } from 'pino';
import type { Command } from '../../gen/prfleet/v1/agent.js';
import {
  Outcome,
  PrinAction,
  outcomeToJSON,
  type CommandResult,
} from '../../gen/prfleet/v1/scsi.js';
import { toScsiRequest } from '../../common/command.js';
import { deviceAnswered, outcomeOf, unknownResult } from '../../common/result.js';
import type { AgentSession } from './link.js';

/** Sense data a device may return: SPC-4 caps fixed and descriptor format sense at 252 bytes. */
export const MAX_SENSE_BYTES = 252;
/** Longest free text (message, status name, sense description) kept from an agent's result. */
export const MAX_RESULT_TEXT = 4096;
/** Unit attentions one result may carry (a device queues a handful; the agent reports each once). */
export const MAX_UNIT_ATTENTIONS = 64;

/**
 * Outcomes an agent reports. Not UNSPECIFIED (never sent), DRY_RUN (the server answers dry runs itself) or a
 * number no Outcome has: a PROUT recorded with such an outcome reads as neither applied nor UNKNOWN, so nothing
 * would ever read the LU to settle it.
 */
const AGENT_OUTCOMES = new Set<number>([
  Outcome.OUTCOME_GOOD,
  Outcome.OUTCOME_RESERVATION_CONFLICT,
  Outcome.OUTCOME_CHECK_CONDITION,
  Outcome.OUTCOME_BUSY,
  Outcome.OUTCOME_TASK_SET_FULL,
  Outcome.OUTCOME_TASK_ABORTED,
  Outcome.OUTCOME_OTHER_STATUS,
  Outcome.OUTCOME_TRANSPORT_ERROR,
  Outcome.OUTCOME_TIMEOUT,
  Outcome.OUTCOME_OS_ERROR,
  Outcome.OUTCOME_UNKNOWN,
  Outcome.OUTCOME_REFUSED,
]);

/** Longest CDB of a command an agent runs (a fixed-length CDB is at most 16 bytes; these use 6 to 12). */
export const MAX_CDB_BYTES = 16;

/**
 * How many data-in bytes the command asked the device for, and how many data-out bytes it sends (0: none): what
 * the agent computes, from the same function (toScsiRequest), so every command kind (READ ELEMENT STATUS
 * included) is covered by one definition.
 */
function transferLengthsOf(command: Command): { dataIn: number; dataOut: number } {
  try {
    const request = toScsiRequest(command);
    return { dataIn: request.dataInLength, dataOut: request.dataOut?.length ?? 0 };
  } catch {
    return { dataIn: 0, dataOut: 0 }; // not a command the server would send: no transfer is believable
  }
}

/** The decoded data a GOOD answer to each PRIN action carries (buildCommandResult's decodePrinResult). */
const PRIN_DATA: Readonly<Record<number, NonNullable<CommandResult['data']>['$case']>> = {
  [PrinAction.PRIN_ACTION_READ_KEYS]: 'readKeys',
  [PrinAction.PRIN_ACTION_READ_RESERVATION]: 'readReservation',
  [PrinAction.PRIN_ACTION_REPORT_CAPABILITIES]: 'capabilities',
  [PrinAction.PRIN_ACTION_READ_FULL_STATUS]: 'fullStatus',
};

const NO_SENSE = new Uint8Array(0);

/**
 * Why the outcome, status byte and decoded data of a result contradict each other or the command, or
 * undefined: a status that is no byte (the history could not record it, so the PROUT would go unrecorded), an
 * outcome other than the one its status, host and driver status make (outcomeOf, as the agent computes it: a
 * GOOD whose status says RESERVATION CONFLICT), or decoded data other than a GOOD answer to this PRIN action.
 */
function contradiction(result: CommandResult, command: Command): string | undefined {
  if (result.status > 0xff) return `status ${result.status} is not a status byte`;
  if (deviceAnswered(result.outcome)) {
    const { status, hostStatus, driverStatus } = result;
    const implied = outcomeOf({
      status,
      hostStatus,
      driverStatus,
      sense: result.sense?.raw ?? NO_SENSE,
    });
    if (implied !== result.outcome)
      return `${outcomeToJSON(result.outcome)} contradicts its status 0x${result.status.toString(16)} (host 0x${result.hostStatus.toString(16)}, driver 0x${result.driverStatus.toString(16)}), which make ${outcomeToJSON(implied)}`;
  }
  const data = result.data?.$case;
  if (data === undefined) return undefined;
  const expected =
    result.outcome === Outcome.OUTCOME_GOOD && command.kind?.$case === 'prin'
      ? PRIN_DATA[command.kind.value.action]
      : undefined;
  return data === expected
    ? undefined
    : `${data} data in a ${outcomeToJSON(result.outcome)} answer to ${command.kind?.$case ?? 'a command'}${expected === undefined ? '' : ` (${expected} expected)`}`;
}

/**
 * Why an agent's result for `command` cannot be a device's answer, or undefined when it can: an outcome no agent
 * reports, sense over 252 bytes, a CDB or data-out longer than the command's, more data-in than the allocation
 * length asked, decoded data the data-in could not hold, oversized text or text holding U+0000, times no clock or
 * device gives, an outcome, status or data that contradict each other or the command. A compromised agent must
 * not be able to make the server store (and every listing return) megabytes.
 */
export function invalidAgentResult(result: CommandResult, command: Command): string | undefined {
  if (!AGENT_OUTCOMES.has(result.outcome))
    return `outcome ${result.outcome} is not one an agent reports`;
  const oversized = oversizedSense(result.sense, 'sense');
  if (oversized !== undefined) return oversized;
  // The CDB and data-out are the agent's echo of what it sent; kept in the journal with the result.
  if (result.cdb.length > MAX_CDB_BYTES)
    return `cdb of ${result.cdb.length} bytes (at most ${MAX_CDB_BYTES})`;
  const { dataIn: allocation, dataOut } = transferLengthsOf(command);
  if (result.dataOut.length > dataOut)
    return `data-out of ${result.dataOut.length} bytes for a command that sends ${dataOut}`;
  if (result.dataIn.length > allocation)
    return `${result.dataIn.length} bytes of data-in for an allocation length of ${allocation}`;
  // Decoded data takes at least as many bytes of the data-in it was decoded from: 8 a key, 24 a descriptor
  // plus its iSCSI name.
  const decoded = decodedBytes(result.data);
  if (decoded > allocation)
    return `${decoded} bytes of decoded data for an allocation length of ${allocation}`;
  if (result.unitAttentions.length > MAX_UNIT_ATTENTIONS)
    return `${result.unitAttentions.length} unit attentions (at most ${MAX_UNIT_ATTENTIONS})`;
  // Each unit attention becomes an event of its own (kept, watched, sent to webhooks): its sense is held to
  // the same bounds as the result's.
  for (const ua of result.unitAttentions) {
    const bad = oversizedSense(ua.sense, 'unit attention sense');
    if (bad !== undefined) return bad;
  }
  const text = Math.max(result.message.length, result.statusName.length);
  if (text > MAX_RESULT_TEXT)
    return `a text field of ${text} characters (at most ${MAX_RESULT_TEXT})`;
  if (hasNul(result)) return 'a text field holding U+0000';
  return badTimes(result) ?? contradiction(result, command);
}

/**
 * True when a string anywhere in `value` holds U+0000, which PostgreSQL keeps in neither text nor jsonb: the
 * journal's and the history's writes of such a result failed (after seconds of retries the PROUT that ran was
 * missing from the history, and a repeat of its idempotency key answered INTERNAL). No agent's decoding of a
 * device's answer yields one.
 */
function hasNul(value: unknown): boolean {
  if (typeof value === 'string') return value.includes('\u0000');
  if (value === null || typeof value !== 'object' || value instanceof Uint8Array) return false;
  return Object.values(value).some(hasNul);
}

/** google.protobuf.Timestamp's range, 0001-01-01 to 9999-12-31, in milliseconds. */
const TIMESTAMP_MIN_MS = Date.parse('0001-01-01T00:00:00Z');
const TIMESTAMP_MAX_MS = Date.parse('9999-12-31T23:59:59.999Z');
/** google.protobuf.Duration's range: ±10,000 years in seconds. */
const DURATION_MAX_SECONDS = 315_576_000_000n;

/**
 * Why the result's times are none a clock or a device could give, or undefined. A start time past what a Date
 * holds (seconds over 8.64e12 on the wire) decodes as an Invalid Date that nothing can encode again: the
 * caller's answer failed as INTERNAL "Error serializing response" after the PROUT ran, and the journal's JSON of
 * it threw. A negative or out-of-range duration is no device's.
 */
function badTimes(result: CommandResult): string | undefined {
  const started = result.startedAt?.getTime();
  if (started !== undefined && !(started >= TIMESTAMP_MIN_MS && started <= TIMESTAMP_MAX_MS))
    return 'started_at outside 0001-01-01..9999-12-31';
  const duration = result.duration;
  if (
    duration !== undefined &&
    (duration.seconds < 0n ||
      duration.seconds > DURATION_MAX_SECONDS ||
      duration.nanos < 0 ||
      duration.nanos > 999_999_999)
  )
    return `duration ${duration.seconds}s ${duration.nanos}ns is not one a device takes`;
  return undefined;
}

/** Why `sense` is more than a device returns (raw bytes, or its texts), or undefined. */
function oversizedSense(sense: CommandResult['sense'], what: string): string | undefined {
  if (sense === undefined) return undefined;
  if (sense.raw.length > MAX_SENSE_BYTES)
    return `${what} of ${sense.raw.length} bytes (at most ${MAX_SENSE_BYTES})`;
  const text = Math.max(sense.description.length, sense.senseKeyName.length);
  if (text > MAX_RESULT_TEXT)
    return `a text field of ${text} characters in the ${what} (at most ${MAX_RESULT_TEXT})`;
  return undefined;
}

function decodedBytes(data: CommandResult['data']): number {
  if (data?.$case === 'readKeys') return data.value.keys.length * 8;
  if (data?.$case !== 'fullStatus') return 0;
  let bytes = 0;
  for (const d of data.value.descriptors) {
    const id = d.transportId?.id;
    bytes += 24 + (id?.$case === 'iscsi' ? id.value.name.length + id.value.isid.length : 0);
  }
  return bytes;
}

/**
 * A warning logged at most once per `intervalMs`, with how many occurrences it stands for: an agent sending
 * 10,000 results for commands never sent must not write 10,000 lines.
 */
export function rateLimitedWarning(
  log: Logger,
  text: string,
  intervalMs = 10_000,
): (fields: Record<string, unknown>) => void {
  let lastMs = -Infinity;
  let suppressed = 0;
  return (fields) => {
    const now = performance.now();
    if (now - lastMs < intervalMs) {
      suppressed += 1;
      return;
    }
    lastMs = now;
    log.warn({ ...fields, suppressedSinceLast: suppressed }, text);
    suppressed = 0;
  };
}

/** The fields a per-session child logger would add, built per log line (see {@link sessionFields}). */
export interface SessionFields {
  agentId: string;
  sessionId: string;
}

/**
 * The log fields naming `session`. Built per log line rather than kept as a child logger: a child logger per
 * connected agent costs memory for as long as it stays connected, and an idle agent logs nothing.
 */
export function sessionFields(session: AgentSession): SessionFields {
  return { agentId: session.agentId, sessionId: session.sessionId };
}

/**
 * Settles the agent's results with the commands in flight on its session. A result for a command not in flight
 * (settled already, or never sent) is dropped and logged with a rate limit, so that an agent sending thousands
 * cannot flood the log; a result that cannot be a device's answer settles the command as UNKNOWN.
 */
export function createResultSettler(
  log: Logger,
  strayLogIntervalMs?: number,
): (session: AgentSession, result: CommandResult) => void {
  const strayResult = rateLimitedWarning(
    log,
    'result for a command not in flight on this session dropped (settled already, or never sent)',
    strayLogIntervalMs,
  );
  return (session, result) => {
    const pending = session.pendingCommand(result.commandId);
    if (pending === undefined) {
      strayResult({
        ...sessionFields(session),
        commandId: result.commandId,
        outcome: result.outcome,
      });
      return;
    }
    const invalid = invalidAgentResult(result, pending.command);
    if (invalid === undefined) {
      pending.settle(result);
      return;
    }
    // Not a device's answer: whether the command ran is unknown, and nothing the agent sent is kept.
    log.warn(
      { ...sessionFields(session), commandId: result.commandId, invalid },
      'invalid result from agent: settled as UNKNOWN',
    );
    pending.settle(
      unknownResult(
        pending.command,
        session.agentId,
        `agent ${session.agentId} sent an invalid result (${invalid}): the command may or may not have run; read the logical unit before retrying`,
      ),
    );
  };
}
