import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadSaeLensFolder } from '@relp/sae/node';
import { fixturePath } from '@relp/testing';
import { describe, expect, it } from 'vitest';
import type { CliIo } from '../src/io.js';
import { main } from '../src/main.js';

const wordsModel = fixturePath('cli', 'tiny-gpt2-words');

async function run(args: string[], cwd: string): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const io: CliIo = {
    stdout: { write: (s: string) => (out += s) },
    stderr: { write: (s: string) => (err += s), isTTY: false },
    env: { RELP_BACKEND: 'cpu', RELP_CACHE: join(cwd, 'cache') },
    cwd,
    argv: ['node', 'relp', ...args],
  };
  const code = await main(args, io);
  return { code, out, err };
}

describe('relp sae train / list', () => {
  it('trains TopK and ReLU SAEs from a text file into SAELens folders with metrics, lists them, refuses to overwrite', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'relp-sae-cli-'));
    const words = [
      'When',
      'After',
      'John',
      'and',
      'Mary',
      'went',
      'to',
      'the',
      'shops',
      ',',
      'gave',
      'a',
      'drink',
    ];
    let seed = 7;
    const rnd = () => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed / 2 ** 31;
    };
    const paragraphs = Array.from({ length: 30 }, () =>
      Array.from({ length: 40 }, () => words[Math.floor(rnd() * words.length)]).join(' '),
    );
    writeFileSync(join(dir, 'text.txt'), paragraphs.join('\n\n'));
    const args = [
      'sae',
      'train',
      '--model',
      wordsModel,
      '--text',
      'text.txt',
      '--sites',
      'resid_post.0,mlp_out.1:relu',
      '--k',
      '4',
      '--l1',
      '0.1',
      '--d-sae',
      '64',
      '--tokens',
      '600',
      '--context',
      '12',
      '--batch',
      '4',
      '--step-tokens',
      '40',
      '--eval-windows',
      '4',
      '--checkpoint-every',
      '3',
      '--out',
      'saes',
    ];
    const r = await run(args, dir);
    expect(r.err, r.err).not.toMatch(/error/);
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/CE recovered/);
    for (const [folder, kind] of [
      ['resid_post.0-topk', 'topk'],
      ['mlp_out.1-relu', 'relu'],
    ] as const) {
      const path = join(dir, 'saes', folder);
      const m = JSON.parse(readFileSync(join(path, 'metrics.json'), 'utf8'));
      expect(m.arch.kind).toBe(kind);
      expect(m.tokens).toBeGreaterThanOrEqual(600);
      expect(m.eval.explainedVariance).toBeGreaterThan(0);
      expect(Number.isFinite(m.eval.ceLossRecovered)).toBe(true);
      expect(m.provenance.command).toContain('relp sae train');
      const sae = await loadSaeLensFolder(path);
      expect(sae.activation.kind).toBe(kind);
      expect(sae.dSae).toBe(64);
      sae.dispose();
    }
    // The finished run removed its checkpoint.
    expect(existsSync(join(dir, 'saes', '.train-resid_post.0-topk+mlp_out.1-relu', 'trainer.json'))).toBe(
      false,
    );
    const again = await run(args, dir);
    expect(again.code).toBe(2);
    expect(again.err).toMatch(/already holds a trained SAE/);
    const list = await run(['sae', 'list', '--dir', 'saes', '--json'], dir);
    expect(list.code).toBe(0);
    const listed = JSON.parse(list.out);
    expect(listed.saes).toHaveLength(2);
    expect(listed.saes.map((s: { cfg: { hook_name: string } }) => s.cfg.hook_name).sort()).toEqual([
      'blocks.0.hook_resid_post',
      'blocks.1.hook_mlp_out',
    ]);
  });
});
