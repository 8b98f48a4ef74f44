import { execFileSync, spawn } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, rmSync, symlinkSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { fixturePath } from '@relp/testing';
import { afterAll, describe, expect, it } from 'vitest';

const repo = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const model = fixturePath('models', 'gpt2-a');
const pairs = fixturePath('cli', 'pairs-ids.jsonl');
const dir = mkdtempSync(join(tmpdir(), 'relp-cli-hostile-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** `relp <args>` in a child process with a memory cap, killed after `limitMs`. */
function relp(
  args: string[],
  limitMs = 30_000,
  env: Record<string, string> = {},
): Promise<{ code: number | null; err: string; ms: number }> {
  const t0 = performance.now();
  const child = spawn(
    process.execPath,
    [
      '--max-old-space-size=512',
      '--conditions=source',
      '--import',
      'tsx',
      'packages/cli/src/bin.ts',
      ...args,
    ],
    { cwd: repo, stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, RELP_BACKEND: 'cpu', ...env } },
  );
  let err = '';
  child.stderr.on('data', (d) => (err += d));
  const timer = setTimeout(() => child.kill('SIGKILL'), limitMs);
  return new Promise((resolve) =>
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, err, ms: performance.now() - t0 });
    }),
  );
}

describe('relp on files that are not regular files', () => {
  it('--data naming a FIFO: exit 2 (BAD_INPUT) at once, not a hang', async () => {
    const fifo = join(dir, 'pairs.fifo');
    execFileSync('mkfifo', [fifo]);
    const r = await relp(['attribute', '--model', model, '--data', fifo, '--method', 'atp', '--json']);
    expect(r.err).toMatch(/--data .*pairs\.fifo is a FIFO/);
    expect(r.code).toBe(2);
  }, 60_000);

  it('sae train --text naming a FIFO: exit 2 at once, before the model loads', async () => {
    const fifo = join(dir, 'text.fifo');
    execFileSync('mkfifo', [fifo]);
    const r = await relp(['sae', 'train', '--model', model, '--text', fifo, '--sites', 'resid_post.0', '-q']);
    expect(r.err).toMatch(/--text .*text\.fifo is a FIFO/);
    expect(r.code).toBe(2);
  }, 60_000);

  it('--model whose model.safetensors is a symlink to /dev/zero: exit 2, not a read that never ends', async () => {
    const m = join(dir, 'zero-model');
    mkdirSync(m);
    copyFileSync(join(model, 'config.json'), join(m, 'config.json'));
    symlinkSync('/dev/zero', join(m, 'model.safetensors'));
    const r = await relp(['attribute', '--model', m, '--data', pairs, '--method', 'atp', '--json']);
    expect(r.err).toMatch(/model\.safetensors is a character device/);
    expect(r.code).toBe(2);
  }, 60_000);
});

describe('relp against a hub that never answers', () => {
  it('HF_ENDPOINT accepting connections but never answering: exit 2 naming the host and timeout, in seconds', async () => {
    const sockets = new Set<Socket>();
    const server = createServer(() => undefined);
    server.on('connection', (c) => sockets.add(c));
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const host = `127.0.0.1:${(server.address() as AddressInfo).port}`;
    const cache = join(dir, 'cache');
    try {
      const r = await relp(
        ['attribute', '--model', 'acme/toy', '--data', pairs, '--method', 'atp', '--json'],
        30_000,
        {
          HF_ENDPOINT: `http://${host}`,
          RELP_HTTP_TIMEOUT_MS: '500',
          RELP_CACHE: cache,
        },
      );
      expect(r.err).toMatch(/NOT_AVAILABLE/);
      expect(r.err).toContain(`${host} did not answer within 500 ms`);
      expect(r.code).toBe(2);
      expect(existsSync(cache)).toBe(false); // nothing left behind, not even empty folders
    } finally {
      for (const c of sockets) c.destroy();
      await new Promise((r) => server.close(r));
    }
  }, 60_000);
});
