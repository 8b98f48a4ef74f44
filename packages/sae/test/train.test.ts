import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type LanguageModel, RunContext, type SiteKey } from '@relp/core';
import { randomGpt2Model } from '@relp/models-gpt2';
import { seededRng } from '@relp/tasks';
import { describeEachBackend, expectBitIdentical, expectClose, installLeakGuard } from '@relp/testing';
import * as tf from '@tensorflow/tfjs-core';
import { describe, expect, it } from 'vitest';
import {
  brownToText,
  collectActivations,
  evaluateSaes,
  geometricMedian,
  type SaeTrainSpec,
  SparseAutoencoder,
  type TrainerState,
  type TrainOptions,
  tokenWindows,
  trainSaes,
} from '../src/index.js';
import { loadSaeLensFolder, loadTrainerState, saveSaeLens, saveTrainerState } from '../src/node.js';

installLeakGuard();

const tiny = (): LanguageModel => randomGpt2Model('tiny', 4, { initializerRange: 0.3, biasStd: 0.1 });

/** Random token windows of length T (BOS 0 first), seeded. */
function windows(n: number, T: number, vocab: number, seed: number): Int32Array[] {
  const r = seededRng(seed);
  return Array.from({ length: n }, () =>
    Int32Array.from({ length: T }, (_, i) => (i === 0 ? 0 : 1 + Math.floor(r() * (vocab - 1)))),
  );
}

const SPECS: SaeTrainSpec[] = [
  { hookPoint: { site: 'resid_post', layer: 0 }, dSae: 64, arch: { kind: 'topk', k: 4 } },
  {
    hookPoint: { site: 'mlp_out', layer: 1 },
    dSae: 48,
    arch: { kind: 'relu', l1Coefficient: 0.05, l1WarmupSteps: 5 },
  },
];

function options(model: LanguageModel, over: Partial<TrainOptions> = {}): TrainOptions {
  return {
    model,
    specs: SPECS,
    windows: windows(48, 12, model.dims.vocabSize, 1),
    evalWindows: windows(6, 12, model.dims.vocabSize, 2),
    tokens: 12 * 11 * 4,
    batchWindows: 4,
    stepTokens: 20,
    lr: 1e-2,
    seed: 3,
    deadWindowTokens: 100,
    ...over,
  };
}

const host = (sae: SparseAutoencoder) =>
  (['wEnc', 'bEnc', 'wDec', 'bDec'] as const).map((k) => sae.params[k].dataSync() as Float32Array);

