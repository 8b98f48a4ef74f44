import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fixturePath } from '@relp/testing';
import { describe, expect, it } from 'vitest';
import type { ReproduceModelResult } from '../src/commands/reproduce.js';
import type { CliIo } from '../src/io.js';
import { main } from '../src/main.js';

// No hub is reachable here: the paper's models are replaced by random-weight fixtures (--model-dir). These two have
// no tokenizer (and 97-token vocabularies), so token-id pairs (--data) stand in for IOI.
const gpt2 = fixturePath('models', 'gpt2-a');
const pythia = fixturePath('models', 'pythia-tiny-par');
const wordsModel = fixturePath('cli', 'tiny-gpt2-words');
const pairs = fixturePath('cli', 'pairs-ids.jsonl');

/** A hub on a closed loopback port and an empty cache: every hub id is NOT_AVAILABLE, at once. */
const offline = () => ({
  RELP_CACHE: tmp(),
  HF_ENDPOINT: 'http://127.0.0.1:9',
});

async function run(
  args: string[],
  env: Record<string, string> = {},
): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const io: CliIo = {
    stdout: { write: (s: string) => (out += s) },
    stderr: { write: (s: string) => (err += s), isTTY: false },
    env: { RELP_BACKEND: 'cpu', ...env },
    cwd: tmpdir(),
    argv: ['node', 'relp', ...args],
  };
  const code = await main(args, io);
  return { code, out, err };
}

const tmp = () => mkdtempSync(join(tmpdir(), 'relp-reproduce-'));

/** `relp compare` on the same model and pairs: the numbers reproduce must equal. */
async function comparePearsons(model: string): Promise<Map<string, number>> {
  const r = await run([
    'compare',
    '--model',
    model,
    '--data',
    pairs,
    '--methods',
    'atp,relp',
    '--normalize',
    '--json',
    '-q',
    '--out',
    join(tmp(), 'cmp'),
  ]);
  expect(r.code).toBe(0);
  const agreement = JSON.parse(r.out).agreement as { method: string; site: string; pearson: number }[];
  return new Map(agreement.map((a) => [`${a.method} ${a.site}`, a.pearson]));
}

