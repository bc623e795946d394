/**
 * Exit codes of `prfleet`. Device answers follow sg3_utils (`include/sg_lib.h`, the SG_LIB_CAT_* values that
 * sg_persist returns), so scripts written against sg_persist keep working; RPC errors, which sg3_utils has no
 * notion of, get their own range (80–89) that sg3_utils leaves unused.
 */
import { Status } from 'nice-grpc-common';
import { Outcome, type CommandResult } from '../gen/prfleet/v1/scsi.js';

/** Every exit code the CLI uses, by name. */
export const ExitCode = {
  /** GOOD (or a dry run that validated). */
  OK: 0,
  /** Usage error: bad flag or argument (commander), or the server's INVALID_ARGUMENT (sg3_utils SYNTAX_ERROR). */
  USAGE: 1,
  /** CHECK CONDITION, sense key NOT READY (SG_LIB_CAT_NOT_READY). */
  NOT_READY: 2,
  /** CHECK CONDITION, MEDIUM ERROR or HARDWARE ERROR (SG_LIB_CAT_MEDIUM_HARD). */
  MEDIUM_HARDWARE: 3,
  /** CHECK CONDITION, ILLEGAL REQUEST (SG_LIB_CAT_ILLEGAL_REQ). */
  ILLEGAL_REQUEST: 5,
  /** CHECK CONDITION, UNIT ATTENTION the agent could not retry past (SG_LIB_CAT_UNIT_ATTENTION). */
  UNIT_ATTENTION: 6,
  /** CHECK CONDITION, DATA PROTECT (SG_LIB_CAT_DATA_PROTECT). */
  DATA_PROTECT: 7,
  /** CHECK CONDITION, ILLEGAL REQUEST with ASC 20h: opcode not supported (SG_LIB_CAT_INVALID_OP). */
  INVALID_OPCODE: 9,
  /** CHECK CONDITION, ABORTED COMMAND, or status TASK ABORTED (SG_LIB_CAT_ABORTED_COMMAND). */
  ABORTED_COMMAND: 11,
  /** Status RESERVATION CONFLICT (SG_LIB_CAT_RES_CONFLICT). */
  RESERVATION_CONFLICT: 24,
  /** Status BUSY (SG_LIB_CAT_BUSY). */
  BUSY: 26,
  /** Status TASK SET FULL (SG_LIB_CAT_TS_FULL). */
  TASK_SET_FULL: 27,
  /** The command timed out on the host; a PROUT's effect is unknown (SG_LIB_CAT_TIMEOUT). */
  TIMEOUT: 33,
  /** Host adapter / transport error; a PROUT's effect is unknown (SG_LIB_TRANSPORT_ERROR, sg3_utils ≥ 1.47). */
  TRANSPORT_ERROR: 35,
  /** Outcome UNKNOWN: the agent vanished mid-command; re-read the LU before retrying (prfleet's own). */
  OUTCOME_UNKNOWN: 40,
  /** Outcome REFUSED: the agent refused the command; nothing was sent (prfleet's own). */
  REFUSED: 41,
  /** `prfleet apply`/`takeover`: the rollout stopped (error threshold) or failed (prfleet's own). */
  ROLLOUT_FAILED: 42,
  /** `prfleet audit`: at least one critical finding (prfleet's own). */
  AUDIT_CRITICAL: 43,
  /** `prfleet history verify`: the hash chain is broken (prfleet's own). */
  HISTORY_BROKEN: 44,
  /** `prfleet replay`: the emulated profile answered a step differently from the transcript (prfleet's own). */
  REPLAY_DIVERGED: 45,
  /** Outcome OS_ERROR: 50 + errno, capped at 96 (sg3_utils SG_LIB_OS_BASE_ERR). */
  OS_ERROR_BASE: 50,
  /** Any other sense key (SG_LIB_CAT_SENSE). */
  OTHER_SENSE: 98,
  /** Any other SCSI status (SG_LIB_CAT_OTHER). */
  OTHER: 99,
  /** RPC UNAVAILABLE: server unreachable, agent offline or server draining; nothing was sent, retry is safe. */
  RPC_UNAVAILABLE: 80,
  /** RPC NOT_FOUND: unknown logical unit, agent or path. */
  RPC_NOT_FOUND: 81,
  /** RPC FAILED_PRECONDITION: the device's profile lacks the action or type, or a precondition failed. */
  RPC_FAILED_PRECONDITION: 82,
  /** RPC DEADLINE_EXCEEDED or CANCELLED: the CLI's own deadline passed; the command may still have run. */
  RPC_DEADLINE_EXCEEDED: 83,
  /** RPC RESOURCE_EXHAUSTED: the agent's queue is full; retry later. */
  RPC_RESOURCE_EXHAUSTED: 84,
  /** Any other RPC error (INTERNAL, UNKNOWN, UNIMPLEMENTED, …). */
  RPC_OTHER: 85,
  /** RPC UNAUTHENTICATED: no bearer token, or one the server refuses (invalid, expired, revoked). */
  RPC_UNAUTHENTICATED: 86,
  /** RPC PERMISSION_DENIED: the token's role, or the key registry (operators' own keys), does not allow it. */
  RPC_PERMISSION_DENIED: 87,
  /** No TLS connection: handshake failed (untrusted or mismatched server certificate, client certificate refused, TLS vs plaintext). */
  TLS_FAILED: 88,
} as const;

