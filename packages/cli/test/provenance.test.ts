import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fixturePath } from '@relp/testing';
import { describe, expect, it } from 'vitest';
import type { CliIo } from '../src/io.js';
import { main } from '../src/main.js';

async function run(args: string[]): Promise<{ code: number; err: string }> {
  let err = '';
  const io: CliIo = {
    stdout: { write: () => undefined },
    stderr: { write: (s: string) => (err += s), isTTY: false },
    env: { RELP_BACKEND: 'cpu' },
    cwd: tmpdir(),
    argv: ['node', 'relp', ...args],
  };
  return { code: await main(args, io), err };
}

/** A result's provenance from `relp attribute` on a committed fixture model. */
async function provenanceOf(fixture: string, method: string): Promise<Record<string, unknown>> {
  const dir = mkdtempSync(join(tmpdir(), 'relp-prov-'));
  const out = join(dir, 'result.json');
  // Token ids below every fixture's vocabulary (gemma3-a has 61).
  const pairs = join(dir, 'pairs.jsonl');
  writeFileSync(
    pairs,
    [
      { clean_ids: [5, 17, 3, 42, 17, 8], corrupt_ids: [5, 17, 3, 42, 42, 8], answer_id: 42, wrong_id: 17 },
      { clean_ids: [6, 21, 3, 30, 21, 8], corrupt_ids: [6, 21, 3, 30, 30, 8], answer_id: 30, wrong_id: 21 },
    ]
      .map((x) => JSON.stringify(x))
      .join('\n'),
  );
  const r = await run([
    'attribute',
    '--model',
    fixturePath('models', fixture),
    '--data',
    pairs,
    '--method',
    method,
    '--sites',
    'resid_pre',
    '--out',
    out,
    '-q',
  ]);
  expect(r.err).toBe('');
  expect(r.code).toBe(0);
  return JSON.parse(readFileSync(out, 'utf8')).provenance;
}

describe("a result's provenance names the norms each preset treats", () => {
  it('Gemma 3: the q/k norms, the post-norms and the final norm under the LN-rule', async () => {
    const p = await provenanceOf('gemma3-a', 'atp');
    const gemma = ['ln1', 'q_norm', 'k_norm', 'post_attention_norm', 'ln2', 'post_feedforward_norm', 'final'];
    expect(p.normsTreated).toEqual({
      relp: gemma,
      'relp-ah': gemma,
      'relp-cp': gemma,
      attnlrp: gemma,
      none: [],
    });
  }, 60_000);

  it('GPT-2: its two LayerNorms per block and the final one', async () => {
    const p = await provenanceOf('gpt2-a', 'relp');
    const gpt2 = ['ln1', 'ln2', 'final'];
    expect(p.normsTreated).toEqual({ relp: gpt2, 'relp-ah': gpt2, 'relp-cp': gpt2, attnlrp: gpt2, none: [] });
  }, 60_000);
});
