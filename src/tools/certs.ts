#!/usr/bin/env node
import { X509Certificate } from 'node:crypto';
import { appendFile, readFile } from 'node:fs/promises';
import { Command, InvalidArgumentError } from '@commander-js/extra-typings';
import {
  certificateNames,
  parseRevocationList,
  type CertificateNames,
} from '../server/auth/revocation.js';
import {
  CertToolError,
  initCa,
  issueAgentCert,
  issueClientCert,
  issueServerCert,
} from './openssl-ca.js';
import { isMainModule } from './main-module.js';

function days(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1)
    throw new InvalidArgumentError('expected a whole number of days >= 1');
  return n;
}

function collect(value: string, previous: string[]): string[] {
  return [...previous, value];
}

/**
 * `prfleet-certs`: a small CA for tests and small deployments (openssl CLI underneath).
 *   init --out dir                                  → ca.crt, ca.key
 *   issue-server --out dir [--host h]… [--ca dir]   → server.crt, server.key (+ ca.crt)
 *   issue-agent --id host-a --out dir [--allow g]…  → agent-host-a.crt, agent-host-a.key (+ ca.crt)
 *   issue-client --name ops --out dir              → client-ops.crt, client-ops.key (+ ca.crt)
 *   revoke --cert file --list file [--reason text]  → appends the certificate's issuer + serial and key (PRFLEET_TLS_REVOKED)
 * Prints one JSON line with the files written (revoke: the names listed and the list).
 */
export function createCertsProgram(print: (line: string) => void = (l) => console.log(l)) {
  const program = new Command('prfleet-certs').description(
    'create a CA and issue server/agent certificates (mTLS)',
  );
  addInit(program, print);
  addIssueServer(program, print);
  addIssueAgent(program, print);
  addIssueClient(program, print);
  addRevoke(program, print);
  return program;
}

type Print = (line: string) => void;

/** `init`: the CA's certificate and key. */
function addInit(program: Command, print: Print): void {
  program
    .command('init')
    .description('create ca.crt and ca.key')
    .requiredOption('--out <dir>', 'output directory')
    .option('--name <cn>', 'CA common name', 'prfleet CA')
    .option('--days <n>', 'validity in days', days, 3650)
    .option('--force', 'replace existing files', false)
    .action(async (o) => {
      print(
        JSON.stringify(
          await initCa({ out: o.out, commonName: o.name, days: o.days, force: o.force }),
        ),
      );
    });
}

/** `issue-server`: the server's TLS certificate. */
function addIssueServer(program: Command, print: Print): void {
  program
    .command('issue-server')
    .description('issue server.crt/server.key signed by the CA')
    .requiredOption('--out <dir>', 'output directory')
    .option('--ca <dir>', 'directory holding ca.crt and ca.key (default: --out)')
    .option(
      '--host <name>',
      'DNS name or IP the server is reached by (repeatable; default localhost, 127.0.0.1)',
      collect,
      [],
    )
    .option('--days <n>', 'validity in days', days, 825)
    .option('--force', 'replace existing files', false)
    .action(async (o) => {
      const files = await issueServerCert({
        out: o.out,
        hosts: o.host,
        days: o.days,
        force: o.force,
        ...(o.ca === undefined ? {} : { caDir: o.ca }),
      });
      print(JSON.stringify(files));
    });
}

/** `issue-agent`: one host agent's client certificate. */
function addIssueAgent(program: Command, print: Print): void {
  program
    .command('issue-agent')
    .description('issue agent-<id>.crt/.key for one host agent (CN and SAN URI prfleet:agent:<id>)')
    .requiredOption('--id <agent-id>', 'agent id (the host name the agent reports in Hello)')
    .requiredOption('--out <dir>', 'output directory')
    .option('--ca <dir>', 'directory holding ca.crt and ca.key (default: --out)')
    .option(
      '--allow <glob>',
      'device node or LU id glob the agent may report (repeatable; default any)',
      collect,
      [],
    )
    .option('--days <n>', 'validity in days', days, 825)
    .option('--force', 'replace existing files', false)
    .action(async (o) => {
      const files = await issueAgentCert({
        id: o.id,
        out: o.out,
        allow: o.allow,
        days: o.days,
        force: o.force,
        ...(o.ca === undefined ? {} : { caDir: o.ca }),
      });
      print(JSON.stringify(files));
    });
}