describe('relp reproduce', () => {
  it('scores each local model as relp compare does, beside the published values; an unreachable hub model and Gemma 2 are rows, not failures', async () => {
    const dir = join(tmp(), 'repro');
    const r = await run(
      [
        'reproduce',
        '--models',
        'gpt2,gpt2-medium,pythia-70m,gemma-2-2b',
        '--model-dir',
        `gpt2=${gpt2}`,
        '--model-dir',
        `pythia-70m=${pythia}`,
        '--data',
        pairs,
        '--out',
        dir,
      ],
      offline(),
    );
    expect(r.err).not.toMatch(/internal error/);
    expect(r.code).toBe(0);
    const json = JSON.parse(readFileSync(join(dir, 'reproduce.json'), 'utf8'));
    const byName = new Map((json.models as ReproduceModelResult[]).map((m) => [m.name, m]));
    expect([...byName.keys()]).toEqual(['gpt2', 'gpt2-medium', 'pythia-70m', 'gemma-2-2b']);
    expect(byName.get('gpt2-medium')!.status).toBe('not available');
    expect(byName.get('gpt2-medium')!.reason).toMatch(/NOT_AVAILABLE/);
    expect(byName.get('gemma-2-2b')!.status).toBe('not supported yet');

    for (const [name, model] of [
      ['gpt2', gpt2],
      ['pythia-70m', pythia],
    ] as const) {
      const m = byName.get(name)!;
      expect(m.status).toBe('ok');
      expect(m.ref).toBe(model);
      const cells = m.sets[0]!.cells;
      expect(cells).toHaveLength(6);
      const expected = await comparePearsons(model);
      for (const c of cells) expect(c.pearson).toBe(expected.get(`${c.method} ${c.site}`));
    }

    // GPT-2 small carries the paper's values and the differences; Pythia has none known.
    const g = byName.get('gpt2')!.sets[0]!.cells;
    const atpResid = g.find((c) => c.method === 'atp' && c.site === 'resid_pre')!;
    expect(atpResid.published).toBe(0.753);
    expect(atpResid.difference).toBeCloseTo(atpResid.pearson - 0.753, 12);
    expect(g.find((c) => c.method === 'relp' && c.site === 'mlp_out')!.published).toBe(0.992);
    expect(byName.get('pythia-70m')!.sets[0]!.cells.every((c) => c.published === null)).toBe(true);

    // The printed table: published beside measured, "—" where unknown, the unavailable models and why.
    const line = (model: string, method: string, site: string) =>
      r.out.split('\n').find((l) => l.startsWith(model) && l.includes(` ${method} `) && l.includes(site));
    expect(line('GPT-2 small', 'atp', 'resid_pre')).toContain('0.753');
    expect(line('GPT-2 small', 'atp', 'resid_pre')).toContain(atpResid.pearson.toFixed(3));
    expect(line('GPT-2 small', 'relp', 'attn_out')).toContain('0.962');
    expect(line('Pythia-70M', 'relp', 'mlp_out')).toMatch(/—/);
    expect(r.out).toMatch(/GPT-2 medium .*not available: NOT_AVAILABLE/);
    expect(r.out).toMatch(/Gemma-2-2B .*not supported yet: relp has no Gemma 2 family yet/);
    const html = readFileSync(join(dir, 'report.html'), 'utf8');
    expect(html).toContain('0.753');
    expect(html).toContain('not available');
    // The table cuts reasons short; the page has them whole (the loader's advice at the end included).
    expect(html).toMatch(
      /GPT-2 medium \(openai-community\/gpt2-medium\): not available: NOT_AVAILABLE: .*local folder/,
    );
  });

  it('GPT-2 small also runs the 8 reference demo prompts beside the public demo’s values', async () => {
    const dir = join(tmp(), 'demo');
    const r = await run(
      [
        'reproduce',
        '--models',
        'gpt2',
        '--model-dir',
        `gpt2=${wordsModel}`,
        '--n',
        '2',
        '--json',
        '-q',
        '--out',
        dir,
      ],
      offline(),
    );
    expect(r.err).not.toMatch(/internal error/);
    const gpt = (JSON.parse(r.out).models as ReproduceModelResult[])[0]!;
    expect(r.code).toBe(0);
    expect(gpt.status).toBe('ok');
    // The words fixture's vocabulary spells the 8 reference prompts but not generated IOI: that set is a failed row.
    expect(gpt.sets[0]!.error).toMatch(/BAD_INPUT: no usable pairs remain in task ioi/);
    const demo = gpt.sets.find((s) => s.name.startsWith('ioi-demo'));
    expect(demo?.pairs).toBe(8);
    expect(demo!.cells.find((c) => c.method === 'atp' && c.site === 'mlp_out')!.published).toBe(0.436);
    expect(demo!.cells.find((c) => c.method === 'relp' && c.site === 'resid_pre')!.published).toBe(0.962);
  });

  it('exit 2 when no model can be had, after the table says why', async () => {
    const r = await run(
      ['reproduce', '--models', 'gpt2-medium,gemma-2-2b', '--out', join(tmp(), 'none')],
      offline(),
    );
    expect(r.code).toBe(2);
    expect(r.out).toMatch(/GPT-2 medium .*not available: NOT_AVAILABLE/);
    expect(r.err).toMatch(/no model could be run/);
  });

  it('bad --models and --model-dir are refused before any model loads', async () => {
    const a = await run(['reproduce', '--models', 'gpt5', '--out', join(tmp(), 'x')]);
    expect(a.code).toBe(2);
    expect(a.err).toMatch(/unknown model 'gpt5'.*gpt2-medium/);
    const b = await run(['reproduce', '--model-dir', 'gpt2', '--out', join(tmp(), 'x')]);
    expect(b.code).toBe(2);
    expect(b.err).toMatch(/expected name=PATH/);
  });
});
