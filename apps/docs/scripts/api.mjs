// API reference with TypeDoc, from the TypeScript sources of the public packages, into dist/api/.

import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Application } from 'typedoc';

const repo = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const packages = [
  'core',
  'lrp-rules',
  'loader',
  'tasks',
  'tokenizer',
  'weights',
  'report',
  'models-gpt2',
  'models-pythia',
  'models-llama',
  'web',
];
const entryPoints = packages.map((p) => join(repo, 'packages', p));

const app = await Application.bootstrapWithPlugins({
  entryPoints,
  entryPointStrategy: 'packages',
  packageOptions: {
    entryPoints: ['src/index.ts'],
    tsconfig: join(repo, 'tsconfig.json'),
    skipErrorChecking: true,
    disableSources: true,
  },
  tsconfig: join(repo, 'tsconfig.json'),
  out: join(repo, 'apps', 'docs', 'dist', 'api'),
  name: 'relp API reference',
  readme: 'none',
  disableSources: true,
  skipErrorChecking: true,
  excludePrivate: true,
  excludeInternal: true,
  logLevel: 'Warn',
  validation: { notExported: false, invalidLink: false },
});
const project = await app.convert();
if (!project) {
  console.error('TypeDoc could not convert the sources');
  process.exit(1);
}
await app.generateOutputs(project);
console.log(`API reference written to ${app.options.getValue('out')}`);
