/**
 * Writes the tiny test model into public/hub/<id>/resolve/main/, where the demo downloads it like a hub model, and
 * the method page's table of methods (content/generated/methods.md).
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { METHODS } from '@relp/methods';
import { TINY_MODEL_ID, tinyModelFiles } from './tiny-model.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const folder = join(root, 'public', 'hub', ...TINY_MODEL_ID.split('/'), 'resolve', 'main');
mkdirSync(folder, { recursive: true });
for (const [name, bytes] of Object.entries(tinyModelFiles())) writeFileSync(join(folder, name), bytes);
console.log(`wrote the tiny test model to ${folder}`);

// The methods table of the method page, from the methods registry (the names the CLI and the demo offer).
const methodsMd = [
  '## The methods relp offers',
  '',
  'One registry names them for the CLI (`--method`, `--methods`), the library (`compareMethods`) and the live demo.',
  '',
  '| name | method | what it computes | cost | defined in |',
  '|---|---|---|---|---|',
  ...METHODS.map(
    (m) =>
      `| \`${m.name}\`${m.aliases.length ? ` (${m.aliases.map((a) => `\`${a}\``).join(', ')})` : ''} | ${m.title} | ${m.summary} | ${m.cost} | ${m.section} above |`,
  ),
  '',
].join('\n');
const generated = join(root, 'content', 'generated');
mkdirSync(generated, { recursive: true });
writeFileSync(join(generated, 'methods.md'), methodsMd);
console.log(`wrote the methods table to ${join(generated, 'methods.md')}`);
