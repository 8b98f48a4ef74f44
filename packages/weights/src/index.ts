export * from './float.js';
export * from './gguf/index.js';
export * from './safetensors/dtypes.js';
export * from './safetensors/reader.js';
export * from './safetensors/sharded.js';
export * from './safetensors/writer.js';
