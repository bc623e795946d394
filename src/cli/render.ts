/**
 * Table output of the CLI (cli-table3, no colours so output is the same on a terminal and in a pipe). Keys print
 * as 16 hex digits, sense as words, and unit attentions consumed before a command are listed as news.
 */
import Table from 'cli-table3';
import { AgentLink, type Agent, type LogicalUnit } from '../gen/prfleet/v1/control.js';
import {
  Outcome,
  outcomeToJSON,
  PrType,
  type CapabilitiesData,
  type CommandResult,
  type FullStatusData,
  type ReadKeysData,
  type ReadReservationData,
  type Sense,
  type TransportId,
} from '../gen/prfleet/v1/scsi.js';
import { formatKey } from '../scsi/keys.js';
import { deviceAnswered } from '../common/result.js';
import { capabilitySourceWords } from '../common/capabilities.js';
import { durationMs } from './json.js';

// C0 controls but newline, DEL, C1 controls (a terminal may take U+009B as CSI).
const TERMINAL_CONTROLS = /[\u0000-\u0009\u000b-\u001f\u007f-\u009f]/g;

/**
 * Text for a terminal: control characters (ESC and the rest, but not newline) shown as `\u001b`-style escapes, so
 * text from agents, devices or servers (hostnames, labels, vendor, serial, messages) cannot move the cursor,
 * recolour or retitle the operator's terminal.
 */
