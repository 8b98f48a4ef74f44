export * from './greater-than.js';
export * from './ioi.js';
export * from './jsonl.js';
export * from './registry.js';
export * from './rng.js';
export * from './sva.js';
export * from './tokenize.js';
export * from './types.js';
