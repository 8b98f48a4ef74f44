export * from './evaluate.js';
export * from './export.js';
export * from './nodes.js';
