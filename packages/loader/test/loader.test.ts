import type { WeightMap } from '@relp/core';
import { ErrorCodes, isRelpError } from '@relp/core/errors';
import { readSafetensors, writeSafetensors } from '@relp/weights';
import { describe, expect, it } from 'vitest';
import {
  createMemoryFs,
  type DownloadProgress,
  FamilyRegistry,
  loadModel,
  parseModelRef,
  resolveModelFiles,
} from '../src/index.js';
import {
  fakeHub,
  offlineFetch,
  sha256,
  type ToyModel,
  toyConfig,
  toyFamily,
  toyTokenizer,
  toyWeights,
  utf8,
} from './helpers.js';

async function expectCode(p: Promise<unknown>, code: string, pattern?: RegExp): Promise<Error> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(isRelpError(err), `expected RelpError ${code}, got ${String(err)}`).toBe(true);
  expect((err as { code: string }).code).toBe(code);
  if (pattern) expect((err as Error).message).toMatch(pattern);
  return err as Error;
}

const CACHE = '/cache';
const cachePath = (file: string, id = 'acme/toy', rev = 'main') => `${CACHE}/hub/${id}/${rev}/${file}`;

describe('local folders', () => {
  const weights = toyWeights();
  const folderFs = () =>
    createMemoryFs({
      '/m/config.json': toyConfig(),
      '/m/model.safetensors': weights,
      '/m/tokenizer.json': toyTokenizer,
    });

  it('loads config, weights through the family, tokenizer through the injected step, and records the source', async () => {
    const seen: unknown[] = [];
    const r = await loadModel('/m', {
      fs: folderFs(),
      families: [toyFamily],
      loadTokenizer: (json) => {
        seen.push(json);
        return { kind: 'tok' as const };
      },
    });
    const model = r.model as ToyModel;
    expect(model.architecture).toBe('toy');
    expect(model.dims.vocabSize).toBe(5);
    expect([...model.weights.get('wte')!.data.slice(0, 3)]).toEqual([0, 1 / 7, 2 / 7].map(Math.fround));
    expect(model.weights.get('ln.weight')!.data[0]).toBe(1);
    expect(r.tokenizer).toEqual({ kind: 'tok' });
    expect(seen).toEqual([{ model: { type: 'BPE', vocab: { a: 0 } } }]);
    expect(r.config.n_embd).toBe(3);
    expect(r.source).toEqual({
      kind: 'folder',
      path: '/m',
      contentHash: `sha256:${sha256(weights)}`,
      files: ['config.json', 'model.safetensors', 'tokenizer.json'],
    });
  });

  it('without loadTokenizer there is no tokenizer', async () => {
    const r = await loadModel('/m', { fs: folderFs(), families: [toyFamily] });
    expect(r.tokenizer).toBeUndefined();
    expect(r.source.files).not.toContain('tokenizer.json');
  });

  it('loads sharded checkpoints; the content hash covers every shard', async () => {
    const s1 = writeSafetensors({ wte: { shape: [2, 3], data: new Float32Array(6).fill(2) } });
    const s2 = writeSafetensors({ other: { shape: [1], data: new Float32Array([9]) } });
    const index = {
      metadata: {},
      weight_map: { wte: 'model-00001-of-00002.safetensors', other: 'model-00002-of-00002.safetensors' },
    };
    const fs = createMemoryFs({
      '/s/config.json': toyConfig(),
      '/s/model.safetensors.index.json': JSON.stringify(index),
      '/s/model-00001-of-00002.safetensors': s1,
      '/s/model-00002-of-00002.safetensors': s2,
    });
    const r = await loadModel('/s', { fs, families: [toyFamily] });
    expect((r.model as ToyModel).weights.get('other')!.data[0]).toBe(9);
    const manifest = `${sha256(s1)}  model-00001-of-00002.safetensors\n${sha256(s2)}  model-00002-of-00002.safetensors\n`;
    expect(r.source.contentHash).toBe(`sha256:${sha256(manifest)}`);
    // a different shard changes the hash
    fs.files.set(
      '/s/model-00002-of-00002.safetensors',
      writeSafetensors({ other: { shape: [1], data: new Float32Array([8]) } }),
    );
    const r2 = await loadModel('/s', { fs, families: [toyFamily] });
    expect(r2.source.contentHash).not.toBe(r.source.contentHash);
  });

  it('reports malformed folders and configs with typed errors', async () => {
    const fam = { families: [toyFamily] };
    await expectCode(
      loadModel('/nope', { fs: createMemoryFs(), ...fam }),
      ErrorCodes.BadInput,
      /does not exist/,
    );
    await expectCode(
      loadModel('/m', { fs: createMemoryFs({ '/m/model.safetensors': toyWeights() }), ...fam }),
      ErrorCodes.BadModelFile,
      /no config\.json/,
    );
    await expectCode(
      loadModel('/m', { fs: createMemoryFs({ '/m/config.json': toyConfig() }), ...fam }),
      ErrorCodes.BadModelFile,
      /no safetensors weights/,
    );
    const withConfig = (config: string | Uint8Array, weights = toyWeights()) =>
      createMemoryFs({ '/m/config.json': config, '/m/model.safetensors': weights });
    await expectCode(
      loadModel('/m', { fs: withConfig('{not json'), ...fam }),
      ErrorCodes.BadModelFile,
      /not valid JSON/,
    );
    await expectCode(
      loadModel('/m', { fs: withConfig('[1]'), ...fam }),
      ErrorCodes.BadModelFile,
      /not a JSON object/,
    );
    await expectCode(
      loadModel('/m', { fs: withConfig('{"n_embd": 3}'), ...fam }),
      ErrorCodes.BadModelFile,
      /model_type/,
    );
    const unsupported = await expectCode(
      loadModel('/m', { fs: withConfig('{"model_type": "llama"}'), ...fam }),
      ErrorCodes.Unsupported,
      /"llama" is not supported \(supported: toy, toy2\)/,
    );
    expect((unsupported as unknown as { details: { supported: string[] } }).details.supported).toEqual([
      'toy',
      'toy2',
    ]);
    // a missing config field: the family throws a plain Error, the loader makes it BAD_MODEL_FILE naming the family
    await expectCode(
      loadModel('/m', { fs: withConfig('{"model_type": "toy"}'), ...fam }),
      ErrorCodes.BadModelFile,
      /toy family could not build the model \(config\.n_embd missing\)/,
    );
    const corrupt = toyWeights().slice(0, 40);
    await expectCode(
      loadModel('/m', { fs: withConfig(toyConfig(), corrupt), ...fam }),
      ErrorCodes.BadModelFile,
      /past the end|truncated/,
    );
  });

  it('refuses an index whose shards escape the folder or are missing', async () => {
    const fs = createMemoryFs({
      '/s/config.json': toyConfig(),
      '/s/model.safetensors.index.json': JSON.stringify({ weight_map: { wte: '../secret.safetensors' } }),
    });
    await expectCode(
      loadModel('/s', { fs, families: [toyFamily] }),
      ErrorCodes.BadModelFile,
      /safe relative/,
    );
    fs.files.set(
      '/s/model.safetensors.index.json',
      utf8(JSON.stringify({ weight_map: { wte: 'a.safetensors' } })),
    );
    await expectCode(
      loadModel('/s', { fs, families: [toyFamily] }),
      ErrorCodes.BadModelFile,
      /missing: a\.safetensors/,
    );
  });

  it('disposes the model when the tokenizer step fails, and reports BAD_MODEL_FILE', async () => {
    let model: ToyModel | undefined;
    const family = {
      ...toyFamily,
      fromHfConfig: (c: Record<string, unknown>, w: never) =>
        (model = toyFamily.fromHfConfig(c, w) as ToyModel),
    };
    await expectCode(
      loadModel('/m', {
        fs: folderFs(),
        families: [family as typeof toyFamily],
        loadTokenizer: () => {
          throw new Error('unknown pre-tokenizer');
        },
      }),
      ErrorCodes.BadModelFile,
      /tokenizer\.json: unknown pre-tokenizer/,
    );
    expect(model?.disposed).toBe(true);
  });
});

