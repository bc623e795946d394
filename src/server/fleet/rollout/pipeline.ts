import type { PlanStep } from '../../../gen/prfleet/v1/fleet.js';
import { createCommandPipeline, type CommandPipeline } from '../../commands/pipeline.js';
import { judgeEffect as judgeProutEffect, type LuPrState } from '../../commands/reconcile.js';
import { createMemoryJournal } from '../../journal.js';
import type { FleetDeps } from '../deps.js';

/** The fleet's own pipeline when the server gives none (tests of the engine alone). */
export function pipelineOf(deps: FleetDeps): CommandPipeline {
  return (
    deps.commands ??
    createCommandPipeline({
      router: deps.router,
      // Fleet steps journal themselves ('caller'); this journal is never used.
      journal: createMemoryJournal(),
      marginMs: 0,
      log: deps.log,
      luSerializer: deps.luSerializer,
    })
  );
}

/** What a fresh read says about whether `step` took effect since its precondition (see commands/reconcile.ts). */
export function judgeEffect(step: PlanStep, state: LuPrState): 'applied' | 'not-applied' | 'other' {
  if (step.prout === undefined) return 'other';
  return judgeProutEffect(step.prout, step.precondition?.expectedGeneration, state);
}
