// How the CLI decides TLS vs plaintext, which files it trusts and which token it sends (resolveConnection), and
// how a bad setting reads to an operator, without a server.
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  ConnectionConfigError,
  parseServerAddress,
  resolveConnection,
} from '../../src/cli/connection.js';
import { ExitCode } from '../../src/cli/exit-codes.js';
import { runCli } from '../../src/cli/program.js';
import { createTestPki, type TestPki } from '../auth/pki.js';

let pki: TestPki;
let files: {
  ca: string;
  cert: string;
  key: string;
  otherKey: string;
  notPem: string;
  token: string;
  hashFile: string;
  twoTokens: string;
};
const TOKEN = 'prf_0123456789ab_abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQ';

beforeAll(async () => {
  pki = await createTestPki();
  const at = (name: string) => join(pki.dir, name);
  files = {
    ca: at('trust.crt'),
    cert: at('client.crt'),
    key: at('client.key'),
    otherKey: at('other.key'),
    notPem: at('not-pem.txt'),
    token: at('viewer.token'),
    hashFile: at('tokens.json'),
    twoTokens: at('two.token'),
  };
  await writeFile(files.ca, pki.ca);
  await writeFile(files.cert, pki.hostA.cert);
  await writeFile(files.key, pki.hostA.key);
  await writeFile(files.otherKey, pki.hostB.key);
  await writeFile(files.notPem, 'hello\n');
  await writeFile(files.token, `${TOKEN}\n`);
  await writeFile(files.hashFile, '{ "version": 1, "tokens": [] }\n');
  await writeFile(files.twoTokens, `${TOKEN}\n${TOKEN}\n`);
});
afterAll(async () => {
  await pki.cleanup();
});

const resolve = (
  server: string,
  flags: Parameters<typeof resolveConnection>[1] = {},
  env: Record<string, string> = {},
) => resolveConnection(server, flags, env);

