export * from './circuit.js';
export * from './compare.js';
export * from './features.js';
export * from './html.js';
export * from './plots.js';
export * from './rules.js';
export * from './svg.js';
export * from './table.js';
