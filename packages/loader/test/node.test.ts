import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadModel } from '../src/index.js';
import { defaultCacheDir, nodeFs, nodeLoadOptions } from '../src/node.js';
import { fakeHub, offlineFetch, sha256, toyConfig, toyFamily, toyTokenizer, toyWeights } from './helpers.js';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'relp-loader-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('node adapter', () => {
  it('defaultCacheDir: $RELP_CACHE, then $XDG_CACHE_HOME/relp, then ~/.cache/relp', () => {
    expect(defaultCacheDir({ RELP_CACHE: '/r', XDG_CACHE_HOME: '/x' }, '/home/u')).toBe('/r');
    expect(defaultCacheDir({ XDG_CACHE_HOME: '/x' }, '/home/u')).toBe('/x/relp');
    expect(defaultCacheDir({}, '/home/u')).toBe('/home/u/.cache/relp');
    expect(nodeLoadOptions({ RELP_CACHE: '/r', HF_TOKEN: 't' })).toMatchObject({
      cacheDir: '/r',
      token: 't',
    });
  });

  it('downloads through the real file system, resumes, and loads offline from the cache', async () => {
    const weights = toyWeights(40, 3);
    const hub = fakeHub('acme/toy', {
      'config.json': { bytes: toyConfig() },
      'model.safetensors': { bytes: weights, failAfter: 100 },
      'tokenizer.json': { bytes: toyTokenizer },
    });
    const cacheDir = join(dir, 'cache');
    const opts = {
      fs: nodeFs,
      fetch: hub.fetch,
      cacheDir,
      families: [toyFamily],
      loadTokenizer: (j: unknown) => j,
    };
    await expect(loadModel('acme/toy', opts)).rejects.toMatchObject({ code: 'NOT_AVAILABLE' });
    const folder = join(cacheDir, 'hub', 'acme', 'toy', 'main');
    expect((await readFile(join(folder, 'model.safetensors.part'))).length).toBe(100);
    const r = await loadModel('acme/toy', opts);
    expect(new Uint8Array(await readFile(join(folder, 'model.safetensors')))).toEqual(weights);
    expect((await readdir(folder)).sort()).toEqual(['config.json', 'model.safetensors', 'tokenizer.json']);
    expect(r.source.contentHash).toBe(`sha256:${sha256(weights)}`);
    const off = await loadModel('acme/toy', { ...opts, fetch: offlineFetch });
    expect(off.source.contentHash).toBe(r.source.contentHash);
  });

  it('loads a local folder by absolute path; stat of a missing path is undefined', async () => {
    const m = join(dir, 'model');
    await mkdir(m);
    await writeFile(join(m, 'config.json'), toyConfig());
    await writeFile(join(m, 'model.safetensors'), toyWeights());
    const r = await loadModel(m, { fs: nodeFs, families: [toyFamily] });
    expect(r.source.kind).toBe('folder');
    expect(await nodeFs.stat(join(dir, 'missing', 'x'))).toBeUndefined();
    expect(await nodeFs.stat(join(m, 'config.json', 'x'))).toBeUndefined();
  });
});
