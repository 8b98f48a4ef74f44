export * from './sae.js';
