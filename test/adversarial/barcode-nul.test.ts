// A changer's READ ELEMENT STATUS whose volume tag (barcode) holds U+0000 or a control character: a lying agent
// with a valid certificate, or a broken changer, against a real server with a PostgreSQL event log. Found: the
// barcode went as it was into ListLoaders and into the audit's element findings ("drive 0 … holds AB<NUL>CD,
// reserved by …"), and PostgreSQL's jsonb keeps no U+0000, so recording the audit's findings failed ("events:
// recording audit findings failed", \u0000 cannot be converted to text): that finding and those of every LU
// recorded after it never reached the observed states, Watch or webhooks. A barcode now shows its control
// characters as '.', as other words a device chose do.
import { describe, expect, it } from 'vitest';
import { elementStatus, lyingChanger, raised, DRIVE } from './lying-changer.js';

describe('a volume tag holding a control character', () => {
  it.each([
    ['U+0000', 0x00],
    ['ESC', 0x1b],
    ['CSI (U+009B)', 0x9b],
  ])(
    'with %s is shown as ".", and the audit records its findings',
    async (_, byte) => {
      const { fleet, capture } = await lyingChanger(elementStatus('AB#CD', byte));

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
