import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { fixturePath } from '@relp/testing';
import { describe, expect, it } from 'vitest';

const repo = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const wordsModel = fixturePath('cli', 'tiny-gpt2-words'); // context 24, 2 layers, width 32

/** `relp sae <args>` in a child process, in a fresh folder holding `files` ({dir} in args); `out` is --out. */
function relpSae(files: Record<string, string>, args: string[]) {
  const dir = mkdtempSync(join(tmpdir(), 'relp-sae-msg-'));
  for (const [name, text] of Object.entries(files)) writeFileSync(join(dir, name), text);
  const out = join(dir, 'out');
  const r = spawnSync(
    process.execPath,
    [
      '--conditions=source',
      '--import',
      'tsx',
      'packages/cli/src/bin.ts',
      'sae',
      ...args.map((a) => a.replace('{dir}', dir)),
      '--out',
      out,
      '-q',
    ],
    { cwd: repo, encoding: 'utf8', env: { ...process.env, RELP_BACKEND: 'cpu' }, timeout: 120_000 },
  );
  return { code: r.status, err: r.stderr, out: r.stdout, outCreated: existsSync(out) };
}

/** `relp sae train` with small settings, then `args`. */
function train(files: Record<string, string>, ...args: string[]) {
  return relpSae(files, [
    'train',
    '--sites',
    'resid_post.0',
    '--d-sae',
    '16',
    '--k',
    '2',
    '--step-tokens',
    '20',
    '--eval-windows',
    '2',
    ...args,
  ]);
}

/** Seeded lines of the tokenizer's words. */
function lines(n: number, words = 40): string[] {
  const vocab = ['When', 'After', 'John', 'and', 'Mary', 'went', 'to', 'the', 'shops', ',', 'gave', 'a'];
  let seed = 11;
  const rnd = () => {
    seed = (seed * 1103515245 + 12345) % 2 ** 31;
    return seed / 2 ** 31;
  };
  return Array.from({ length: n }, () =>
    Array.from({ length: words }, () => vocab[Math.floor(rnd() * vocab.length)]).join(' '),
  );
}

const paragraphs = { 'text.txt': lines(30).join('\n\n') };
const noModel = join(tmpdir(), 'relp-no-such-model');

describe('relp sae train says what is wrong, before the model loads where it can', () => {
  it.each([
    [['--batch', '0'], /--batch must be an integer from 1/],
    [['--tokens', '0'], /--tokens must be an integer from 1/],
    [['--context', '1'], /--context must be an integer from 2/],
    [['--text', '{dir}/missing.txt'], /cannot read --text .*missing\.txt: ENOENT/],
    [['--text', '{dir}/empty.txt'], /--text .*empty\.txt is empty/],
    [['--sites', 'resid_post.0:gated'], /unknown architecture "gated" for resid_post\.0/],
    [['--sites', 'resid_psot.0'], /--sites resid_psot\.0: unknown site 'resid_psot'/],
    [['--k', '20'], /--k 20 is more than the 16 features of --d-sae/],
  ])(
    '%s: exit 2 with that message, no model loaded, nothing written',
    (flags, message) => {
      const r = train(
        { ...paragraphs, 'empty.txt': ' \n\n' },
        '--model',
        noModel,
        ...(flags.includes('--text') ? [] : ['--text', '{dir}/text.txt']),
        ...flags,
      );
      expect(r.code).toBe(2);
      expect(r.err).toMatch(message);
      expect(r.err).not.toMatch(/relp-no-such-model|no training window/); // the model was never looked for
      expect(r.outCreated).toBe(false);
    },
    60_000,
  );

  it.each([
    [
      'a context longer than the model’s',
      paragraphs,
      ['--context', '30'],
      /--context 30 is longer than the model's context of 24 tokens/,
    ],
    [
      'a text shorter than one window',
      { 'text.txt': 'John and Mary\n\nwent to the shops' },
      ['--context', '12'],
      /every document of the text is shorter than one window: a window of 12 tokens holds 11 tokens of text and BOS, the longest has \d tokens.*\(--context 12\)/,
    ],
    [
      'held-out windows that take the whole text',
      paragraphs,
      ['--context', '12', '--eval-windows', '1000'],
      /the 1000 held-out windows took all \d+ document\(s\).*\(--eval-windows 1000\)/,
    ],
    [
      'fewer windows than one batch',
      paragraphs,
      ['--context', '12', '--batch', '500'],
      /gives \d+ training window\(s\) of 12 tokens, fewer than one batch \(--batch 500\)/,
    ],
    [
      'a layer the model lacks',
      paragraphs,
      ['--context', '12', '--sites', 'resid_post.5'],
      /--sites resid_post\.5: the model has 2 layers \(0 to 1\)/,
    ],
  ])(
    '%s: exit 2 with what is wrong, nothing written',
    (_, files, flags, message) => {
      const r = train(files, '--model', wordsModel, '--text', '{dir}/text.txt', '--tokens', '100', ...flags);
      expect(r.code).toBe(2);
      expect(r.err).toMatch(message);
      expect(r.err).not.toMatch(/no training window: too short/);
      expect(r.outCreated).toBe(false);
    },
    60_000,
  );

  it('a text without blank lines trains (it splits at line breaks)', () => {
    const r = train(
      { 'text.txt': lines(30).join('\n') },
      '--model',
      wordsModel,
      '--text',
      '{dir}/text.txt',
      '--tokens',
      '100',
      '--context',
      '12',
      '--batch',
      '2',
      '--json',
    );
    expect(r.err).not.toMatch(/error/);
    expect(r.code).toBe(0);
    expect(JSON.parse(r.out).metrics[0].tokens).toBeGreaterThanOrEqual(100);
  }, 120_000);
});

describe('relp sae circuit checks its text for top-activating contexts before the long work', () => {
  const circuit = (files: Record<string, string>, model: string, ...args: string[]) =>
    // No SAE exists at --sae: a failure about the text or context comes before the SAEs are even read.
    relpSae(files, ['circuit', '--model', model, '--sae', '{dir}/no-sae', '--task', 'ioi-demo', ...args]);

  it('an unreadable --text: exit 2 before the model loads', () => {
    const r = circuit({}, noModel, '--text', '{dir}/missing.txt');
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/cannot read --text .*missing\.txt: ENOENT/);
  }, 60_000);

  it('a --context-length longer than the model’s, and a text shorter than one window', () => {
    const long = circuit(paragraphs, wordsModel, '--text', '{dir}/text.txt', '--context-length', '64');
    expect(long.code).toBe(2);
    expect(long.err).toMatch(/--context-length 64 is longer than the model's context of 24 tokens/);
    const short = circuit(
      { 'text.txt': 'John and Mary' },
      wordsModel,
      '--text',
      '{dir}/text.txt',
      '--context-length',
      '12',
    );
    expect(short.code).toBe(2);
    expect(short.err).toMatch(
      /--text .*text\.txt: every document of the text is shorter than one window.*\(--context-length 12\)/,
    );
    expect(short.err).not.toMatch(/no-sae/);
  }, 60_000);
});