describe('resolveConnection', () => {
  it('speaks TLS unless plaintext is asked for, trusting the system roots without --ca', () => {
    expect(resolve('prfleet.example:50051')).toEqual({
      address: 'prfleet.example:50051',
      tls: {},
      warnings: [],
    });
    expect(resolve('10.0.0.5:50051', { plaintext: true }).tls).toBe(false);
    expect(resolve('10.0.0.5:50051', {}, { PRFLEET_PLAINTEXT: 'true' }).tls).toBe(false);
    expect(resolve('10.0.0.5:50051', {}, { PRFLEET_PLAINTEXT: 'false' }).tls).toEqual({});
    expect(() => resolve('10.0.0.5:50051', {}, { PRFLEET_PLAINTEXT: 'maybe' })).toThrow(
      'PRFLEET_PLAINTEXT=maybe: expected true or false',
    );
  });

  it('reads https:// as TLS (port 443 by default) and http:// as plaintext', () => {
    expect(parseServerAddress('https://prfleet.example')).toEqual({
      address: 'prfleet.example:443',
      scheme: 'https',
    });
    expect(parseServerAddress('https://prfleet.example:8443/')).toEqual({
      address: 'prfleet.example:8443',
      scheme: 'https',
    });
    expect(parseServerAddress('http://[::1]:50051')).toEqual({
      address: '[::1]:50051',
      scheme: 'http',
    });
    expect(resolve('https://prfleet.example').tls).toEqual({});
    expect(resolve('http://127.0.0.1:50051').tls).toBe(false);
    expect(() => resolve('grpc://x:1')).toThrow('unknown scheme grpc://');
    expect(() => resolve('https://x:1/api')).toThrow('without a path');
  });

  it('refuses plaintext together with TLS settings, the command line winning over the environment', () => {
    expect(() => resolve('h:1', { plaintext: true, ca: files.ca })).toThrow(
      '--plaintext excludes --ca: choose TLS or plaintext',
    );
    expect(() => resolve('https://h:1', { plaintext: true })).toThrow(
      '--plaintext excludes https://',
    );
    expect(() => resolve('http://h:1', { tls: true })).toThrow('http:// excludes --tls');
    // The environment of a plaintext dev shell does not override an explicit --ca, nor the reverse.
    expect(resolve('h:1', { ca: files.ca }, { PRFLEET_PLAINTEXT: 'true' }).tls).toMatchObject({
      caSource: `--ca ${files.ca}`,
    });
    expect(resolve('h:1', { plaintext: true }, { PRFLEET_TLS_CA: files.ca }).tls).toBe(false);
    expect(() =>
      resolve('h:1', {}, { PRFLEET_PLAINTEXT: 'true', PRFLEET_TLS_CA: files.ca }),
    ).toThrow('PRFLEET_PLAINTEXT=true excludes PRFLEET_TLS_CA');
  });

  it('checks the CA, client certificate and key up front and names the file at fault', () => {
    const tls = resolve('h:1', { ca: files.ca, cert: files.cert, key: files.key }).tls;
    expect(tls).toMatchObject({ caSource: `--ca ${files.ca}` });
    expect(tls !== false && tls.cert?.toString()).toContain('BEGIN CERTIFICATE');
    expect(resolve('h:1', {}, { PRFLEET_TLS_CA: files.ca }).tls).toMatchObject({
      caSource: `PRFLEET_TLS_CA=${files.ca}`,
    });
    expect(() => resolve('h:1', { ca: '/nonexistent/ca.crt' })).toThrow(
      'cannot read CA file /nonexistent/ca.crt: ENOENT',
    );
    expect(() => resolve('h:1', { ca: files.notPem })).toThrow(
      `CA file ${files.notPem} holds no PEM certificate`,
    );
    expect(() => resolve('h:1', { cert: files.cert })).toThrow('--tls-cert needs --tls-key');
    expect(() => resolve('h:1', { key: files.key })).toThrow('--tls-key needs --tls-cert');
    expect(() => resolve('h:1', { cert: files.cert, key: files.otherKey })).toThrow(
      'do not belong together',
    );
    expect(() => resolve('h:1', { cert: files.cert, key: files.notPem })).toThrow(
      `client key ${files.notPem} is not a PEM private key`,
    );
    expect(() => resolve('h:1', { cert: files.cert, key: files.key })).not.toThrow();
    expect(() => resolve('h:1', { ca: '/nonexistent' })).toThrow(ConnectionConfigError);
  });

  it('takes the token from --token, --token-file, PRFLEET_TOKEN or PRFLEET_TOKEN_FILE, never from two at once', () => {
    expect(resolve('h:1', { tokenFile: files.token })).toMatchObject({
      token: TOKEN,
      tokenSource: `--token-file ${files.token}`,
    });
    expect(resolve('h:1', { token: TOKEN })).toMatchObject({
      token: TOKEN,
      tokenSource: '--token',
    });
    expect(resolve('h:1', {}, { PRFLEET_TOKEN: TOKEN })).toMatchObject({
      token: TOKEN,
      tokenSource: 'PRFLEET_TOKEN',
    });
    expect(resolve('h:1', {}, { PRFLEET_TOKEN_FILE: files.token })).toMatchObject({ token: TOKEN });
    expect(
      resolve('h:1', { tokenFile: files.token }, { PRFLEET_TOKEN: 'prf_other' }),
    ).toMatchObject({ token: TOKEN });
    expect(resolve('h:1')).not.toHaveProperty('token');
    expect(() => resolve('h:1', { token: TOKEN, tokenFile: files.token })).toThrow(
      '--token and --token-file exclude each other',
    );
    expect(() =>
      resolve('h:1', {}, { PRFLEET_TOKEN: TOKEN, PRFLEET_TOKEN_FILE: files.token }),
    ).toThrow('exclude each other');
    expect(() => resolve('h:1', { tokenFile: files.hashFile })).toThrow(
      "looks like the server's token hash file",
    );
    expect(() => resolve('h:1', { tokenFile: files.twoTokens })).toThrow(
      'must hold exactly one token',
    );
    expect(() => resolve('h:1', { tokenFile: '/nonexistent/t' })).toThrow(
      'cannot read token file /nonexistent/t: ENOENT',
    );
  });

  it('warns when a token file can be read by other users', () => {
    const modeOf = (mode: number) => () => mode;
    expect(
      resolveConnection('h:1', { tokenFile: files.token }, {}, undefined, modeOf(0o100644))
        .warnings,
    ).toEqual([
      `token file ${files.token} can be read by other users (mode 644): chmod 600 ${files.token}`,
    ]);
    expect(
      resolveConnection('h:1', { tokenFile: files.token }, {}, undefined, modeOf(0o100600))
        .warnings,
    ).toEqual([]);
    expect(
      resolveConnection('h:1', {}, { PRFLEET_TOKEN_FILE: files.token }, undefined, modeOf(0o100640))
        .warnings,
    ).toHaveLength(1);
  });

  it('warns when a token would cross a network without TLS, not on loopback', () => {
    expect(resolve('10.0.0.5:50051', { plaintext: true, token: TOKEN }).warnings).toEqual([
      'the bearer token goes to 10.0.0.5:50051 without TLS: anyone on the path can read and reuse it',
    ]);
    expect(resolve('127.0.0.1:50051', { plaintext: true, token: TOKEN }).warnings).toEqual([]);
    expect(resolve('localhost:50051', { plaintext: true, token: TOKEN }).warnings).toEqual([]);
    expect(resolve('10.0.0.5:50051', { token: TOKEN }).warnings).toEqual([]);
  });
});

