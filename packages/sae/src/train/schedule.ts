import type { TrainArchitecture } from './spec.js';

/**
 * The learning rate at each optimiser step: linear warm-up from lr/warmupSteps to lr over the first warmupSteps,
 * then lr, then a linear decay towards 0 over the last decayFraction of totalSteps.
 */
export function learningRateSchedule(
  lr: number,
  totalSteps: number,
  warmupSteps: number,
  decayFraction: number,
): (step: number) => number {
  const decayFrom = Math.floor(totalSteps * (1 - decayFraction));
  return (step) => {
    let f = 1;
    if (warmupSteps > 0 && step < warmupSteps) f = (step + 1) / warmupSteps;
    if (step >= decayFrom && totalSteps > decayFrom) f *= (totalSteps - step) / (totalSteps - decayFrom);
    return lr * f;
  };
}

/** λ of the ReLU architecture's L1 penalty at optimiser step `step` (from 0): rises linearly over l1WarmupSteps. */
export function l1Coefficient(arch: Extract<TrainArchitecture, { kind: 'relu' }>, step: number): number {
  const warm = arch.l1WarmupSteps ?? 0;
  return arch.l1Coefficient * (warm > 0 ? Math.min(1, (step + 1) / warm) : 1);
}
