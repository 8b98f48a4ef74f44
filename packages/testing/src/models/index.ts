// Test helpers that run models: the reference fixtures, the prefix and joined-run checks, and the conformance
// suite every model family runs. A separate entry from the package's main one, which imports no relp package
// (core's own tests import that one).
export * from './configs.js';
export * from './conformance.js';
export * from './errors.js';
export * from './fixtures.js';
export * from './known-circuit.js';
export * from './prefix.js';
