export * from './sae.js';
export * from './attribution.js';
export * from './splice.js';