describe('family registry', () => {
  it('picks by model_type, is idempotent for the same family, refuses a second claimant', () => {
    const reg = new FamilyRegistry([toyFamily]);
    reg.register(toyFamily);
    expect(reg.forModelType('toy2')).toBe(toyFamily);
    expect(reg.forModelType('gpt2')).toBeUndefined();
    expect(reg.families()).toEqual([toyFamily]);
    expect(() => reg.register({ ...toyFamily, name: 'impostor', modelTypes: ['other', 'toy'] })).toThrow(
      expect.objectContaining({ code: ErrorCodes.BadInput }),
    );
    expect(reg.forModelType('other')).toBeUndefined(); // nothing registered from a refused family
  });

  it('loadModel refuses two families claiming one model_type, and names the known types otherwise', async () => {
    const fs = createMemoryFs({
      '/m/config.json': toyConfig({ model_type: 'toy-other' }),
      '/m/model.safetensors': toyWeights(),
    });
    const impostor = { ...toyFamily, name: 'impostor' };
    await expectCode(
      loadModel('/m', { fs, families: [toyFamily, impostor] }),
      ErrorCodes.BadInput,
      /impostor/,
    );
    await expectCode(
      loadModel('/m', { fs, families: [toyFamily] }),
      ErrorCodes.Unsupported,
      /toy-other.*toy/,
    );
    const other = { ...toyFamily, name: 'toy-other', modelTypes: ['toy-other'] };
    expect((await loadModel('/m', { fs, families: [toyFamily, other] })).model.architecture).toBe('toy');
  });
});