/** SPC sense keys used below (SPC-4 table 48). */
const SenseKey = {
  NOT_READY: 0x2,
  MEDIUM_ERROR: 0x3,
  HARDWARE_ERROR: 0x4,
  ILLEGAL_REQUEST: 0x5,
  UNIT_ATTENTION: 0x6,
  DATA_PROTECT: 0x7,
  ABORTED_COMMAND: 0xb,
} as const;

/** ASC 20h: INVALID COMMAND OPERATION CODE (SPC-4 annex D). */
const ASC_INVALID_OPCODE = 0x20;

/** Largest exit code sg3_utils uses for 50 + errno (SG_LIB_OS_BASE_ERR range ends before 97, MALFORMED). */
const OS_ERROR_MAX = 96;

/** Exit code for a command result (the RPC itself returned OK). */
export function exitCodeForResult(result: CommandResult): number {
  switch (result.outcome) {
    case Outcome.OUTCOME_GOOD:
    case Outcome.OUTCOME_DRY_RUN:
      return ExitCode.OK;
    case Outcome.OUTCOME_RESERVATION_CONFLICT:
      return ExitCode.RESERVATION_CONFLICT;
    case Outcome.OUTCOME_CHECK_CONDITION:
      return exitCodeForSense(result.sense?.senseKey, result.sense?.asc);
    case Outcome.OUTCOME_BUSY:
      return ExitCode.BUSY;
    case Outcome.OUTCOME_TASK_SET_FULL:
      return ExitCode.TASK_SET_FULL;
    case Outcome.OUTCOME_TASK_ABORTED:
      return ExitCode.ABORTED_COMMAND;
    case Outcome.OUTCOME_TRANSPORT_ERROR:
      return ExitCode.TRANSPORT_ERROR;
    case Outcome.OUTCOME_TIMEOUT:
      return ExitCode.TIMEOUT;
    case Outcome.OUTCOME_OS_ERROR:
      return Math.min(ExitCode.OS_ERROR_BASE + Math.max(0, result.errno), OS_ERROR_MAX);
    case Outcome.OUTCOME_UNKNOWN:
      return ExitCode.OUTCOME_UNKNOWN;
    case Outcome.OUTCOME_REFUSED:
      return ExitCode.REFUSED;
    case Outcome.OUTCOME_OTHER_STATUS:
    case Outcome.OUTCOME_UNSPECIFIED:
    case Outcome.UNRECOGNIZED:
      return ExitCode.OTHER;
  }
}

