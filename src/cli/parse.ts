/**
 * Parsers for CLI option values. Each throws commander's InvalidArgumentError with a message that shows the bad
 * value and what would be accepted, so commander prints it and exits 1 (sg3_utils' syntax-error code).
 */
import { InvalidArgumentError } from '@commander-js/extra-typings';
import { PrType, TransportId } from '../gen/prfleet/v1/scsi.js';
import { parseKey } from '../scsi/keys.js';

/** Parses a reservation key written as `0x…` hex or decimal. */
export function parseKeyOption(value: string): bigint {
  try {
    return parseKey(value);
  } catch {
    throw new InvalidArgumentError(
      `${value} is not a reservation key (0x + up to 16 hex digits, or decimal)`,
    );
  }
}

/** Short reservation-type names accepted by `--type`, as sg_persist and SPC abbreviate them. */
export const PR_TYPE_NAMES: Readonly<Record<string, PrType>> = {
  we: PrType.PR_TYPE_WRITE_EXCLUSIVE,
  ea: PrType.PR_TYPE_EXCLUSIVE_ACCESS,
  'we-ro': PrType.PR_TYPE_WRITE_EXCLUSIVE_REGISTRANTS_ONLY,
  'ea-ro': PrType.PR_TYPE_EXCLUSIVE_ACCESS_REGISTRANTS_ONLY,
  'we-ar': PrType.PR_TYPE_WRITE_EXCLUSIVE_ALL_REGISTRANTS,
  'ea-ar': PrType.PR_TYPE_EXCLUSIVE_ACCESS_ALL_REGISTRANTS,
};

/** Parses `we|ea|we-ro|ea-ro|we-ar|ea-ar` (any case), or the SPC TYPE code 1, 3, 5, 6, 7, 8. */
export function parsePrType(value: string): PrType {
  const named = PR_TYPE_NAMES[value.trim().toLowerCase()];
  if (named !== undefined) return named;
  const code = Number(value);
  if (Number.isInteger(code) && Object.values(PR_TYPE_NAMES).includes(code)) return code;
  throw new InvalidArgumentError(
    `${value} is not a reservation type (we, ea, we-ro, ea-ro, we-ar, ea-ar)`,
  );
}

/** PERIPHERAL DEVICE TYPE names accepted by `devices --type` (SPC-4 table 49). */
const DEVICE_TYPE_NAMES: Readonly<Record<string, number>> = { disk: 0, tape: 1, changer: 8 };

/** Parses `changer|tape|disk` or a PERIPHERAL DEVICE TYPE number 0–31. */
export function parseDeviceType(value: string): number {
  const named = DEVICE_TYPE_NAMES[value.trim().toLowerCase()];
  if (named !== undefined) return named;
  if (/^\d{1,2}$/.test(value.trim())) {
    const code = Number(value);
    if (code <= 31) return code;
  }
  throw new InvalidArgumentError(
    `${value} is not a device type (changer, tape, disk, or a number 0-31)`,
  );
}

/** Parses a duration: `30s`, `500ms`, `2m`, or a plain number of seconds; returns milliseconds (> 0). */
export function parseDurationMs(value: string): number {
  const match = /^(\d+(?:\.\d+)?)(ms|s|m)?$/.exec(value.trim());
  if (match?.[1] !== undefined) {
    const amount = Number(match[1]);
    const unit = match[2] ?? 's';
    const ms = unit === 'ms' ? amount : unit === 'm' ? amount * 60_000 : amount * 1000;
    // 1 ms is the smallest useful device timeout; a week is far beyond any SCSI command (SG_IO takes ms in u32).
    if (ms >= 1 && ms <= 7 * 24 * 3600_000) return Math.round(ms);
  }
  throw new InvalidArgumentError(`${value} is not a duration (e.g. 30s, 500ms, 2m)`);
}

/** Parses a non-negative 32-bit integer (allocation length, relative target port, generation). */
export function parseUint32(value: string): number {
  const text = value.trim();
  const n = /^0[xX][0-9a-fA-F]{1,8}$/.test(text)
    ? Number(text)
    : /^\d{1,10}$/.test(text)
      ? Number(text)
      : NaN;
  if (Number.isInteger(n) && n >= 0 && n <= 0xffff_ffff) return n;
  throw new InvalidArgumentError(`${value} is not an unsigned 32-bit number`);
}

/** Parses a `key=value` label; collects repeated flags into a list. */
export function collectLabel(value: string, previous: string[] = []): string[] {
  if (!/^[^=\s]+=[^=]*$/.test(value)) {
    throw new InvalidArgumentError(`${value} is not a label (key=value)`);
  }
  return [...previous, value];
}

/**
 * Parses an initiator port in the form prfleet prints it: `sas:0x5000c50012345678`, `fc:0x21000024ff123456`,
 * `iscsi:<name>` or `iscsi:<name>,i,0x<12 hex digit ISID>`.
 */
export function parseTransportIdOption(value: string): TransportId {
  const text = value.trim();
  const hex = /^(sas|fc):(0[xX][0-9a-fA-F]{1,16})$/.exec(text);
  if (hex?.[1] !== undefined && hex[2] !== undefined) {
    const address = BigInt(hex[2]);
    return hex[1] === 'sas'
      ? TransportId.fromPartial({ id: { $case: 'sas', value: { sasAddress: address } } })
      : TransportId.fromPartial({ id: { $case: 'fc', value: { wwpn: address } } });
  }
  const iscsi = /^iscsi:([^,\s]+)(?:,i,0[xX]([0-9a-fA-F]{12}))?$/.exec(text);
  if (iscsi?.[1] !== undefined) {
    return TransportId.fromPartial({
      id: { $case: 'iscsi', value: { name: iscsi[1], isid: iscsi[2]?.toLowerCase() ?? '' } },
    });
  }
  throw new InvalidArgumentError(
    `${value} is not an initiator port (sas:0x<16 hex>, fc:0x<16 hex>, iscsi:<name>[,i,0x<isid>])`,
  );
}
