export { collectActivations } from './activations.js';
export { evaluateSaes } from './evaluate.js';
export { trainSaes } from './loop.js';
export { geometricMedian } from './ops.js';
export {
  parseHookPoint,
  type SaeMetrics,
  type SaeTrainSpec,
  type TrainArchitecture,
  type TrainOptions,
  type TrainProgress,
  type TrainResult,
} from './spec.js';
export { type SaeTrainerState, saesFromState, type TrainerState } from './state.js';
