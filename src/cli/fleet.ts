/**
 * The CLI side of FleetService: `loaders`, `who-holds`, `watch`, `webhooks …`, `audit`, `plan`, `apply`,
 * `takeover`, `reset-lu`, `registry …` and `desired …`, one module per group, all run through the one runner (runner.ts) with the
 * program's `--server`, `-o` and transport flags. Tables for people; `-o json` prints one JSON object per line
 * as events arrive.
 */
import { registerAuditCommand } from './audit.js';
import { registerDesiredCommands } from './desired.js';
import { ExitCode } from './exit-codes.js';
import { registerLoaderCommands } from './loaders.js';
import { registerRegistryCommands } from './registry.js';
import { registerResetLuCommand } from './reset-lu.js';
import { registerRolloutCommands } from './rollouts.js';
import type { Cli } from './runner.js';
import { registerWatchCommand } from './watch.js';
import { registerWebhookCommands } from './webhooks.js';

export { connectFleet } from './client.js';
export {
  fleetJson,
  renderFindings,
  renderReports,
  rolloutLine,
  verdictLines,
} from './fleet-render.js';

/** Exit code of a rollout that did not succeed (partial, aborted, cancelled): prfleet's own. */
export const ROLLOUT_FAILED_EXIT_CODE = ExitCode.ROLLOUT_FAILED;
/** Exit code of an audit with critical findings: prfleet's own. */
export const AUDIT_CRITICAL_EXIT_CODE = ExitCode.AUDIT_CRITICAL;

/** Adds the fleet commands, in the order `--help` lists them. */
export function registerFleetCommands(cli: Cli): void {
  registerLoaderCommands(cli);
  registerWatchCommand(cli);
  registerWebhookCommands(cli);
  registerAuditCommand(cli);
  registerRolloutCommands(cli);
  registerResetLuCommand(cli);
  registerRegistryCommands(cli);
  registerDesiredCommands(cli);
}
