import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { loadModel } from '../src/index.js';
import { nodeFs } from '../src/node.js';
import { toyConfig, toyFamily, toyTokenizer, toyWeights } from './helpers.js';

const dir = mkdtempSync(join(tmpdir(), 'relp-loader-hostile-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

let n = 0;
/** A model folder whose file `name` is `replacement` (a symlink to /dev/zero, or a FIFO); the others are real. */
async function folderWith(name: string, replacement: 'zero' | 'fifo', sharded = false): Promise<string> {
  const m = join(dir, `m${n++}`);
  await mkdir(m);
  const files: Record<string, Uint8Array | string> = {
    'config.json': toyConfig(),
    'tokenizer.json': toyTokenizer,
  };
  if (sharded) {
    files['model.safetensors.index.json'] = JSON.stringify({
      weight_map: { 'a.weight': 'shard.safetensors' },
    });
    files['shard.safetensors'] = toyWeights();
  } else files['model.safetensors'] = toyWeights();
  for (const [f, v] of Object.entries(files)) {
    if (f === name) continue;
    writeFileSync(join(m, f), v);
  }
  if (replacement === 'zero') symlinkSync('/dev/zero', join(m, name));
  else execFileSync('mkfifo', [join(m, name)]);
  return m;
}

const load = (m: string) =>
  loadModel(m, { fs: nodeFs, families: [toyFamily], loadTokenizer: (j: unknown) => j });

describe('a model folder with a file that is not a regular file', () => {
  for (const name of ['model.safetensors', 'config.json', 'tokenizer.json']) {
    for (const kind of ['zero', 'fifo'] as const) {
      it(`${name} as ${kind === 'zero' ? 'a symlink to /dev/zero' : 'a FIFO'}: BAD_INPUT at once`, async () => {
        const m = await folderWith(name, kind);
        const t0 = performance.now();
        const err = await load(m).catch((e) => e);
        expect(err).toMatchObject({ code: 'BAD_INPUT' });
        expect(err.message).toContain(join(m, name));
        expect(err.message).toMatch(kind === 'zero' ? /character device/ : /FIFO/);
        expect(performance.now() - t0).toBeLessThan(3000);
      });
    }
  }

  for (const name of ['model.safetensors.index.json', 'shard.safetensors']) {
    it(`a sharded folder's ${name} as a FIFO: BAD_INPUT`, async () => {
      const m = await folderWith(name, 'fifo', true);
      await expect(load(m)).rejects.toMatchObject({ code: 'BAD_INPUT' });
    });
  }

  it('a .gguf path that is a symlink to /dev/zero: BAD_INPUT', async () => {
    const p = join(dir, 'model.gguf');
    symlinkSync('/dev/zero', p);
    await expect(load(p)).rejects.toMatchObject({ code: 'BAD_INPUT', message: /character device/ });
  });

  it('a symlink to a regular file is read as that file', async () => {
    const real = join(dir, 'real');
    await mkdir(real);
    writeFileSync(join(real, 'model.safetensors'), toyWeights());
    const m = join(dir, 'linked');
    await mkdir(m);
    writeFileSync(join(m, 'config.json'), toyConfig());
    symlinkSync(join(real, 'model.safetensors'), join(m, 'model.safetensors'));
    const r = await load(m);
    expect(r.source.kind).toBe('folder');
    r.model.dispose();
  });

  it('a config.json larger than any config is refused before it is read', async () => {
    const m = await folderWith('config.json', 'zero');
    rmSync(join(m, 'config.json'));
    // A sparse file: 300 MiB on paper, nothing on disk.
    execFileSync('truncate', ['-s', '300M', join(m, 'config.json')]);
    await expect(load(m)).rejects.toMatchObject({ code: 'BAD_INPUT', message: /more than the 256\.0 MiB/ });
  });

  it('a weight file of gigabytes behind a small header is refused from its header, not read whole', async () => {
    const m = await folderWith('tokenizer.json', 'zero');
    // A valid toy file, then 3 GiB of trailing zeros (sparse: nothing on disk).
    execFileSync('truncate', ['-s', '+3G', join(m, 'model.safetensors')]);
    const rss0 = process.memoryUsage().rss;
    const t0 = performance.now();
    const err = await loadModel(m, { fs: nodeFs, families: [toyFamily] }).catch((e) => e);
    expect(err).toMatchObject({
      code: 'BAD_MODEL_FILE',
      message: /3221225472 trailing bytes belong to no tensor/,
    });
    expect(performance.now() - t0).toBeLessThan(2000);
    expect((process.memoryUsage().rss - rss0) / 2 ** 20).toBeLessThan(100);
  });
});