export function terminalSafe(text: string): string {
  return text.replace(
    TERMINAL_CONTROLS,
    (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`,
  );
}

function safeCell(cell: unknown): unknown {
  if (typeof cell === 'string') return terminalSafe(cell);
  if (Array.isArray(cell)) return cell.map(safeCell);
  if (cell !== null && typeof cell === 'object' && !(cell instanceof Uint8Array)) {
    return Object.fromEntries(Object.entries(cell).map(([k, v]) => [terminalSafe(k), safeCell(v)]));
  }
  return cell;
}

/**
 * The CLI's one kind of table: no colours or other escape codes (cli-table3 colours heads and borders unless
 * told not to), the same on a terminal and in a pipe, with every cell {@link terminalSafe}.
 */
export function plainTable(options: Table.TableConstructorOptions = {}): Table.Table {
  const t = new Table({ ...options, style: { head: [], border: [], compact: false } });
  const push = t.push.bind(t);
  t.push = (...rows: Table.Table[number][]) => push(...(rows.map(safeCell) as typeof rows));
  return t;
}

function table(head: string[]): Table.Table {
  return plainTable({ head });
}

/** Short name of a reservation type, e.g. "WE", "EA-RO"; "none" for unspecified. */
export function prTypeShortName(type: PrType): string {
  switch (type) {
    case PrType.PR_TYPE_UNSPECIFIED:
      return 'none';
    case PrType.PR_TYPE_WRITE_EXCLUSIVE:
      return 'WE';
    case PrType.PR_TYPE_EXCLUSIVE_ACCESS:
      return 'EA';
    case PrType.PR_TYPE_WRITE_EXCLUSIVE_REGISTRANTS_ONLY:
      return 'WE-RO';
    case PrType.PR_TYPE_EXCLUSIVE_ACCESS_REGISTRANTS_ONLY:
      return 'EA-RO';
    case PrType.PR_TYPE_WRITE_EXCLUSIVE_ALL_REGISTRANTS:
      return 'WE-AR';
    case PrType.PR_TYPE_EXCLUSIVE_ACCESS_ALL_REGISTRANTS:
      return 'EA-AR';
    case PrType.UNRECOGNIZED:
      return `type ${String(type)}`;
  }
}

/** Words for an outcome, e.g. "RESERVATION CONFLICT". */
export function outcomeWords(outcome: Outcome): string {
  return outcomeToJSON(outcome)
    .replace(/^OUTCOME_/, '')
    .replaceAll('_', ' ');
}

/** Sense in words, e.g. "UNIT ATTENTION: registrations preempted (asc/ascq 2a/05)". */
export function senseWords(sense: Sense): string {
  const hex = (n: number) => n.toString(16).padStart(2, '0');
  const name = sense.senseKeyName || `sense key 0x${sense.senseKey.toString(16)}`;
  const words = sense.description || `asc/ascq ${hex(sense.asc)}/${hex(sense.ascq)}`;
  const pointer = sense.fieldPointer
    ? ` (${sense.fieldPointer.inCdb ? 'command' : 'parameter'} byte ${sense.fieldPointer.byte}` +
      (sense.fieldPointer.bit !== undefined ? `, bit ${sense.fieldPointer.bit})` : ')')
    : '';
  const deferred = sense.deferred ? ' [deferred]' : '';
  return `${name}: ${words}${pointer} (asc/ascq ${hex(sense.asc)}/${hex(sense.ascq)})${deferred}`;
}

/** Text of a TransportID: the server's display form, else a best effort from the fields. */
export function transportIdWords(id: TransportId | undefined): string {
  if (!id) return '';
  if (id.display) return id.display;
  switch (id.id?.$case) {
    case 'fc':
      return `fc:${formatKey(id.id.value.wwpn)}`;
    case 'sas':
      return `sas:${formatKey(id.id.value.sasAddress)}`;
    case 'iscsi':
      return `iscsi:${id.id.value.name}${id.id.value.isid ? `,i,0x${id.id.value.isid}` : ''}`;
    case 'raw':
      return `raw:${Buffer.from(id.id.value).toString('hex')}`;
    case undefined:
      return '';
  }
}

/** Age of a timestamp in words, e.g. "3s ago". */
function ago(date: Date | undefined, now: Date): string {
  if (!date) return '-';
  const s = Math.max(0, Math.round((now.getTime() - date.getTime()) / 1000));
  return s < 120
    ? `${s}s ago`
    : s < 7200
      ? `${Math.round(s / 60)}m ago`
      : `${Math.round(s / 3600)}h ago`;
}

/** How `prfleet agents` names an agent's link. */
export function linkName(link: AgentLink): string {
  switch (link) {
    case AgentLink.AGENT_LINK_STREAM:
      return 'stream';
    case AgentLink.AGENT_LINK_LONG_POLL:
      return 'long-poll';
    default:
      return '-';
  }
}

/** Table of agents. */
export function renderAgents(agents: readonly Agent[], now = new Date()): string {
  if (agents.length === 0) return 'No agents known to this server.';
  const t = table([
    'agent',
    'host',
    'site',
    'state',
    'link',
    'paths',
    'transport',
    'heartbeat',
    'labels',
  ]);
  for (const a of agents) {
    const labels = Object.entries(a.labels)
      .map(([k, v]) => `${k}=${v}`)
      .join(' ');
    t.push([
      a.agentId,
      a.hostname,
      a.site,
      a.connected ? 'connected' : 'offline',
      linkName(a.link),
      String(a.pathCount),
      a.transport,
      ago(a.lastHeartbeatAt, now),
      labels,
    ]);
  }
  return t.toString();
}

/** Name of a PERIPHERAL DEVICE TYPE (SPC-4 table 49). */
export function deviceTypeName(type: number): string {
  return type === 8 ? 'changer' : type === 1 ? 'tape' : type === 0 ? 'disk' : `type ${type}`;
}

/** Table of logical units, one row per LU with every path. */
export function renderDevices(units: readonly LogicalUnit[]): string {
  if (units.length === 0) return 'No logical units match.';
  const t = table(['loader', 'logical unit', 'type', 'product', 'profile', 'paths (agent:path)']);
  for (const lu of units) {
    const paths = lu.paths
      .map((p) => {
        const port = transportIdWords(p.path?.initiatorPort);
        const state = !p.agentConnected
          ? ' [agent offline]'
          : p.path && !p.path.online
            ? ' [path offline]'
            : '';
        return `${p.agentId}:${p.path?.path ?? ''}${port ? ` ${port}` : ''}${state}`;
      })
      .join('\n');
    t.push([
      lu.loaderId || '-',
      lu.luId,
      deviceTypeName(lu.peripheralDeviceType),
      `${lu.vendor} ${lu.product} ${lu.revision}`.trim(),
      `${lu.capabilities?.profile ?? 'unknown'}\n(${capabilitySourceWords(lu.capabilities)})`,
      paths,
    ]);
  }
  return t.toString();
}

/** A short verdict for a result, e.g. "GOOD" or "CHECK CONDITION: ILLEGAL REQUEST: …". */
export function resultVerdict(result: CommandResult): string {
  const words = outcomeWords(result.outcome);
  if (result.outcome === Outcome.OUTCOME_CHECK_CONDITION && result.sense)
    return `${words}, ${senseWords(result.sense)}`;
  if (result.message && result.outcome !== Outcome.OUTCOME_GOOD)
    return `${words}: ${result.message}`;
  return words;
}

/** What to do after a result that is not GOOD (empty for GOOD). */
export function resultHint(result: CommandResult): string {
  switch (result.outcome) {
    case Outcome.OUTCOME_RESERVATION_CONFLICT:
      return 'the LU is reserved by another key, or this nexus is not registered with that key: see `prfleet reservation` and `prfleet keys`';
    case Outcome.OUTCOME_UNKNOWN:
    case Outcome.OUTCOME_TIMEOUT:
    case Outcome.OUTCOME_TRANSPORT_ERROR:
      return 'the command may or may not have run: re-read the LU (`prfleet keys`, `prfleet reservation`) before retrying';
    case Outcome.OUTCOME_REFUSED:
      return 'the agent refused the command; nothing was sent';
    case Outcome.OUTCOME_OS_ERROR:
      return 'the agent could not submit the command (see errno); nothing was sent';
    case Outcome.OUTCOME_DRY_RUN:
      return 'dry run: validated and encoded, nothing was sent';
    default:
      return '';
  }
}

/** Key/value table of a result's facts, followed by its decoded data and any unit attentions consumed. */
export function renderResult(action: string, result: CommandResult): string {
  const lines: string[] = [`${action}: ${resultVerdict(result)}`];
  const facts = plainTable();
  const row = (name: string, value: string) => facts.push({ [name]: value });
  row('nexus', `${result.agentId}:${result.path}`);
  if (result.luId) row('logical unit', result.luId);
  row(
    'status',
    deviceAnswered(result.outcome)
      ? `0x${result.status.toString(16).padStart(2, '0')} ${result.statusName || outcomeWords(result.outcome)}`
      : `none: ${outcomeWords(result.outcome)}`,
  );
  if (result.sense) row('sense', senseWords(result.sense));
  if (result.hostStatus !== 0)
    row('host status', `0x${result.hostStatus.toString(16).padStart(2, '0')}`);
  if (result.generation !== undefined)
    row('PRgeneration', `0x${result.generation.toString(16).padStart(8, '0')}`);
  if (result.duration) row('device time', `${durationMs(result.duration).toFixed(3)} ms`);
  if (result.cdb.length > 0) row('cdb', Buffer.from(result.cdb).toString('hex'));
  if (result.idempotencyKey) row('idempotency key', result.idempotencyKey);
  if (result.errno !== 0) row('errno', String(result.errno));
  if (result.message) row('message', result.message);
  row('command id', result.commandId);
  lines.push(facts.toString());
  const data = renderResultData(result);
  if (data) lines.push(data);
  if (result.unitAttentions.length > 0) lines.push(renderUnitAttentions(result));
  const hint = resultHint(result);
  if (hint) lines.push(`→ ${hint}`);
  return lines.join('\n');
}

/** The unit attentions a result consumed, as news. */
export function renderUnitAttentions(result: CommandResult): string {
  const items = result.unitAttentions.map(
    (ua) => `  • ${ua.sense ? senseWords(ua.sense) : 'UNIT ATTENTION'}`,
  );
  return [`Unit attentions consumed before the command ran (news for this nexus):`, ...items].join(
    '\n',
  );
}

/** The decoded data-in of a PRIN result as a table ('' when none). */
export function renderResultData(result: CommandResult): string {
  switch (result.data?.$case) {
    case 'readKeys':
      return renderKeys(result.data.value);
    case 'readReservation':
      return renderReservation(result.data.value);
    case 'capabilities':
      return renderCapabilities(result.data.value);
    case 'fullStatus':
      return renderFullStatus(result.data.value);
    case undefined:
      return '';
  }
}

function truncatedNote(truncated: boolean): string {
  return truncated ? '\n(truncated by the allocation length: raise --allocation-length)' : '';
}

function renderKeys(data: ReadKeysData): string {
  if (data.keys.length === 0) return `No keys registered.${truncatedNote(data.truncated)}`;
  const t = table(['#', 'registered key']);
  data.keys.forEach((k, i) => t.push([String(i + 1), formatKey(k)]));
  return `${data.keys.length} registration(s):\n${t.toString()}${truncatedNote(data.truncated)}`;
}

function renderReservation(data: ReadReservationData): string {
  if (!data.reserved) return `No persistent reservation.${truncatedNote(data.truncated)}`;
  const t = table(['holder key', 'type', 'scope']);
  t.push([
    formatKey(data.key),
    prTypeShortName(data.type),
    data.scope === 0 ? 'LU' : `0x${data.scope.toString(16)}`,
  ]);
  return `Reserved:\n${t.toString()}${truncatedNote(data.truncated)}`;
}

function renderCapabilities(data: CapabilitiesData): string {
  const t = plainTable();
  const yes = (b: boolean) => (b ? 'yes' : 'no');
  t.push(
    { 'replace lost reservation (RLR_C)': yes(data.rlrC) },
    { 'compatible reservation handling (CRH)': yes(data.crh) },
    { 'SPEC_I_PT (SIP_C)': yes(data.sipC) },
    { 'ALL_TG_PT (ATP_C)': yes(data.atpC) },
    { 'persist through power loss (PTPL_C)': yes(data.ptplC) },
    { 'PTPL active (PTPL_A)': yes(data.ptplA) },
    { 'allow commands': String(data.allowCommands) },
    {
      'types (TMV)': data.tmv
        ? data.supportedTypes.map(prTypeShortName).join(' ')
        : 'type mask not valid',
    },
  );
  return `${t.toString()}${truncatedNote(data.truncated)}`;
}

function renderFullStatus(data: FullStatusData): string {
  if (data.descriptors.length === 0) return `No registrations.${truncatedNote(data.truncated)}`;
  const t = table(['key', 'holder', 'type', 'all_tg_pt', 'rel tgt port', 'initiator port']);
  for (const d of data.descriptors) {
    t.push([
      formatKey(d.key),
      d.reservationHolder ? 'yes' : '',
      d.reservationHolder ? prTypeShortName(d.type) : '',
      d.allTgPt ? 'yes' : '',
      String(d.relativeTargetPort),
      transportIdWords(d.transportId),
    ]);
  }
  return `${data.descriptors.length} registered nexus(es):\n${t.toString()}${truncatedNote(data.truncated)}`;
}
