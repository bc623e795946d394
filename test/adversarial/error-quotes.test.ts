// Errors quote what was sent (docs/api-limits.md: at most 64 characters, JSON-escaped, control characters as
// \u001b). Found: the edge refuses Unicode's bidirectional controls as control characters (a reason that displays
// unlike its bytes, test/hostile/bidi-text.test.ts), but the error refusing one quoted it raw, so the refusal
// itself displayed reordered in the caller's terminal (`options.reason: "host-c failed <U+202E>deliaf ton"
// contains a control character` read "host-c failed not failed"). Quotes now escape them like the other controls.
import { describe, expect, it } from 'vitest';
import { Status } from 'nice-grpc';
import { quoteInput, shownInput } from '../../src/common/errors.js';
import { startTestServer } from '../helpers/server.js';

const BIDI = [
  '\u200e',
  '\u200f',
  '\u202a',
  '\u202b',
  '\u202c',
  '\u202d',
  '\u202e',
  '\u2066',
  '\u2067',
  '\u2068',
  '\u2069',
];

describe('errors quoting input with bidirectional controls', () => {
  it('escape them, in the quote helpers and in a server’s refusal', async () => {
    for (const c of BIDI) {
      expect(quoteInput(`a${c}b`)).toBe(`"a\\u${c.charCodeAt(0).toString(16)}b"`);
      expect(shownInput(`a${c}b`)).toBe(`"a\\u${c.charCodeAt(0).toString(16)}b"`);
    }
    const { client } = await startTestServer();
    const error = (await client
      .register({
        target: { agentId: 'host-a', path: '/dev/sg2' },
        newKey: 0xa1n,
        options: { reason: 'host-c failed \u202edeliaf ton' },
      })
      .catch((e: unknown) => e)) as { code: Status; details: string };
    expect(error).toMatchObject({ code: Status.INVALID_ARGUMENT });
    expect(error.details).toContain('host-c failed \\u202edeliaf ton');
    expect(error.details).not.toMatch(/[\u200e\u200f\u202a-\u202e\u2066-\u2069]/);
  });
});
