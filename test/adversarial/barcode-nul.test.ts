// A changer's READ ELEMENT STATUS whose volume tag (barcode) holds U+0000 or a control character: a lying agent
// with a valid certificate, or a broken changer, against a real server with a PostgreSQL event log. Found: the
// barcode went as it was into ListLoaders and into the audit's element findings ("drive 0 … holds AB<NUL>CD,
// reserved by …"), and PostgreSQL's jsonb keeps no U+0000, so recording the audit's findings failed ("events:
// recording audit findings failed", \u0000 cannot be converted to text): that finding and those of every LU
// recorded after it never reached the observed states, Watch or webhooks. A barcode now shows its control
// characters as '.', as other words a device chose do.
import { describe, expect, it, onTestFinished } from 'vitest';
import { createFleetClient, type FleetClient } from '../../src/common/client.js';
import { PrinAction, PrType } from '../../src/gen/prfleet/v1/scsi.js';
import {
  encodeElementStatusData,
  ElementType,
  type ElementDescriptor,
} from '../../src/scsi/index.js';
import { captureLog } from '../helpers/log-capture.js';
import { pgStore } from '../helpers/pg-store.js';
import { startTestServer } from '../helpers/server.js';
import { connectFakeAgent, fakePath, type FakeAgent } from '../server/fake-agent.js';

const CHANGER = 'naa.5000e11100000001';
const DRIVE = 'naa.5000e11100000002';

function descriptor(address: number, extra: Partial<ElementDescriptor> = {}): ElementDescriptor {
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
function elementStatus(barcode: string, byte: number): Uint8Array {
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
    if (command.kind?.$case === 'readElementStatus') agent.respond(command, { dataIn: status });
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
async function raised(fleet: FleetClient, finding: string) {
  const signal = AbortSignal.timeout(10_000);
  for await (const response of fleet.watch({ afterCursor: 0n }, { signal })) {
    const event = response.message?.$case === 'event' ? response.message.value : undefined;
    if (event?.summary.startsWith(`raised ${finding} `)) return event.summary;
  }
  return undefined;
}

describe('a volume tag holding a control character', () => {
  it.each([
    ['U+0000', 0x00],
    ['ESC', 0x1b],
    ['CSI (U+009B)', 0x9b],
  ])(
    'with %s is shown as ".", and the audit records its findings',
    async (_, byte) => {
      const capture = captureLog('warn');
      const { address, server } = await startTestServer({
        log: capture.log,
        deps: { store: await pgStore('advbarcode') },
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
      void answerReads(agent, elementStatus('AB#CD', byte), stop);
      const fleet = createFleetClient(address);
      onTestFinished(() => fleet.close());

      const { loaders } = await fleet.listLoaders({ refresh: true });
      expect(loaders[0]?.drives[0]).toMatchObject({ luId: DRIVE, full: true, barcode: 'AB.CD' });
      for await (const _ of fleet.audit({}));
      const stranded = await raised(fleet, 'cartridge_stranded');
      expect(stranded).toContain('holds AB.CD, reserved by 0x00000000000000d1');
      expect(capture.withMessage(/recording audit findings failed/)).toEqual([]);
    },
    60_000,
  );
});
