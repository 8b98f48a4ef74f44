// Builds packages/core/generated/tfjs-gradients.js: tfjs-core's gradient registrations and chained tensor
// methods as one self-contained ES module. tfjs-core publishes them only as extensionless ES modules that
// Node cannot load, while its package entry is a CommonJS bundle without them. The bundle carries its own
// copy of tfjs-core internals; that is safe because tfjs keeps the engine, the kernel and gradient registries
// and the Tensor class on the global object, and relp loads the package entry first (core/src/gradients.ts).
// Runs on `pnpm install` (root postinstall) and is git-ignored.
import { mkdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const require = createRequire(join(root, 'packages/core/package.json'));
const { build } = require(
  require.resolve('esbuild', { paths: [dirname(require.resolve('tsx/package.json'))] }),
);
const coreDir = dirname(require.resolve('@tensorflow/tfjs-core/package.json'));
const outfile = join(root, 'packages/core/generated/tfjs-gradients.js');
mkdirSync(dirname(outfile), { recursive: true });
await build({
  stdin: {
    contents: [
      "import '@tensorflow/tfjs-core/dist/public/chained_ops/register_all_chained_ops.js';",
      "import '@tensorflow/tfjs-core/dist/register_all_gradients.js';",
    ].join('\n'),
    resolveDir: coreDir,
  },
  bundle: true,
  format: 'esm',
  platform: 'neutral',
  mainFields: ['module', 'main'],
  target: 'es2020',
  outfile,
  logLevel: 'warning',
  // Node built-ins that tfjs-core's platform code mentions; never reached in the gradient code.
  external: ['node-fetch', 'util', 'worker_threads', 'perf_hooks'],
});
console.log(`built ${outfile}`);
