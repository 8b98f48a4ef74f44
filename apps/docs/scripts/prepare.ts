/** Writes the tiny test model into public/hub/<id>/resolve/main/, where the demo downloads it like a hub model. */
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { TINY_MODEL_ID, tinyModelFiles } from './tiny-model.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const folder = join(root, 'public', 'hub', ...TINY_MODEL_ID.split('/'), 'resolve', 'main');
mkdirSync(folder, { recursive: true });
for (const [name, bytes] of Object.entries(tinyModelFiles())) writeFileSync(join(folder, name), bytes);
console.log(`wrote the tiny test model to ${folder}`);
