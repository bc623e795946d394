import type { PlanStep } from '../../../gen/prfleet/v1/fleet.js';
import { judgeEffect as judgeProutEffect, type LuPrState } from '../../commands/reconcile.js';

/** What a fresh read says about whether `step` took effect since its precondition (see commands/reconcile.ts). */
export function judgeEffect(step: PlanStep, state: LuPrState): 'applied' | 'not-applied' | 'other' {
  if (step.prout === undefined) return 'other';
  return judgeProutEffect(step.prout, step.precondition?.expectedGeneration, state);
}
