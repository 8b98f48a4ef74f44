import './gradients.js';

export * from './attribution/index.js';
export * from './backend.js';
export * from './checkpoint.js';
export * from './circuits/index.js';
export * from './context.js';
export * from './data.js';
export * from './decoder.js';
export * from './errors.js';
export * from './evaluation.js';
export * from './layers.js';
export * from './memory.js';
export * from './metrics.js';
export * from './model.js';
export * from './random.js';
export * from './sites.js';
export * from './slots.js';
export * from './weights.js';
