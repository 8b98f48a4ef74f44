export * from './dequant.js';
export * from './metadata.js';
export * from './model.js';
export * from './reader.js';
export * from './tokenizer.js';
export * from './types.js';
