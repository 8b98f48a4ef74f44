import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { sha256File } from '../src/cache.js';
import { listModels } from '../src/index.js';

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
