export { type Gpt2Config, gpt2ConfigJson, parseGpt2Config } from './config.js';
export { Gpt2Model, type Gpt2ModelOptions } from './model.js';
export {
  GPT2_MEDIUM_CONFIG,
  GPT2_PRESETS,
  GPT2_SMALL_CONFIG,
  GPT2_TINY_CONFIG,
  type Gpt2PresetName,
  gpt2Family,
  randomGpt2Model,
} from './presets.js';
export {
  gpt2LayerWeightShapes,
  gpt2WeightShapes,
  type RandomGpt2Options,
  randomGpt2Weights,
  seededNormal,
} from './weights.js';
