export { GEMMA3_MODEL_TYPES, type Gemma3Config, parseGemma3Config } from './config.js';
export { Gemma3Model, type Gemma3ModelOptions, gemma3Family } from './model.js';
