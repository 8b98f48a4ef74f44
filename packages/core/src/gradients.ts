// tfjs-core ships its kernels' gradients, and the chained tensor methods some of them call (dy.clone(), …),
// separately from its package entry; the umbrella @tensorflow/tfjs package registers both on import. relp needs
// them for every backward pass, so this one module registers them (idempotent, and the only import-time effect
// in core; package.json lists it under sideEffects so bundlers keep it). The package entry must be evaluated
// first so that it owns the global engine and Tensor class (see scripts/build-tfjs-gradients.mjs).
import '@tensorflow/tfjs-core';
// Generated at install time (untyped).
import '../generated/tfjs-gradients.js';
