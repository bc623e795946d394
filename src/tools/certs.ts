#!/usr/bin/env node
import { Command, InvalidArgumentError } from '@commander-js/extra-typings';
import { CertToolError, initCa, issueAgentCert, issueServerCert } from './openssl-ca.js';
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
 * Prints one JSON line with the files written.
 */
export function createCertsProgram(print: (line: string) => void = (l) => console.log(l)) {
  const program = new Command('prfleet-certs').description(
    'create a CA and issue server/agent certificates (mTLS)',
  );
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
  return program;
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
