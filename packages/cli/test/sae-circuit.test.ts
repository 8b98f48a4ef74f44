import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SparseAutoencoder } from '@relp/sae';
import { saveSaeLens } from '@relp/sae/node';
import { fixturePath, seededRandom } from '@relp/testing';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { XMLValidator } from 'fast-xml-parser';
import { beforeAll, describe, expect, it } from 'vitest';
import type { CliIo } from '../src/io.js';
import { main } from '../src/main.js';

const wordsModel = fixturePath('cli', 'tiny-gpt2-words');

async function run(args: string[], cwd = tmpdir()): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const io: CliIo = {
    stdout: { write: (s: string) => (out += s) },
    stderr: { write: (s: string) => (err += s), isTTY: false },
    env: { RELP_BACKEND: 'cpu' },
    cwd,
    argv: ['node', 'relp', ...args],
  };
  const code = await main(args, io);
  return { code, out, err };
}

const tmp = () => mkdtempSync(join(tmpdir(), 'relp-cli-sae-'));

/** `relp sae <command> --model <the words model> --sae <sae> --task ioi-demo`, then `extra`. */
const saeRun = (command: string, sae: string, extra: string[]) =>
  run(['sae', command, '--model', wordsModel, '--sae', sae, '--task', 'ioi-demo', ...extra]);
let saeRoot = '';

beforeAll(async () => {
  await tf.setBackend('cpu');
  saeRoot = tmp();
  const r = seededRandom(3);
  const n = (k: number, s: number) => Array.from({ length: k }, () => (r() * 2 - 1) * s);
  for (const [site, layer, F] of [
    ['resid_pre', 1, 16],
    ['mlp_out', 0, 12],
  ] as const) {
    const sae = new SparseAutoencoder(
      {
        wEnc: tf.tensor2d(n(32 * F, 0.3), [32, F]),
        bEnc: tf.tensor1d(n(F, 0.1)),
        wDec: tf.tensor2d(n(F * 32, 0.3), [F, 32]),
        bDec: tf.tensor1d(n(32, 0.1)),
      },
      { hookPoint: { site, layer }, activation: { kind: 'relu' } },
    );
    await saveSaeLens(sae, join(saeRoot, `${site}.${layer}-relu`));
    sae.dispose();
  }
});

describe('relp sae attribute / circuit', () => {
  it('attribute writes feature and error scores per SAE site', async () => {
    const dir = tmp();
    const out = join(dir, 'r.json');
    const r = await saeRun('attribute', saeRoot, ['--method', 'relp', '--out', out, '-q']);
    expect(r.err).toBe('');
    expect(r.code).toBe(0);
    const j = JSON.parse(readFileSync(out, 'utf8'));
    expect(j.label).toBe('relp');
    expect(j.sites.map((s: { key: string }) => s.key).sort()).toEqual(['mlp_out.0', 'resid_pre.1']);
    expect(j.sites[0].features.length).toBeGreaterThan(0);
    expect(j.cost.forwardPasses).toBe(2);
    expect(j.provenance).toBeDefined();
    expect(r.out).toMatch(/relp: m\(clean\)/);
  });

  it('a mismatched SAE is a bad-input error (exit 2)', async () => {
    const dir = tmp();
    const sae = new SparseAutoencoder(
      { wEnc: tf.ones([24, 4]), bEnc: tf.zeros([4]), wDec: tf.ones([4, 24]), bDec: tf.zeros([24]) },
      { hookPoint: { site: 'resid_pre', layer: 1 }, activation: { kind: 'relu' } },
    );
    await saveSaeLens(sae, join(dir, 'wide'));
    sae.dispose();
    const r = await saeRun('attribute', join(dir, 'wide'), ['--method', 'atp', '-q']);
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/d_in 24 but gpt2's resid_pre is 32 wide/);
  });

  it('circuit writes curves, circuits (JSON, DOT, SVG) and feature pages with top-activating contexts', async () => {
    const dir = tmp();
    const text = join(dir, 'text.txt');
    writeFileSync(text, 'When John and Mary went to the shops , John gave a bag to Mary . '.repeat(30));
    const out = join(dir, 'circ');
    const r = await saeRun('circuit', saeRoot, [
      '--methods',
      'relp,atp,ig',
      '--ig-steps',
      '3',
      '--discover',
      '5',
      '--test',
      '3',
      '--thresholds',
      '1e-3:1:5',
      '--value',
      '5',
      '--text',
      text,
      '--contexts',
      '8',
      '--context-length',
      '12',
      '--out',
      out,
      '-q',
    ]);
    expect(r.err).toBe('');
    expect(r.code).toBe(0);
    for (const f of [
      'report.html',
      'curves.json',
      'faithfulness.svg',
      'completeness.svg',
      'circuit.json',
      'circuit-relp.json',
      'circuit-relp.dot',
      'features-ig.html',
    ]) {
      expect(existsSync(join(out, f)), f).toBe(true);
    }
    expect(XMLValidator.validate(readFileSync(join(out, 'faithfulness.svg'), 'utf8'))).toBe(true);
    const curves = JSON.parse(readFileSync(join(out, 'curves.json'), 'utf8'));
    for (const m of ['relp', 'atp', 'ig']) {
      const pts = curves.curves[m];
      expect(pts.length).toBe(6);
      // The last threshold is 0: every node, faithfulness 1 by construction.
      expect(pts.at(-1).faithfulness).toBe(1);
    }
    const c = JSON.parse(readFileSync(join(out, 'circuit-relp.json'), 'utf8'));
    expect(c.nodes.length).toBe(5);
    const withCtx = c.nodes.filter((n: { contexts?: unknown[] }) => (n.contexts?.length ?? 0) > 0);
    expect(withCtx.length).toBeGreaterThan(0);
    expect(readFileSync(join(out, 'features-relp.html'), 'utf8')).toMatch(/<mark/);
  });
});