describe('connection errors through runCli', () => {
  async function cli(...argv: string[]) {
    let stdout = '';
    let stderr = '';
    const code = await runCli(argv, {
      stdout: (t) => (stdout += t),
      stderr: (t) => (stderr += t),
      env: {},
    });
    return { code, stdout, stderr };
  }

  it('exits 1 naming an unreadable CA file, before dialling, in tables and JSON', async () => {
    const run = await cli('--server', '127.0.0.1:1', '--ca', '/nonexistent/ca.crt', 'agents');
    expect(run.code).toBe(ExitCode.USAGE);
    expect(run.stderr).toContain('prfleet: USAGE: cannot read CA file /nonexistent/ca.crt: ENOENT');
    expect(run.stderr).toContain('→ fix the connection flag or file named above');
    const json = await cli(
      '-o',
      'json',
      '--server',
      '127.0.0.1:1',
      '--plaintext',
      '--tls-ca',
      files.ca,
      'keys',
      'host-a:/dev/sg2',
    );
    expect(json.code).toBe(ExitCode.USAGE);
    expect(JSON.parse(json.stdout)).toMatchObject({
      error: {
        code: 'USAGE',
        exitCode: 1,
        message: '--plaintext excludes --ca: choose TLS or plaintext',
      },
    });
  });

  it('applies to the fleet and history commands too', async () => {
    for (const command of [['audit'], ['history', 'verify'], ['registry', 'list']]) {
      const run = await cli('--server', '127.0.0.1:1', '--tls-cert', files.cert, ...command);
      expect(run.code, command.join(' ')).toBe(ExitCode.USAGE);
      expect(run.stderr).toContain('--tls-cert needs --tls-key');
    }
  });

  it('lists the connection flags in --help and the new exit codes', async () => {
    const run = await cli('--help');
    for (const text of [
      '--plaintext',
      '--tls ',
      '--ca <file>',
      '--tls-cert <file>',
      '--tls-key <file>',
      '--token-file <file>',
      '86  RPC UNAUTHENTICATED',
      '87  RPC PERMISSION_DENIED',
      '88  TLS handshake failed',
    ]) {
      expect(run.stdout).toContain(text);
    }
  });
});
