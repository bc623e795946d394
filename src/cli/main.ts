#!/usr/bin/env node
/** `prfleet`: the operator CLI. Wires argv and the process streams to runCli() and exits with its code. */
import { runCli } from './program.js';

// grpc-js sets the TLS server name to the host dialled; for an IP address (`--server 10.0.0.5:50051`, whose
// certificate carries an IP SAN) Node then prints DEP0123 on every run. The certificate is still checked
// against the address; only the SNI extension is left out, which is what RFC 6066 asks for.
const emitWarning = process.emitWarning.bind(process);
process.emitWarning = (warning: string | Error, ...rest: unknown[]) => {
  const first = rest[0];
  const code =
    typeof first === 'object' && first !== null && 'code' in first ? first.code : rest[1];
  if (code === 'DEP0123') return;
  (emitWarning as (...args: unknown[]) => void)(warning, ...rest);
};

// `prfleet agents | head`: a reader that goes away is not an error worth a stack trace.
for (const stream of [process.stdout, process.stderr]) {
  stream.on('error', (error: NodeJS.ErrnoException) => {
    if (error.code !== 'EPIPE') throw error;
    process.exit(typeof process.exitCode === 'number' ? process.exitCode : 0);
  });
}

process.exitCode = await runCli(process.argv.slice(2), {
  stdout: (text) => process.stdout.write(text),
  stderr: (text) => process.stderr.write(text),
});