/** `issue-client`: a CLI or automation client's certificate. */
function addIssueClient(program: Command, print: Print): void {
  program
    .command('issue-client')
    .description(
      'issue client-<name>.crt/.key for a CLI or automation client of a TLS server without tokens (SAN URI prfleet:client:<name>; never an agent)',
    )
    .requiredOption('--name <name>', 'client name (shown in the server log)')
    .requiredOption('--out <dir>', 'output directory')
    .option('--ca <dir>', 'directory holding ca.crt and ca.key (default: --out)')
    .option('--days <n>', 'validity in days', days, 825)
    .option('--force', 'replace existing files', false)
    .action(async (o) => {
      const files = await issueClientCert({
        name: o.name,
        out: o.out,
        days: o.days,
        force: o.force,
        ...(o.ca === undefined ? {} : { caDir: o.ca }),
      });
      print(JSON.stringify(files));
    });
}

/** `revoke`: appends a certificate to the revocation list. */
function addRevoke(program: Command, print: Print): void {
  program
    .command('revoke')
    .description(
      "add a certificate to the revocation list the server reads (PRFLEET_TLS_REVOKED); a connected agent using it is cut off within the server's poll interval",
    )
    .requiredOption('--cert <file>', 'the certificate to revoke (PEM)')
    .requiredOption('--list <file>', 'the revocation list (created when missing)')
    .option('--reason <text>', 'why (kept as a comment in the list)', '')
    .action(async (o) => {
      print(
        JSON.stringify(await revokeCertificate({ cert: o.cert, list: o.list, reason: o.reason })),
      );
    });
}

/**
 * Appends `cert` to the revocation list `list` by what cannot be re-encoded: its issuer + serial and its public
 * key (`serial:…` and `spki:…` lines, auth/revocation.ts), with a comment naming the certificate and the
 * reason; a certificate already listed by those names is not added twice. Throws CertToolError for an
 * unreadable certificate or a list that is not a revocation list.
 */
export async function revokeCertificate(options: {
  cert: string;
  list: string;
  reason?: string;
  now?: Date;
}): Promise<{
  fingerprint256: string;
  serial: string;
  spki: string;
  list: string;
  added: boolean;
}> {
  let names: CertificateNames;
  let subject: string;
  let serialNumber: string;
  try {
    const cert = new X509Certificate(await readFile(options.cert));
    names = certificateNames(cert);
    subject = cert.subject.replace(/\n/g, ', ');
    serialNumber = cert.serialNumber;
  } catch (error) {
    throw new CertToolError(`cannot read certificate ${options.cert}: ${String(error)}`);
  }
  let existing = '';
  try {
    existing = await readFile(options.list, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT')
      throw new CertToolError(`cannot read revocation list ${options.list}: ${String(error)}`);
  }
  let listed: Set<string>;
  try {
    listed = parseRevocationList(existing, options.list);
  } catch (error) {
    throw new CertToolError((error as Error).message);
  }
  const result = { ...names, list: options.list };
  if (listed.has(names.serial) && listed.has(names.spki)) return { ...result, added: false };
  const reason = (options.reason ?? '').replace(/[\r\n#]/g, ' ').trim();
  const comment = `# ${subject}, serial ${serialNumber}, SHA-256 ${names.fingerprint256}, revoked ${(options.now ?? new Date()).toISOString()}${reason === '' ? '' : `: ${reason}`}`;
  await appendFile(
    options.list,
    `${existing === '' || existing.endsWith('\n') ? '' : '\n'}${comment}\n${names.serial}\n${names.spki}\n`,
  );
  return { ...result, added: true };
}

if (isMainModule(import.meta.url)) {
  try {
    await createCertsProgram().parseAsync(process.argv);
  } catch (error) {
    console.error(
      `prfleet-certs: ${error instanceof CertToolError ? error.message : String(error)}`,
    );
    process.exitCode = 1;
  }
}
