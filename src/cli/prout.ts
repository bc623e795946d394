/**
 * `prfleet register | reserve | release | clear | preempt | move`: the PERSISTENT RESERVE OUT commands through one
 * nexus, each with an idempotency key (given or generated), optional dry run, reason and precondition.
 */
import { PrType } from '../gen/prfleet/v1/scsi.js';
import {
  collectTransportId,
  printResult,
  proutBase,
  targetOf,
  withProutOptions,
} from './device-flags.js';
import { parseKeyOption, parsePrType, parseTransportIdOption, parseUint32 } from './parse.js';
import type { Cli } from './runner.js';

function registerRegister(cli: Cli): void {
  withProutOptions(
    cli.program
      .command('register')
      .description('PROUT REGISTER (or REGISTER AND IGNORE EXISTING KEY)'),
  )
    .option('--key <key>', "this nexus's current key (0 when unregistered)", parseKeyOption)
    .requiredOption('--new-key <key>', 'the key to register (0 unregisters)', parseKeyOption)
    .option(
      '--ignore-existing',
      'REGISTER AND IGNORE EXISTING KEY: no need to know the current key',
    )
    .option('--aptpl', 'persist through power loss')
    .option('--all-tg-pt', 'register through every target port')
    .option(
      '--spec-i-pt <port>',
      'also register this initiator port (repeatable)',
      collectTransportId,
    )
    .action(async (compact, opts) => {
      const base = proutBase(targetOf(cli, compact, opts, true), opts);
      await cli.control(async (client, output) => {
        const request = {
          target: base.target,
          options: base.options,
          key: opts.key ?? 0n,
          newKey: opts.newKey,
          ignoreExistingKey: opts.ignoreExisting === true,
          aptpl: opts.aptpl === true,
          allTgPt: opts.allTgPt === true,
          specIPtTransportIds: opts.specIPt ?? [],
        };
        const response = await client.register(request, base.call);
        const action = opts.ignoreExisting ? 'REGISTER AND IGNORE EXISTING KEY' : 'REGISTER';
        return printResult(cli, action, response.result, output);
      }, base.context);
    });
}

/** RESERVE and RELEASE: a key and a type. */
function registerReserveRelease(cli: Cli, which: 'reserve' | 'release'): void {
  const reserve = which === 'reserve';
  withProutOptions(
    cli.program
      .command(which)
      .description(
        reserve ? 'PROUT RESERVE: take the reservation' : 'PROUT RELEASE: give the reservation up',
      ),
  )
    .requiredOption(
      '--key <key>',
      reserve ? "this nexus's registered key" : "the holder's key",
      parseKeyOption,
    )
    .requiredOption(
      '--type <type>',
      reserve ? 'we, ea, we-ro, ea-ro, we-ar or ea-ar' : 'type of the reservation being released',
      parsePrType,
    )
    .action(async (compact, opts) => {
      const base = proutBase(targetOf(cli, compact, opts, true), opts);
      await cli.control(async (client, output) => {
        const request = {
          target: base.target,
          options: base.options,
          key: opts.key,
          type: opts.type,
        };
        const response = await (reserve
          ? client.reserve(request, base.call)
          : client.release(request, base.call));
        return printResult(cli, reserve ? 'RESERVE' : 'RELEASE', response.result, output);
      }, base.context);
    });
}

function registerClear(cli: Cli): void {
  withProutOptions(
    cli.program
      .command('clear')
      .description('PROUT CLEAR: remove every registration and the reservation'),
  )
    .requiredOption('--key <key>', "this nexus's registered key", parseKeyOption)
    .action(async (compact, opts) => {
      const base = proutBase(targetOf(cli, compact, opts, true), opts);
      await cli.control(async (client, output) => {
        const request = { target: base.target, options: base.options, key: opts.key };
        const response = await client.clear(request, base.call);
        return printResult(cli, 'CLEAR', response.result, output);
      }, base.context);
    });
}

function registerPreempt(cli: Cli): void {
  withProutOptions(
    cli.program.command('preempt').description("PROUT PREEMPT: remove another key's registrations"),
  )
    .requiredOption('--key <key>', "this nexus's registered key", parseKeyOption)
    .requiredOption(
      '--preempt-key <key>',
      'the victim key (0 only with an all-registrants reservation)',
      parseKeyOption,
    )
    .option('--type <type>', 'type of the reservation to take', parsePrType)
    .option('--abort', 'PREEMPT AND ABORT: also abort the victims\u2019 outstanding commands')
    .action(async (compact, opts) => {
      const base = proutBase(targetOf(cli, compact, opts, true), opts);
      await cli.control(async (client, output) => {
        const request = {
          target: base.target,
          options: base.options,
          key: opts.key,
          preemptKey: opts.preemptKey,
          type: opts.type ?? 0,
          abort: opts.abort === true,
        };
        const response = await client.preempt(request, base.call);
        const action = opts.abort ? 'PREEMPT AND ABORT' : 'PREEMPT';
        return printResult(cli, action, response.result, output);
      }, base.context);
    });
}

function registerMove(cli: Cli): void {
  withProutOptions(
    cli.program
      .command('move')
      .description('PROUT REGISTER AND MOVE: hand the reservation to another nexus'),
  )
    .requiredOption('--key <key>', "the holder's key", parseKeyOption)
    .requiredOption(
      '--destination-key <key>',
      'key to register for the destination',
      parseKeyOption,
    )
    .requiredOption(
      '--destination <port>',
      'destination initiator port, e.g. sas:0x5000c50012345678',
      parseTransportIdOption,
    )
    .requiredOption(
      '--relative-target-port <n>',
      'RELATIVE TARGET PORT IDENTIFIER of the destination nexus',
      parseUint32,
    )
    .option(
      '--type <type>',
      'TYPE sent in the CDB (informational: the device moves the reservation with its own type)',
      parsePrType,
    )
    .option('--unreg', 'unregister this nexus after the move')
    .option('--aptpl', 'persist through power loss')
    .action(async (compact, opts) => {
      const base = proutBase(targetOf(cli, compact, opts, true), opts);
      await cli.control(async (client, output) => {
        const request = {
          target: base.target,
          options: base.options,
          key: opts.key,
          destinationKey: opts.destinationKey,
          destination: opts.destination,
          relativeTargetPort: opts.relativeTargetPort,
          unreg: opts.unreg === true,
          aptpl: opts.aptpl === true,
          type: opts.type ?? PrType.PR_TYPE_UNSPECIFIED,
        };
        const response = await client.registerAndMove(request, base.call);
        return printResult(cli, 'REGISTER AND MOVE', response.result, output);
      }, base.context);
    });
}

/** Adds the PROUT commands, in the order `--help` lists them. */
export function registerProutCommands(cli: Cli): void {
  registerRegister(cli);
  registerReserveRelease(cli, 'reserve');
  registerReserveRelease(cli, 'release');
  registerClear(cli);
  registerPreempt(cli);
  registerMove(cli);
}