describe('model references', () => {
  const fs = createMemoryFs({ 'local/gpt2/config.json': '{}', '/abs/x.gguf': 'GGUF' });
  it.each([
    ['openai-community/gpt2', { kind: 'hub', id: 'openai-community/gpt2', revision: 'main' }],
    ['EleutherAI/pythia-70m@step1000', { kind: 'hub', id: 'EleutherAI/pythia-70m', revision: 'step1000' }],
    ['gpt2', { kind: 'hub', id: 'gpt2', revision: 'main' }],
    ['acme/m@refs/pr/1', { kind: 'hub', id: 'acme/m', revision: 'refs/pr/1' }],
    ['local/gpt2', { kind: 'folder', path: 'local/gpt2' }],
    ['./models/gpt2', { kind: 'folder', path: './models/gpt2' }],
    ['/data/m', { kind: 'folder', path: '/data/m' }],
  ])('%s', async (ref, want) => {
    expect(await parseModelRef(ref, fs)).toEqual(want);
  });
  it('revision option applies when the reference has none', async () => {
    expect(await parseModelRef('a/b', fs, 'v1')).toEqual({ kind: 'hub', id: 'a/b', revision: 'v1' });
  });
  it.each(['a/b/c', 'a/..', '', 'a/b@../x', 'a b', 'a/b@'])('refuses %j', async (ref) => {
    await expectCode(parseModelRef(ref, fs), ErrorCodes.BadInput);
  });
  it('a GGUF file path is a gguf reference; a missing one is NOT_AVAILABLE', async () => {
    expect(await parseModelRef('/abs/x.gguf', fs)).toEqual({ kind: 'gguf', path: '/abs/x.gguf' });
    await expectCode(parseModelRef('/abs/missing.gguf', fs), ErrorCodes.NotAvailable, /does not exist/);
  });
});

