/**
 * The browser runtime in Node: the WebGPU probe's software-adapter rule and the one-line backend status, the
 * worker client's cancel (a fresh worker), hub GGUF downloads into the cache (progress, reuse, pinned size), the
 * loader's CLI advice in the page's words, and the default model pinned as the CLI's.
 */
import '@tensorflow/tfjs-backend-cpu';
import { createMemoryFs } from '@relp/loader';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { MODELS } from '../../provision/src/registry.js';
import { DEFAULT_MODEL } from '../src/defaults.js';
import { loadWebModel } from '../src/experiment.js';
import { runnableGgufArchitectures, supportedModelTypes } from '../src/families.js';
import { backendStatus, browserBackendLoaders } from '../src/runtime/backend.js';
import { describeError } from '../src/runtime/errors.js';
import { isHubFileCached } from '../src/runtime/fs.js';
import { RelpWorkerClient, WorkerRunError } from '../src/worker/client.js';
import type { HubFileChoice, WorkerRequest } from '../src/worker/protocol.js';

afterEach(() => {
  vi.unstubAllGlobals();
});

const withAdapter = (info: Record<string, string>, isFallbackAdapter = false) =>
  vi.stubGlobal('navigator', {
    gpu: { requestAdapter: async () => ({ info, isFallbackAdapter }) },
  });

describe('the WebGPU probe', () => {
  const webgpu = () => browserBackendLoaders().find((l) => l.name === 'webgpu')!;

  it('passes over a software adapter on auto, saying which and why', async () => {
    withAdapter({ vendor: 'google', architecture: 'swiftshader' });
    expect(await webgpu().probe({ explicit: false })).toEqual({
      ok: false,
      reason: 'adapter is software (google swiftshader), slower than WASM',
    });
  });
  it('takes a software adapter when WebGPU is asked for by name', async () => {
    withAdapter({ vendor: 'mesa', architecture: 'llvmpipe' });
    expect(await webgpu().probe({ explicit: true })).toMatchObject({ ok: true });
  });
  it('passes over a fallback adapter, and takes a hardware one', async () => {
    withAdapter({ vendor: 'acme' }, true);
    expect(await webgpu().probe({ explicit: false })).toMatchObject({ ok: false });
    withAdapter({ vendor: 'nvidia', architecture: 'hopper' });
    expect(await webgpu().probe({ explicit: false })).toEqual({ ok: true, detail: 'adapter nvidia hopper' });
  });
});

describe('the backend status line', () => {
  it('says what runs and how, and each skipped backend once', () => {
    const status = backendStatus(
      {
        name: 'wasm',
        reason: 'first available (skipped webgpu: navigator.gpu gives no adapter)',
        tried: [
          { name: 'webgpu', ok: false, note: 'navigator.gpu gives no adapter' },
          { name: 'wasm', ok: true, note: 'ok' },
        ],
      },
      { threads: 4, simd: true, isolated: true },
    );
    expect(status).toBe('WASM (4 threads, SIMD) — WebGPU skipped: navigator.gpu gives no adapter');
  });
  it('names the software adapter WASM was preferred to, and single-threaded WASM’s cause', () => {
    const status = backendStatus(
      {
        name: 'wasm',
        reason: 'first available',
        tried: [
          { name: 'webgpu', ok: false, note: 'adapter is software (google swiftshader), slower than WASM' },
          { name: 'wasm', ok: true, note: 'ok' },
        ],
      },
      { threads: 1, simd: true, isolated: false },
    );
    expect(status).toBe(
      'WASM (1 thread, SIMD: the page is not cross-origin isolated) — WebGPU adapter is software (google swiftshader), slower than WASM',
    );
  });
});

/** A stand-in Worker: records messages, answers nothing, can be terminated. */
class FakeWorker extends EventTarget {
  readonly sent: WorkerRequest[] = [];
  terminated = false;
  postMessage(m: WorkerRequest) {
    this.sent.push(m);
  }
  terminate() {
    this.terminated = true;
  }
}

describe('RelpWorkerClient cancel', () => {
  it('stops a run at once: the computing worker is terminated, the run rejects ABORTED, a fresh worker follows', async () => {
    const made: FakeWorker[] = [];
    const client = new RelpWorkerClient(() => {
      const w = new FakeWorker();
      made.push(w);
      return w as unknown as Worker;
    });
    let restarted = 0;
    client.onRestart = () => {
      restarted += 1;
    };
    const job = client.run({
      model: { kind: 'hub', id: 'x/y' },
      data: { kind: 'pairs', text: 'a' },
      methods: ['atp'],
    });
    job.cancel();
    await expect(job.result).rejects.toBeInstanceOf(WorkerRunError);
    await expect(job.result).rejects.toMatchObject({ shown: { code: 'ABORTED', title: 'Cancelled' } });
    expect(made).toHaveLength(2);
    expect(made[0]!.terminated).toBe(true);
    expect(made[1]!.terminated).toBe(false);
    expect(restarted).toBe(1);
    // The fresh worker takes the next request.
    void client.selectBackend('wasm').catch(() => undefined);
    expect(made[1]!.sent.map((m) => m.type)).toEqual(['backend']);
  });
});

