export {
  LLAMA_MODEL_TYPES,
  type LlamaConfig,
  type LlamaModelType,
  parseLlamaConfig,
  parseRope,
} from './config.js';
export { LlamaModel, type LlamaModelOptions, llamaFamily } from './model.js';