describe('hub downloads (fake fetch)', () => {
  const weights = toyWeights();
  const repo = () =>
    fakeHub('acme/toy', {
      'config.json': { bytes: toyConfig() },
      'model.safetensors': { bytes: weights },
      'tokenizer.json': { bytes: toyTokenizer },
    });

  it('downloads into the cache with progress, then reuses the cache without the network', async () => {
    const hub = repo();
    const fs = createMemoryFs();
    const events: DownloadProgress[] = [];
    const r = await loadModel('acme/toy', {
      fs,
      fetch: hub.fetch,
      cacheDir: CACHE,
      families: [toyFamily],
      loadTokenizer: (j) => j,
      onProgress: (p) => events.push(p),
    });
    expect(hub.requests.map((q) => q.url)).toEqual([
      'https://huggingface.co/acme/toy/resolve/main/config.json',
      'https://huggingface.co/acme/toy/resolve/main/model.safetensors',
      'https://huggingface.co/acme/toy/resolve/main/tokenizer.json',
    ]);
    expect(fs.files.get(cachePath('model.safetensors'))).toEqual(weights);
    expect([...fs.files.keys()].filter((k) => k.endsWith('.part') || k.endsWith('.etag'))).toEqual([]);
    expect(r.source).toMatchObject({
      kind: 'hub',
      id: 'acme/toy',
      revision: 'main',
      path: `${CACHE}/hub/acme/toy/main`,
    });
    expect(r.source.contentHash).toBe(`sha256:${sha256(weights)}`);
    const w = events.filter((e) => e.file === 'model.safetensors');
    expect(w.length).toBeGreaterThan(3); // streamed in 7-byte chunks
    expect(w.every((e) => e.bytesTotal === weights.length && !e.cached)).toBe(true);
    for (let i = 1; i < w.length; i++) expect(w[i]!.bytesDone).toBeGreaterThanOrEqual(w[i - 1]!.bytesDone);
    expect(w.at(-1)).toEqual({
      file: 'model.safetensors',
      bytesDone: weights.length,
      bytesTotal: weights.length,
      done: true,
      cached: false,
    });

    const events2: DownloadProgress[] = [];
    const again = await loadModel('acme/toy', {
      fs,
      fetch: offlineFetch,
      cacheDir: CACHE,
      families: [toyFamily],
      loadTokenizer: (j) => j,
      onProgress: (p) => events2.push(p),
    });
    expect(again.source.contentHash).toBe(r.source.contentHash);
    expect(events2.every((e) => e.cached && e.done)).toBe(true);
    expect(events2.map((e) => e.file)).toEqual(['config.json', 'model.safetensors', 'tokenizer.json']);
  });

  it('offline with no cache: NOT_AVAILABLE naming the missing files and suggesting --model PATH', async () => {
    for (const fetch of [offlineFetch, undefined]) {
      const err = await expectCode(
        loadModel('openai-community/gpt2', {
          fs: createMemoryFs(),
          ...(fetch ? { fetch } : {}),
          cacheDir: CACHE,
          families: [toyFamily],
          loadTokenizer: (j) => j,
        }),
        ErrorCodes.NotAvailable,
      );
      expect(err.message).toContain('openai-community/gpt2@main');
      expect(err.message).toMatch(
        /lacks config\.json, model\.safetensors \(or model\.safetensors\.index\.json and its shards\), tokenizer\.json/,
      );
      expect(err.message).toContain('--model PATH');
      expect(err.message).toContain(fetch ? 'fetch failed' : 'offline');
    }
  });

  it('offline with a partial cache names only what is missing', async () => {
    const fs = createMemoryFs({
      [cachePath('config.json')]: toyConfig(),
      [cachePath('model.safetensors')]: weights,
    });
    await expectCode(
      loadModel('acme/toy', {
        fs,
        fetch: offlineFetch,
        cacheDir: CACHE,
        families: [toyFamily],
        loadTokenizer: (j) => j,
      }),
      ErrorCodes.NotAvailable,
      /lacks tokenizer\.json\./,
    );
    // without a tokenizer step, the cached files suffice
    const r = await loadModel('acme/toy', {
      fs,
      fetch: offlineFetch,
      cacheDir: CACHE,
      families: [toyFamily],
    });
    expect(r.model.architecture).toBe('toy');
  });

  it('resumes an interrupted download with a Range request', async () => {
    const hub = repo();
    hub.files.get('model.safetensors')!.failAfter = 21;
    const fs = createMemoryFs();
    const opts = { fs, fetch: hub.fetch, cacheDir: CACHE, families: [toyFamily] };
    await expectCode(
      loadModel('acme/toy', opts),
      ErrorCodes.NotAvailable,
      /interrupted after 21 bytes.*run again to resume/,
    );
    expect(fs.files.get(cachePath('model.safetensors.part'))?.length).toBe(21);
    expect(fs.files.has(cachePath('model.safetensors'))).toBe(false);
    hub.requests.length = 0;
    const events: DownloadProgress[] = [];
    const r = await loadModel('acme/toy', { ...opts, onProgress: (p) => events.push(p) });
    expect(hub.requests.map((q) => q.url.split('/').at(-1))).toEqual(['model.safetensors']); // config came from cache
    expect(hub.requests[0]!.headers.range).toBe('bytes=21-');
    expect(hub.requests[0]!.headers['if-range']).toBe(`"${sha256(weights)}"`);
    expect(events.find((e) => e.file === 'model.safetensors')!.bytesDone).toBe(21);
    expect(fs.files.get(cachePath('model.safetensors'))).toEqual(weights);
    expect(fs.files.has(cachePath('model.safetensors.part'))).toBe(false);
    expect(r.source.contentHash).toBe(`sha256:${sha256(weights)}`);
  });

  it('restarts from zero when the server ignores Range or the file changed', async () => {
    for (const mode of ['noRange', 'changed'] as const) {
      const hub = repo();
      const fs = createMemoryFs({ [cachePath('model.safetensors.part')]: new Uint8Array(10).fill(0xaa) });
      if (mode === 'noRange') hub.files.get('model.safetensors')!.noRange = true;
      else fs.files.set(cachePath('model.safetensors.part.etag'), utf8('"old-etag"'));
      await loadModel('acme/toy', { fs, fetch: hub.fetch, cacheDir: CACHE, families: [toyFamily] });
      expect(fs.files.get(cachePath('model.safetensors'))).toEqual(weights);
    }
  });

  it('a stale part longer than the file (HTTP 416) is discarded', async () => {
    const hub = repo();
    const fs = createMemoryFs({ [cachePath('model.safetensors.part')]: new Uint8Array(weights.length + 5) });
    await loadModel('acme/toy', { fs, fetch: hub.fetch, cacheDir: CACHE, families: [toyFamily] });
    expect(fs.files.get(cachePath('model.safetensors'))).toEqual(weights);
  });

  it('verifies sha256 from the etag and the size, never leaving a bad file under the final name', async () => {
    const hub = repo();
    hub.files.get('model.safetensors')!.etag = `"${'0'.repeat(64)}"`;
    const fs = createMemoryFs();
    await expectCode(
      loadModel('acme/toy', { fs, fetch: hub.fetch, cacheDir: CACHE, families: [toyFamily] }),
      ErrorCodes.NotAvailable,
      /SHA-256/,
    );
    expect(fs.files.has(cachePath('model.safetensors'))).toBe(false);
    expect(fs.files.has(cachePath('model.safetensors.part'))).toBe(false);

    const hub2 = repo();
    Object.assign(hub2.files.get('model.safetensors')!, {
      etag: '"not-a-sha"',
      lieLength: weights.length + 3,
    });
    const fs2 = createMemoryFs();
    await expectCode(
      loadModel('acme/toy', { fs: fs2, fetch: hub2.fetch, cacheDir: CACHE, families: [toyFamily] }),
      ErrorCodes.NotAvailable,
      new RegExp(`${weights.length} bytes after download, expected ${weights.length + 3}`),
    );
    expect(fs2.files.has(cachePath('model.safetensors'))).toBe(false);
  });

  it('falls back to a sharded index on 404 and remembers the absence', async () => {
    const s1 = writeSafetensors({ wte: { shape: [2, 3], data: new Float32Array(6) } });
    const hub = fakeHub('acme/big', {
      'config.json': { bytes: toyConfig() },
      'model.safetensors.index.json': {
        bytes: utf8(JSON.stringify({ weight_map: { wte: 'model-00001-of-00001.safetensors' } })),
      },
      'model-00001-of-00001.safetensors': { bytes: s1 },
    });
    const fs = createMemoryFs();
    const r = await loadModel('acme/big', {
      fs,
      fetch: hub.fetch,
      cacheDir: CACHE,
      families: [toyFamily],
      loadTokenizer: (j) => j,
    });
    expect(r.tokenizer).toBeUndefined(); // repo has no tokenizer.json
    expect(r.files?.weights).toEqual({
      kind: 'sharded',
      index: 'model.safetensors.index.json',
      shards: ['model-00001-of-00001.safetensors'],
    });
    // all state is cached: no network needed the second time
    const r2 = await loadModel('acme/big', {
      fs,
      fetch: offlineFetch,
      cacheDir: CACHE,
      families: [toyFamily],
      loadTokenizer: (j) => j,
    });
    expect(r2.source.contentHash).toBe(r.source.contentHash);
  });

  it('refuses hostile shard names from a hub index before fetching them', async () => {
    const hub = fakeHub('acme/evil', {
      'config.json': { bytes: toyConfig() },
      'model.safetensors.index.json': {
        bytes: utf8(JSON.stringify({ weight_map: { wte: '../../../../etc/passwd' } })),
      },
    });
    await expectCode(
      resolveModelFiles('acme/evil', { fs: createMemoryFs(), fetch: hub.fetch, cacheDir: CACHE }),
      ErrorCodes.BadModelFile,
      /safe relative/,
    );
    expect(hub.requests.some((q) => q.url.includes('passwd'))).toBe(false);
  });

  it('HTTP errors: 401 asks for a token, 500 names the status, a missing repo says so', async () => {
    const hub = fakeHub('acme/gated', { 'config.json': { bytes: toyConfig(), status: 401 } });
    await expectCode(
      resolveModelFiles('acme/gated', { fs: createMemoryFs(), fetch: hub.fetch, cacheDir: CACHE }),
      ErrorCodes.NotAvailable,
      /HF_TOKEN/,
    );
    const hub2 = fakeHub('acme/err', { 'config.json': { bytes: toyConfig(), status: 500 } });
    await expectCode(
      resolveModelFiles('acme/err', { fs: createMemoryFs(), fetch: hub2.fetch, cacheDir: CACHE }),
      ErrorCodes.NotAvailable,
      /HTTP 500/,
    );
    const hub3 = fakeHub('acme/other', {});
    await expectCode(
      resolveModelFiles('acme/none', { fs: createMemoryFs(), fetch: hub3.fetch, cacheDir: CACHE }),
      ErrorCodes.NotAvailable,
      /no config\.json/,
    );
  });

  it('sends the token and uses a custom endpoint and revision', async () => {
    const seen: { url: string; headers: Record<string, string> }[] = [];
    const inner = repo();
    await loadModel('acme/toy@v2', {
      fs: createMemoryFs(),
      cacheDir: CACHE,
      families: [toyFamily],
      endpoint: 'https://mirror.example/',
      token: 'hf_secret',
      fetch: async (url, init) => {
        seen.push({ url, headers: { ...(init?.headers ?? {}) } });
        return inner.fetch(
          url.replace(
            'https://mirror.example/acme/toy/resolve/v2/',
            'https://huggingface.co/acme/toy/resolve/main/',
          ),
          init,
        );
      },
    });
    expect(seen[0]!.url).toBe('https://mirror.example/acme/toy/resolve/v2/config.json');
    expect(seen.every((s) => s.headers.authorization === 'Bearer hf_secret')).toBe(true);
  });
});

