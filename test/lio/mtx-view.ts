/**
 * One element per line in the same words for `mtx status` output and prfleet's loader view, so the two can be
 * compared: "drive 0 full from 3 ABC003L8", "drive 1 empty", "slot 2 full ABC002L8", "slot 17 mail empty".
 * Drives and slots are numbered as mtx numbers them (drives from 0; storage slots from 1, then mail slots).
 */
import type { Loader } from '../../src/gen/prfleet/v1/fleet.js';

/** `mtx status` output, one line per element. */
export function mtxView(status: string): string[] {
  const lines: string[] = [];
  for (const line of status.split('\n')) {
    const drive =
      /^Data Transfer Element (\d+):(Full|Empty)(?: \(Storage Element (\d+) Loaded\))?(?::VolumeTag = (\S+))?/.exec(
        line.trim(),
      );
    if (drive) {
      lines.push(
        drive[2] === 'Full'
          ? `drive ${drive[1]} full from ${drive[3] ?? '?'} ${drive[4] ?? ''}`
          : `drive ${drive[1]} empty`,
      );
      continue;
    }
    const slot = /^Storage Element (\d+)( IMPORT\/EXPORT)?:(Full|Empty)(?: :VolumeTag=(\S+))?/.exec(
      line.trim(),
    );
    if (slot)
      lines.push(
        `slot ${slot[1]}${slot[2] ? ' mail' : ''} ${slot[3] === 'Full' ? `full ${slot[4] ?? ''}` : 'empty'}`,
      );
  }
  return lines;
}

/** A ListLoaders entry, one line per element. */
export function loaderView(loader: Loader): string[] {
  return [
    ...loader.drives.map((d) =>
      d.full
        ? `drive ${d.index} full from ${d.sourceSlot === 0 ? '?' : d.sourceSlot} ${d.barcode}`
        : `drive ${d.index} empty`,
    ),
    ...loader.slots.map(
      (s) => `slot ${s.number}${s.mail ? ' mail' : ''} ${s.full ? `full ${s.barcode}` : 'empty'}`,
    ),
  ];
}
