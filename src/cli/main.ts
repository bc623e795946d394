#!/usr/bin/env node
/** `prfleet`: the operator CLI. Wires argv and the process streams to runCli() and exits with its code. */
import { runCli } from './program.js';

process.exitCode = await runCli(process.argv.slice(2), {
  stdout: (text) => process.stdout.write(text),
  stderr: (text) => process.stderr.write(text),
});