describeEachBackend('SAE training', () => {
  it('collectActivations stops early and equals the full forward pass’s cache', () => {
    const model = tiny();
    const toks = tf.tensor2d(
      windows(3, 9, 97, 5).flatMap((w) => [...w]),
      [3, 9],
      'int32',
    );
    const keys: SiteKey[] = ['resid_post.0', 'attn_out.0'];
    const early = collectActivations(model, toks, keys);
    const ctx = new RunContext({ cache: keys });
    tf.dispose(model.forward({ tokens: toks }, ctx));
    const full = ctx.takeCache();
    for (const k of keys)
      expectBitIdentical(
        early.get(k)!.dataSync() as Float32Array,
        full.get(k)!.dataSync() as Float32Array,
        k,
      );
    tf.dispose([toks, ...early.values(), ...full.values()]);
    model.dispose();
  });

  it('training lowers held-out MSE; TopK keeps min(k, #positive) features per token; ReLU+L1 is sparser than its start', async () => {
    const model = tiny();
    const still = await trainSaes(options(model, { lr: 0 }));
    const trained = await trainSaes(options(model));
    for (let i = 0; i < SPECS.length; i++) {
      expect(trained.metrics[i]!.eval!.mse, SPECS[i]!.hookPoint.site).toBeLessThan(
        0.7 * still.metrics[i]!.eval!.mse,
      );
      expect(trained.metrics[i]!.eval!.explainedVariance).toBeGreaterThan(
        still.metrics[i]!.eval!.explainedVariance,
      );
    }
    expect(trained.metrics[1]!.eval!.l0).toBeLessThan(still.metrics[1]!.eval!.l0);
    // TopK: every token keeps exactly k features unless fewer than k pre-activations are positive.
    const sae = trained.saes[0]!;
    const x = tf.randomNormal([40, model.dims.dModel], 0, 3, 'float32', 7);
    const pre = tf.tidy(() => sae.preActivations(x).arraySync() as number[][]);
    const f = tf.tidy(() => sae.encode(x).arraySync() as number[][]);
    let exact = 0;
    f.forEach((row, r) => {
      const nonzero = row.filter((v) => v > 0).length;
      const positive = pre[r]!.filter((v) => v > 0).length;
      expect(nonzero).toBe(Math.min(4, positive));
      if (nonzero === 4) exact++;
    });
    expect(exact).toBeGreaterThan(30);
    expect(trained.metrics[0]!.train.l0).toBeLessThanOrEqual(4);
    expect(trained.metrics[0]!.eval!.l0).toBeGreaterThan(3.5);
    x.dispose();
    for (const s of [...still.saes, ...trained.saes]) s.dispose();
    model.dispose();
  });

  it('a run resumed from a checkpoint (through files) ends with the same weights as an uninterrupted one', async () => {
    const model = tiny();
    const dir = mkdtempSync(join(tmpdir(), 'relp-sae-ckpt-'));
    try {
      const whole = await trainSaes(options(model, { evalWindows: [] }));
      let saved: TrainerState | undefined;
      const first = await trainSaes(
        options(model, {
          evalWindows: [],
          checkpointEvery: 1,
          onCheckpoint: async (s) => {
            if (s.batches === 1) await saveTrainerState(s, dir);
            saved ??= s;
          },
        }),
      );
      expect(saved?.batches).toBe(1);
      const resumed = await trainSaes(
        options(model, { evalWindows: [], resume: (await loadTrainerState(dir))! }),
      );
      for (let i = 0; i < SPECS.length; i++) {
        const a = host(whole.saes[i]!);
        const b = host(resumed.saes[i]!);
        for (const [j, t] of a.entries())
          expectBitIdentical(b[j]!, t, `${SPECS[i]!.hookPoint.site} param ${j}`);
        expect(resumed.saes[i]!.inputScale).toBe(whole.saes[i]!.inputScale);
        expect(resumed.metrics[i]!.deadFeatures).toBe(whole.metrics[i]!.deadFeatures);
      }
      for (const s of [...whole.saes, ...first.saes, ...resumed.saes]) s.dispose();
    } finally {
      rmSync(dir, { recursive: true, force: true });
      model.dispose();
    }
  });

  it('a trained SAE round-trips bit-exactly through a SAELens folder on disk', async () => {
    const model = tiny();
    const dir = mkdtempSync(join(tmpdir(), 'relp-sae-out-'));
    try {
      const { saes } = await trainSaes(options(model, { evalWindows: [], tokens: 40 }));
      for (const [i, sae] of saes.entries()) {
        expect(sae.inputScale).not.toBe(1);
        const folder = join(dir, String(i));
        await saveSaeLens(sae, folder, { modelName: 'tiny' });
        const back = await loadSaeLensFolder(folder);
        for (const [j, t] of host(sae).entries()) expectBitIdentical(host(back)[j]!, t, `param ${j}`);
        expect(back.inputScale).toBe(sae.inputScale);
        expect(back.activation.kind).toBe(sae.activation.kind);
        expect(back.hookPoint).toEqual(sae.hookPoint);
        back.dispose();
        sae.dispose();
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
      model.dispose();
    }
  });

  it('an SAE that reconstructs exactly recovers all of the CE loss; zero ablation costs loss', async () => {
    const model = tiny();
    const d = model.dims.dModel;
    // relu(x) − relu(−x) = x: W_enc = [I, −I], W_dec = [I; −I], no biases.
    const [wEnc, wDec] = tf.tidy(() => {
      const eye = tf.eye(d);
      return [
        tf.concat([eye, tf.neg(eye)], 1) as tf.Tensor2D,
        tf.concat([eye, tf.neg(eye)], 0) as tf.Tensor2D,
      ];
    });
    const sae = new SparseAutoencoder(
      { wEnc: wEnc!, bEnc: tf.zeros([2 * d]), wDec: wDec!, bDec: tf.zeros([d]) },
      { hookPoint: { site: 'resid_post', layer: 0 }, activation: { kind: 'relu' } },
    );
    const [m] = await evaluateSaes(model, [sae], windows(5, 10, 97, 9), { batchWindows: 2 });
    expect(m!.explainedVariance).toBeCloseTo(1, 5);
    expectClose([m!.ceSpliced], [m!.ceClean], 1e-4, 'CE spliced vs clean');
    expect(m!.ceZeroAblated).toBeGreaterThan(m!.ceClean);
    expect(m!.ceLossRecovered).toBeCloseTo(1, 3);
    // Clean CE against a literal computation from the full logits.
    const ws = windows(5, 10, 97, 9);
    const toks = tf.tensor2d(
      ws.flatMap((w) => [...w]),
      [5, 10],
      'int32',
    );
    const logits = tf.tidy(
      () => model.forward({ tokens: toks }, new RunContext()).arraySync() as number[][][],
    );
    let sum = 0;
    for (let b = 0; b < 5; b++)
      for (let t = 0; t < 9; t++) {
        const row = logits[b]![t]!;
        const mx = Math.max(...row);
        const lse = mx + Math.log(row.reduce((a, v) => a + Math.exp(v - mx), 0));
        sum += lse - row[ws[b]![t + 1]!]!;
      }
    expectClose([m!.ceClean], [sum / 45], 1e-4, 'clean CE');
    toks.dispose();
    sae.dispose();
    model.dispose();
  });
});

describe('corpus and initialisation', () => {
  it('Brown corpus text: tags dropped, quotes and punctuation attached', () => {
    const raw =
      "\n\n\tThe/at jury/nn said/vbd ``/`` no/at evidence/nn ''/'' ,/, and/cc it's/pps+bez over/rp ./.\n";
    expect(brownToText(raw)).toBe('The jury said "no evidence", and it\'s over.');
  });

  it('token windows: seeded, fixed length with BOS, held-out windows from other documents', () => {
    const docs = Array.from({ length: 12 }, (_, i) =>
      Array.from({ length: 40 }, (_, j) => String(i * 100 + j)).join(' '),
    );
    const tok = { encode: (s: string) => s.split(' ').map(Number), bosId: 9999 };
    const a = tokenWindows(docs, tok, {
      contextLength: 8,
      seed: 1,
      bos: 9999,
      evalWindows: 6,
      maxTrainWindows: 30,
    });
    const b = tokenWindows(docs, tok, {
      contextLength: 8,
      seed: 1,
      bos: 9999,
      evalWindows: 6,
      maxTrainWindows: 30,
    });
    const c = tokenWindows(docs, tok, {
      contextLength: 8,
      seed: 2,
      bos: 9999,
      evalWindows: 6,
      maxTrainWindows: 30,
    });
    expect(a.train.map((w) => [...w])).toEqual(b.train.map((w) => [...w]));
    expect(a.train.map((w) => [...w])).not.toEqual(c.train.map((w) => [...w]));
    expect(a.train).toHaveLength(30);
    expect(a.eval).toHaveLength(6);
    for (const w of [...a.train, ...a.eval]) {
      expect(w).toHaveLength(8);
      expect(w[0]).toBe(9999);
    }
    const docOf = (w: Int32Array) => Math.floor(w[1]! / 100);
    const evalDocs = new Set(a.eval.map(docOf));
    expect(a.train.some((w) => evalDocs.has(docOf(w)))).toBe(false);
  });

  it('geometric median of points equals a slow Weiszfeld reference and ignores an outlier', () => {
    const pts = [
      [0, 0],
      [1, 0],
      [0, 1],
      [1, 1],
      [100, 100],
    ];
    const gm = tf.tidy(() => geometricMedian(tf.tensor2d(pts), 200).arraySync());
    let b = [20.4, 20.4];
    for (let it = 0; it < 200; it++) {
      let w = 0;
      const s = [0, 0];
      for (const p of pts) {
        const wi = 1 / Math.max(Math.hypot(p[0]! - b[0]!, p[1]! - b[1]!), 1e-6);
        w += wi;
        s[0]! += wi * p[0]!;
        s[1]! += wi * p[1]!;
      }
      b = [s[0]! / w, s[1]! / w];
    }
    expectClose(gm, b, 1e-3, 'geometric median');
    expect(gm[0]).toBeLessThan(1.5);
  });
});