describe('GGUF files', () => {
  it('loads config, dequantised weights and tokenizer metadata from one file', async () => {
    const { readFileSync } = await import('node:fs');
    const { fixturePath } = await import('@relp/testing');
    const bytes = readFileSync(fixturePath('gguf', 'tiny-llama.gguf'));
    const fs = createMemoryFs({ '/m/tiny.gguf': new Uint8Array(bytes) });
    let seenModelType = '';
    const family = {
      ...toyFamily,
      name: 'llama-probe',
      modelTypes: ['llama'],
      fromHfConfig: (config: Readonly<Record<string, unknown>>, weights: WeightMap) => {
        seenModelType = String(config.model_type);
        expect(weights.get('model.embed_tokens.weight')?.data).toBeInstanceOf(Float32Array);
        return toyFamily.fromHfConfig({ model_type: 'toy', n_embd: 3 }, readSafetensors(toyWeights()));
      },
    };
    const r = await loadModel('/m/tiny.gguf', { fs, families: [family] });
    expect(seenModelType).toBe('llama');
    expect(r.source.kind).toBe('gguf');
    expect(r.source.contentHash).toMatch(/^sha256:[0-9a-f]{64}$/);
    expect(r.source.contentHash).toBe(`sha256:${sha256(new Uint8Array(bytes))}`);
    r.model.dispose();
    // A given hash function (Node's, which hashes the bytes in place) gives the content hash, from the file's bytes.
    const hashed: number[] = [];
    const { nodeLoadOptions } = await import('../src/node.js');
    const nodeHash = nodeLoadOptions({}).sha256;
    const viaNode = await loadModel('/m/tiny.gguf', {
      fs,
      families: [family],
      sha256: (b) => {
        hashed.push(b.byteLength);
        return nodeHash(b);
      },
    });
    expect(hashed).toEqual([bytes.byteLength]);
    expect(viaNode.source.contentHash).toBe(r.source.contentHash);
    viaNode.model.dispose();
    // This fixture carries no tokenizer: asking for one is a clear BAD_MODEL_FILE.
    await expectCode(
      loadModel('/m/tiny.gguf', { fs, families: [family], loadGgufTokenizer: (meta) => meta.tokens.length }),
      ErrorCodes.BadModelFile,
      /no tokenizer/,
    );
  });
});