/** A fetch that serves one file's bytes at one URL, counting requests. */
function fakeHub(url: string, bytes: Uint8Array) {
  const calls: string[] = [];
  const fetch = async (u: string) => {
    calls.push(u);
    if (u !== url) return new Response('not found', { status: 404 });
    return new Response(bytes as Uint8Array<ArrayBuffer>, {
      headers: { 'content-length': String(bytes.length) },
    });
  };
  return { fetch, calls };
}

describe('a hub GGUF file', () => {
  const choice: HubFileChoice = {
    kind: 'hub-file',
    repo: 'someone/tiny-GGUF',
    file: 'tiny.gguf',
    revision: 'abc',
    endpoint: 'https://mirror.invalid',
  };
  const url = 'https://mirror.invalid/someone/tiny-GGUF/resolve/abc/tiny.gguf';

  it('is downloaded into the cache with byte progress, and read from the cache the second time', async () => {
    const { tinyLlamaGguf } = await import('../../../apps/docs/scripts/tiny-gguf.js');
    const bytes = tinyLlamaGguf();
    const hub = fakeHub(url, bytes);
    vi.stubGlobal('fetch', hub.fetch);
    const fs = createMemoryFs();
    expect(await isHubFileCached(choice, fs)).toBe(false);
    const events: { stage: string; done?: number; total?: number; message: string }[] = [];
    const first = await loadWebModel(choice, { fs, onProgress: (p) => events.push(p) });
    first.model.dispose();
    const downloads = events.filter((e) => e.stage === 'download');
    expect(downloads.at(-1)).toMatchObject({ done: bytes.length, total: bytes.length });
    expect(hub.calls).toEqual([url]);
    expect(await isHubFileCached(choice, fs)).toBe(true);
    const again: typeof events = [];
    const second = await loadWebModel(choice, { fs, onProgress: (p) => again.push(p) });
    second.model.dispose();
    expect(hub.calls).toHaveLength(1);
    expect(again.find((e) => e.stage === 'download')?.message).toMatch(/\(cached\)$/);
    expect(second.summary.source).toBe('hub someone/tiny-GGUF/tiny.gguf from https://mirror.invalid');
  });

  it('whose SHA-256 differs from the pinned one is removed from the cache, with a clear error', async () => {
    const { tinyLlamaGguf } = await import('../../../apps/docs/scripts/tiny-gguf.js');
    vi.stubGlobal('fetch', fakeHub(url, tinyLlamaGguf()).fetch);
    const fs = createMemoryFs();
    await expect(loadWebModel({ ...choice, sha256: '0'.repeat(64) }, { fs })).rejects.toMatchObject({
      code: 'BAD_MODEL_FILE',
      message: expect.stringMatching(/differs from the expected sha256:0+; it was removed from the cache/),
    });
    expect(await isHubFileCached(choice, fs)).toBe(false);
  });

  it('that differs from its pinned size is removed from the cache, with a clear error', async () => {
    const { tinyLlamaGguf } = await import('../../../apps/docs/scripts/tiny-gguf.js');
    const bytes = tinyLlamaGguf();
    vi.stubGlobal('fetch', fakeHub(url, bytes).fetch);
    const fs = createMemoryFs();
    await expect(loadWebModel({ ...choice, size: bytes.length + 1 }, { fs })).rejects.toMatchObject({
      code: 'BAD_MODEL_FILE',
      message: expect.stringMatching(/expected \d+; it was removed from the cache/),
    });
    expect(await isHubFileCached(choice, fs)).toBe(false);
  });
});

describe('errors in the page’s words', () => {
  it('an unreachable hub model points at the page’s folder picker, not at a CLI flag', async () => {
    vi.stubGlobal('fetch', async () => {
      throw new TypeError('Failed to fetch');
    });
    const err = (await loadWebModel({ kind: 'hub', id: 'someone/model' }, { fs: createMemoryFs() }).then(
      () => new Error('loaded'),
      (e: unknown) => e,
    )) as Error;
    expect(err).toMatchObject({ code: 'NOT_AVAILABLE' });
    expect(err.message).not.toMatch(/--model|PATH/);
    expect(err.message).toMatch(/pick its folder .* under Model → Source/);
  });
  it('the GGUF hint names the architectures a family runs (not those only the reader knows)', () => {
    const e = Object.assign(new Error('x.gguf: GGUF: architecture "phi3" is not supported'), {
      code: 'UNSUPPORTED',
      details: { supported: ['llama', 'qwen2', 'qwen3', 'gemma3'] },
    });
    expect(describeError(e).hint).toMatch(/runs the llama, qwen2 and gemma3 architectures/);
    expect(runnableGgufArchitectures(['llama', 'qwen3', 'gemma3'])).toEqual(['llama', 'gemma3']);
    expect(supportedModelTypes()).toEqual(expect.arrayContaining(['gpt2', 'llama', 'gemma3_text']));
  });
});

describe('the default model', () => {
  it('is the file the CLI’s smollm2-135m alias fetches: same repository, commit, size and SHA-256', () => {
    const cli = MODELS['smollm2-135m']!;
    expect(DEFAULT_MODEL).toMatchObject({
      kind: 'hub-file',
      repo: cli.hub!.repo,
      file: cli.hub!.file,
      revision: cli.hub!.revision,
      size: cli.size,
      sha256: cli.sha256,
    });
  });
});
