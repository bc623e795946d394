// A lying changer for the adversarial element-status tests: one agent (a valid session that says whatever the test
// tells it) reporting a changer and a drive of one loader, answering the reads of ListLoaders and Audit: the
// changer reserved by 0xc1, the drive by 0xd1 (a stranded cartridge), and the element status it is given.
import { expect, onTestFinished } from 'vitest';
import { createFleetClient, type FleetClient } from '../../src/common/client.js';
import { PrinAction, PrType } from '../../src/gen/prfleet/v1/scsi.js';
import {
  encodeElementStatusData,
  ElementType,
  type ElementDescriptor,
  type ElementStatusPage,
} from '../../src/scsi/index.js';
import { captureLog } from '../helpers/log-capture.js';
import { pgStore } from '../helpers/pg-store.js';
import { startTestServer } from '../helpers/server.js';
import { connectFakeAgent, fakePath, type FakeAgent } from '../server/fake-agent.js';

export const CHANGER = 'naa.5000e11100000001';
export const DRIVE = 'naa.5000e11100000002';

export function descriptor(
  address: number,
  extra: Partial<ElementDescriptor> = {},
): ElementDescriptor {
  return {
    address,
    full: false,
    except: false,
    access: true,
    importExportFlags: 0,
    asc: 0,
    ascq: 0,
    busInfo: 0,
    busAddress: 0,
    svalid: false,
    invert: false,
    ed: false,
    mediumType: 0,
    sourceAddress: 0,
    primaryVolumeTag: { identifier: '', sequence: 0 },
    vendorSpecific: new Uint8Array(0),
    ...extra,
  };
}

/** Element status: one drive (naming DRIVE by NAA) full with `barcode`, one empty slot; '#' becomes `byte`. */
export function elementStatus(barcode: string, byte: number): Uint8Array {
  const data = encodeElementStatusData(
    {
      firstElementAddress: 1,
      numberOfElements: 2,
      pages: [
        {
          elementType: ElementType.DATA_TRANSFER,
          pvoltag: true,
          avoltag: false,
          descriptors: [
            descriptor(1, {
              full: true,
              primaryVolumeTag: { identifier: barcode, sequence: 0 },
              identifier: {
                codeSet: 1,
                identifierType: 3,
                value: Buffer.from(DRIVE.slice(4), 'hex'),
              },
            }),
          ],
        },
        {
          elementType: ElementType.STORAGE,
          pvoltag: true,
          avoltag: false,
          descriptors: [
            descriptor(0x20, {
              identifier: { codeSet: 1, identifierType: 0, value: new Uint8Array(0) },
            }),
          ],
        },
      ],
    },
    { dvcid: true },
  );
  const at = Buffer.from(data).indexOf(Buffer.from(barcode, 'latin1'));
  data[at + barcode.indexOf('#')] = byte;
  return data;
}

/** Answers every read: changer reserved by 0xc1, drive by 0xd1 (so a cartridge is stranded), the element status. */
async function answerReads(agent: FakeAgent, status: Uint8Array, stop: { done: boolean }) {
  while (!stop.done) {
    const command = await agent.nextCommand(60_000).catch(() => undefined);
    if (command === undefined) return;
    const key = command.path === '/dev/sg0' ? 0xc1n : 0xd1n;
    if (command.kind?.$case === 'readElementStatus')
      agent.respond(command, { dataIn: Buffer.from(status) });
    else if (
      command.kind?.$case === 'prin' &&
      command.kind.value.action === PrinAction.PRIN_ACTION_READ_KEYS
    )
      agent.respond(command, {
        data: { $case: 'readKeys', value: { generation: 2, keys: [key] } },
      });
    else if (command.kind?.$case === 'prin')
      agent.respond(command, {
        data: {
          $case: 'readReservation',
          value: { generation: 2, reserved: true, key, type: PrType.PR_TYPE_WRITE_EXCLUSIVE },
        },
      });
    else agent.respond(command);
  }
}

/** The summary of the first event the audit raised for `finding`, read with Watch from the log's start. */
export async function raised(fleet: FleetClient, finding: string, waitMs = 10_000) {
  const signal = AbortSignal.timeout(waitMs);
  try {
    for await (const response of fleet.watch({ afterCursor: 0n }, { signal })) {
      const event = response.message?.$case === 'event' ? response.message.value : undefined;
      if (event?.summary.startsWith(`raised ${finding} `)) return event.summary;
    }
  } catch (e) {
    if (!signal.aborted) throw e;
  }
  return undefined;
}

/** A data transfer element at `address` naming DRIVE, full with cartridge `barcode`. */
export function driveElement(address: number, barcode: string): ElementDescriptor {
  return descriptor(address, {
    full: true,
    primaryVolumeTag: { identifier: barcode, sequence: 0 },
    identifier: { codeSet: 1, identifierType: 3, value: Buffer.from(DRIVE.slice(4), 'hex') },
  });
}

/** Element status data of `pages` (volume tags and DVCID). */
export function elementPages(pages: ElementStatusPage[]): Uint8Array {
  const count = pages.reduce((n, p) => n + p.descriptors.length, 0);
  return encodeElementStatusData(
    { firstElementAddress: 0, numberOfElements: count, pages },
    { dvcid: true },
  );
}

/** A server on PostgreSQL with the lying changer's agent connected, answering with `status`. */
export async function lyingChanger(status: Uint8Array) {
  const capture = captureLog('warn');
  const { address, server } = await startTestServer({
    log: capture.log,
    deps: { store: await pgStore('advchanger') },
  });
  const agent = await connectFakeAgent(address, {
    agentId: 'host-a',
    paths: [
      fakePath('/dev/sg0', CHANGER),
      fakePath('/dev/sg1', DRIVE, { peripheralDeviceType: 1, serial: 'SN-drive' }),
    ],
  });
  await expect.poll(() => server.agents.get('host-a')?.paths.length).toBe(2);
  const stop = { done: false };
  onTestFinished(() => {
    stop.done = true;
  });
  void answerReads(agent, status, stop);
  const fleet = createFleetClient(address);
  onTestFinished(() => fleet.close());
  return { fleet, capture };
}
