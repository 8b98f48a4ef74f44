export * from './sae.js';
export * from './attribution.js';
export * from './splice.js';
export * from './circuits.js';
export * from './contexts.js';