/** Exit code for a CHECK CONDITION, by sense key (and ASC for an unsupported opcode), as sg3_utils maps it. */
export function exitCodeForSense(senseKey: number | undefined, asc: number | undefined): number {
  switch (senseKey) {
    case SenseKey.NOT_READY:
      return ExitCode.NOT_READY;
    case SenseKey.MEDIUM_ERROR:
    case SenseKey.HARDWARE_ERROR:
      return ExitCode.MEDIUM_HARDWARE;
    case SenseKey.ILLEGAL_REQUEST:
      return asc === ASC_INVALID_OPCODE ? ExitCode.INVALID_OPCODE : ExitCode.ILLEGAL_REQUEST;
    case SenseKey.UNIT_ATTENTION:
      return ExitCode.UNIT_ATTENTION;
    case SenseKey.DATA_PROTECT:
      return ExitCode.DATA_PROTECT;
    case SenseKey.ABORTED_COMMAND:
      return ExitCode.ABORTED_COMMAND;
    default:
      return ExitCode.OTHER_SENSE;
  }
}

/** Exit code for an RPC status other than OK. */
export function exitCodeForStatus(code: Status): number {
  switch (code) {
    case Status.INVALID_ARGUMENT:
    case Status.OUT_OF_RANGE:
      return ExitCode.USAGE;
    case Status.UNAVAILABLE:
      return ExitCode.RPC_UNAVAILABLE;
    case Status.NOT_FOUND:
      return ExitCode.RPC_NOT_FOUND;
    case Status.FAILED_PRECONDITION:
      return ExitCode.RPC_FAILED_PRECONDITION;
    case Status.DEADLINE_EXCEEDED:
    case Status.CANCELLED:
      return ExitCode.RPC_DEADLINE_EXCEEDED;
    case Status.RESOURCE_EXHAUSTED:
      return ExitCode.RPC_RESOURCE_EXHAUSTED;
    case Status.UNAUTHENTICATED:
      return ExitCode.RPC_UNAUTHENTICATED;
    case Status.PERMISSION_DENIED:
      return ExitCode.RPC_PERMISSION_DENIED;
    default:
      return ExitCode.RPC_OTHER;
  }
}

/** The exit-code table as shown at the end of `prfleet --help` (and in docs/cli.md). */
export const EXIT_CODE_HELP = `Exit codes (device answers as sg3_utils/sg_persist; RPC errors 80-88):
   0  GOOD, or a dry run that validated
   1  usage error (bad flag or argument), or the server's INVALID_ARGUMENT
   2  CHECK CONDITION: NOT READY
   3  CHECK CONDITION: MEDIUM ERROR / HARDWARE ERROR
   5  CHECK CONDITION: ILLEGAL REQUEST
   6  CHECK CONDITION: UNIT ATTENTION (only when the agent could not retry past it;
      unit attentions consumed before a command that then ran are shown, exit 0)
   7  CHECK CONDITION: DATA PROTECT
   9  CHECK CONDITION: ILLEGAL REQUEST, command not supported (ASC 20h)
  11  CHECK CONDITION: ABORTED COMMAND, or status TASK ABORTED
  24  RESERVATION CONFLICT
  26  BUSY
  27  TASK SET FULL
  33  timed out on the host (a PROUT's effect is unknown: re-read before retrying)
  35  transport error (a PROUT's effect is unknown: re-read before retrying)
  40  outcome UNKNOWN: the agent vanished mid-command (re-read the LU; nothing is re-sent)
  41  refused by the agent; nothing was sent
  42  apply/takeover: the rollout stopped or failed
  43  audit: at least one critical finding
  44  history verify: the hash chain is broken (edited, removed or reordered entry)
  45  replay: the profile answered a step differently from the transcript
  50+ OS error on the agent: 50 + errno (capped at 96)
  80  RPC UNAVAILABLE: server unreachable, agent offline or server draining (nothing sent; retry is safe)
  81  RPC NOT_FOUND: unknown logical unit, agent or path
  82  RPC FAILED_PRECONDITION: the device's profile lacks the action/type, or a precondition failed
  83  RPC DEADLINE_EXCEEDED / CANCELLED: no answer in time (the command may still have run)
  84  RPC RESOURCE_EXHAUSTED: the agent's queue is full
  85  any other RPC error
  86  RPC UNAUTHENTICATED: no token, or one refused (pass --token-file / PRFLEET_TOKEN)
  87  RPC PERMISSION_DENIED: the token's role or the key registry does not allow it
  88  TLS handshake failed: server certificate not trusted or not for this name, client
      certificate refused, or TLS against a plaintext server (nothing was sent)
  98  CHECK CONDITION with another sense key
  99  any other SCSI status`;
