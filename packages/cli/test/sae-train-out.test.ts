import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { fixturePath } from '@relp/testing';
import { afterAll, describe, expect, it } from 'vitest';

const repo = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const dir = mkdtempSync(join(tmpdir(), 'relp-sae-train-out-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('relp sae train makes no folder before its inputs are checked', () => {
  it('inputs the trainer refuses (a site given twice): exit 2 and no --out folder', () => {
    const words = ['When', 'John', 'and', 'Mary', 'went', 'to', 'the', 'shops', ',', 'gave', 'a'];
    const text = Array.from({ length: 30 }, (_, p) =>
      Array.from({ length: 40 }, (_, i) => words[(p * 7 + i * 3) % words.length]).join(' '),
    ).join('\n\n');
    writeFileSync(join(dir, 'text.txt'), text);
    const out = join(dir, 'out');
    const r = spawnSync(
      process.execPath,
      [
        '--conditions=source',
        '--import',
        'tsx',
        'packages/cli/src/bin.ts',
        'sae',
        'train',
        '--model',
        fixturePath('cli', 'tiny-gpt2-words'),
        '--text',
        join(dir, 'text.txt'),
        '--sites',
        'resid_post.0,resid_post.0',
        '--d-sae',
        '16',
        '--k',
        '2',
        '--context',
        '12',
        '--tokens',
        '100',
        '--eval-windows',
        '2',
        '--out',
        out,
        '-q',
      ],
      { cwd: repo, encoding: 'utf8', env: { ...process.env, RELP_BACKEND: 'cpu' }, timeout: 120_000 },
    );
    expect(r.stderr).toMatch(/BAD_INPUT.*given twice/);
    expect(r.status).toBe(2);
    expect(existsSync(out)).toBe(false);
  }, 120_000);
});
