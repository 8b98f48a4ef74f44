import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import {
  listCachedSaes,
  loadDictionaryLearningFolder,
  loadSaeLensFolder,
  loadTrainerState,
} from '../src/node.js';

const dir = mkdtempSync(join(tmpdir(), 'relp-sae-hostile-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

let n = 0;
/** A folder with `files` (text), `name` made a FIFO or a symlink to /dev/zero. */
function folder(files: Record<string, string>, name: string, kind: 'fifo' | 'zero'): string {
  const f = join(dir, `s${n++}`);
  mkdirSync(f);
  for (const [k, v] of Object.entries(files)) if (k !== name) writeFileSync(join(f, k), v);
  if (kind === 'fifo') execFileSync('mkfifo', [join(f, name)]);
  else symlinkSync('/dev/zero', join(f, name));
  return f;
}

describe('SAE folders with files that are not regular files', () => {
  const cases: [string, () => Promise<unknown>][] = [
    ['SAELens cfg.json as a FIFO', () => loadSaeLensFolder(folder({}, 'cfg.json', 'fifo'))],
    [
      'SAELens sae_weights.safetensors as /dev/zero',
      () => loadSaeLensFolder(folder({ 'cfg.json': '{}' }, 'sae_weights.safetensors', 'zero')),
    ],
    [
      'SAELens activation_scaler.json as a FIFO',
      () =>
        loadSaeLensFolder(
          folder({ 'cfg.json': '{}', 'sae_weights.safetensors': '' }, 'activation_scaler.json', 'fifo'),
        ),
    ],
    [
      'dictionary_learning ae.pt as /dev/zero',
      () => loadDictionaryLearningFolder(folder({}, 'ae.pt', 'zero')),
    ],
    [
      'dictionary_learning config.json as a FIFO',
      () => loadDictionaryLearningFolder(folder({ 'ae.pt': '' }, 'config.json', 'fifo')),
    ],
    ['a checkpoint trainer.json as a FIFO', () => loadTrainerState(folder({}, 'trainer.json', 'fifo'))],
    [
      'a checkpoint trainer.safetensors as /dev/zero',
      () => loadTrainerState(folder({ 'trainer.json': '{"saes":[]}' }, 'trainer.safetensors', 'zero')),
    ],
  ];
  for (const [name, load] of cases) {
    it(`${name}: BAD_INPUT at once`, async () => {
      const t0 = performance.now();
      await expect(load()).rejects.toMatchObject({ code: 'BAD_INPUT', message: /not a regular file/ });
      expect(performance.now() - t0).toBeLessThan(3000);
    });
  }

  it('listing the cache skips a metrics.json that is a FIFO instead of waiting on it', async () => {
    const root = join(dir, 'cache');
    mkdirSync(join(root, 'm', 'resid_post.3-topk'), { recursive: true });
    writeFileSync(join(root, 'm', 'resid_post.3-topk', 'cfg.json'), '{"d_in": 4}');
    execFileSync('mkfifo', [join(root, 'm', 'resid_post.3-topk', 'metrics.json')]);
    const list = await listCachedSaes(root);
    expect(list).toHaveLength(1);
    expect(list[0]!.cfg).toEqual({ d_in: 4 });
    expect(list[0]!.metrics).toBeUndefined();
  });
});
