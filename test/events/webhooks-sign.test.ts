// The signature recipe of docs/events.md, run as written (openssl in a shell), agrees with what the server
// sends; retry delays stay within their documented bounds.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  retryDelayMs,
  signWebhook,
  verifyWebhook,
  WEBHOOK_DEFAULTS,
} from '../../src/server/webhooks/index.js';

describe('webhook signatures and retry delays', () => {
  it('the shell recipe of docs/events.md (openssl) computes the signature the server sends', () => {
    const dir = mkdtempSync(join(tmpdir(), 'prfleet-wh-'));
    const secret = 'f'.repeat(8) + 'secret-with-ascii-0123';
    const body = '{"cursor":"42","summary":"PREEMPT → GOOD","time":"2026-12-07T12:00:00Z"}';
    writeFileSync(join(dir, 'webhook.secret'), secret);
    writeFileSync(join(dir, 'body.json'), body);
    const ts = Math.floor(Date.now() / 1000);
    const sig = signWebhook(secret, ts, body);
    const script = `expected="v1=$( { printf '%s.' "$TS"; cat body.json; } | openssl dgst -sha256 -hmac "$(cat webhook.secret)" -r | cut -d' ' -f1)"
[ "$expected" = "$SIG" ] && [ $(( $(date +%s) - TS )) -le 300 ] && echo valid || echo INVALID`;
    const run = (s: string, t: number) =>
      execFileSync('bash', ['-c', script], {
        cwd: dir,
        env: { ...process.env, TS: String(t), SIG: s },
      })
        .toString()
        .trim();
    expect(run(sig, ts)).toBe('valid');
    expect(run(signWebhook(secret, ts, `${body} `), ts)).toBe('INVALID');
    expect(run(signWebhook(secret, ts - 400, body), ts - 400)).toBe('INVALID'); // too old: a replay
    expect(verifyWebhook(secret, { timestamp: String(ts), signature: sig }, body)).toBe(true);
    expect(
      verifyWebhook(
        secret,
        { timestamp: String(ts - 400), signature: signWebhook(secret, ts - 400, body) },
        body,
      ),
    ).toBe(false);
  });

  it('doubles the delay per attempt up to the cap, with 50–100 % jitter', () => {
    const settings = { ...WEBHOOK_DEFAULTS, backoffMs: 1_000, backoffMaxMs: 60_000 };
    for (const [attempts, base] of [
      [1, 1_000],
      [2, 2_000],
      [5, 16_000],
      [7, 60_000],
      [60, 60_000],
    ] as const) {
      for (let i = 0; i < 50; i++) {
        const d = retryDelayMs(attempts, settings);
        expect(d).toBeGreaterThanOrEqual(base * 0.5);
        expect(d).toBeLessThanOrEqual(base);
      }
    }
  });
});
