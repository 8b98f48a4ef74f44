import { execFileSync, spawn } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, rmSync, symlinkSync } from 'node:fs';
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
function relp(args: string[], limitMs = 30_000): Promise<{ code: number | null; err: string; ms: number }> {
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
    { cwd: repo, stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, RELP_BACKEND: 'cpu' } },
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
