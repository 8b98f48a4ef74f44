/**
 * Registers tfjs-core's gradients and chained tensor methods in a bundled browser build. @relp/core registers
 * them from a generated module that bundlers drop (its package.json `sideEffects` lists only
 * `src/gradients.ts`), so the worker imports tfjs-core's own registration modules here, as the umbrella
 * `@tensorflow/tfjs` package does. Browser bundles only: Node cannot load these extensionless ES modules.
 */
import '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-core/dist/public/chained_ops/register_all_chained_ops.js';
import '@tensorflow/tfjs-core/dist/register_all_gradients.js';
