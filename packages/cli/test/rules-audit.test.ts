import { spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { fixturePath } from '@relp/testing';
import { XMLValidator } from 'fast-xml-parser';
import { describe, expect, it } from 'vitest';

const repo = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');

/** `relp …` as a child process (the bin, from source), with the cpu backend. */
function relp(args: string[]): Promise<{ code: number | null; out: string; err: string }> {
  const child = spawn(
    process.execPath,
    ['--conditions=source', '--import', 'tsx', 'packages/cli/src/bin.ts', ...args],
    { cwd: repo, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, RELP_BACKEND: 'cpu' } },
  );
  let out = '';
  let err = '';
  child.stdout.on('data', (d) => (out += d));
  child.stderr.on('data', (d) => (err += d));
  return new Promise((resolve) => child.on('close', (code) => resolve({ code, out, err })));
}

const audit = (...extra: string[]) => [
  'rules',
  'audit',
  '--model',
  fixturePath('models', 'gpt2-a'),
  '--data',
  fixturePath('cli', 'pairs-ids.jsonl'),
  ...extra,
];

describe('relp rules audit', () => {
  it('writes report.html (table and bar charts), an SVG per site and report.json', async () => {
    const dir = join(mkdtempSync(join(tmpdir(), 'relp-rules-')), 'audit');
    const r = await relp(audit('--sites', 'resid_pre,z:head', '--out', dir, '--json', '-q'));
    expect(r.err).not.toMatch(/error/i);
    expect(r.code).toBe(0);
    const files = readdirSync(dir).sort();
    expect(files).toEqual(['pearson-resid_pre.svg', 'pearson-z_head.svg', 'report.html', 'report.json']);
    for (const f of files.filter((x) => x.endsWith('.svg'))) {
      expect(XMLValidator.validate(readFileSync(join(dir, f), 'utf8')), f).toBe(true);
    }
    const html = readFileSync(join(dir, 'report.html'), 'utf8');
    for (const s of [
      'resid_pre cal.',
      'z:head held-out',
      'conservation err.',
      'relp-cp',
      'pearson-z_head.svg',
    ]) {
      expect(html).toContain(s);
    }
    const json = JSON.parse(readFileSync(join(dir, 'report.json'), 'utf8'));
    expect(json.architecture).toBe('gpt2');
    expect(json.calibrationPairs.length + json.heldOutPairs.length).toBe(4);
    const names = json.rows.map((row: { name: string }) => row.name);
    expect(names).toEqual(expect.arrayContaining(['none', 'relp', 'relp-ah', 'relp-cp', 'ladder: ln']));
    const relpAh = json.rows.find((row: { name: string }) => row.name === 'relp-ah');
    expect(relpAh.conservation.biasesZeroed).toBe(true);
    expect(relpAh.conservation.relativeError).toBeLessThan(1e-3);
    const printed = JSON.parse(r.out);
    expect(printed.out).toBe(dir);
    expect(printed.rows.find((row: { ruleSet: string }) => row.ruleSet === 'relp-cp').sameAs).toBe('relp');
  }, 60_000);

  it('a model with a nonlinearity no rule treats (soft-capped Gemma 3): those rule sets are reported as not run', async () => {
    const dir = join(mkdtempSync(join(tmpdir(), 'relp-rules-')), 'gemma');
    const data = join(dir, '..', 'pairs.jsonl');
    const lines = readFileSync(fixturePath('cli', 'pairs-ids.jsonl'), 'utf8').split('\n').slice(0, 4);
    writeFileSync(data, `${lines.join('\n')}\n`);
    const r = await relp([
      'rules',
      'audit',
      '--model',
      fixturePath('models', 'gemma3-a'),
      '--data',
      data,
      '--sites',
      'resid_pre',
      '--out',
      dir,
      '-q',
    ]);
    expect(r.code).toBe(0);
    const rows = JSON.parse(readFileSync(join(dir, 'report.json'), 'utf8')).rows as {
      name: string;
      skipped?: string;
      agreement: unknown[];
    }[];
    const relpRow = rows.find((row) => row.name === 'relp')!;
    expect(relpRow.skipped).toMatch(/final_logit_softcap/);
    expect(relpRow.agreement).toEqual([]);
    const none = rows.find((row) => row.name === 'none')!;
    expect(none.skipped).toBeUndefined();
    expect(none.agreement.length).toBe(2);
    expect(readFileSync(join(dir, 'report.html'), 'utf8')).toContain('relp (not run)');
  }, 60_000);

  it('refuses a split outside (0, 1) with exit code 2 before loading anything', async () => {
    const r = await relp(audit('--split', '1', '--out', join(tmpdir(), 'never')));
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/--split must be a number between 0 and 1/);
  }, 30_000);
});
