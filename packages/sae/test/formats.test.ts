import { readFileSync } from 'node:fs';
import { ErrorCodes, isRelpError, RelpError } from '@relp/core';
import { randomGpt2Model } from '@relp/models-gpt2';
import {
  describeEachBackend,
  expectBitIdentical,
  expectClose,
  fixturePath,
  installLeakGuard,
  readFixtureJson,
} from '@relp/testing';
import { readSafetensors, writeSafetensors } from '@relp/weights';
import * as tf from '@tensorflow/tfjs-core';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  checkSaeFitsModel,
  loadDictionaryLearning,
  loadSaeLens,
  readTorchStateDict,
  SparseAutoencoder,
  saeLensBytes,
  transpose2d,
} from '../src/index.js';

installLeakGuard();

const bytes = (...p: string[]) => new Uint8Array(readFileSync(fixturePath('sae', ...p)));
const expected = (name: string) => readSafetensors(bytes(name, 'expected.safetensors'));
const f32 = (t: tf.Tensor) => t.dataSync() as Float32Array;

const dl = (name: string) =>
  loadDictionaryLearning({ ae: bytes(name, 'ae.pt'), config: bytes(name, 'config.json'), source: name });
const saelens = (name: string) => {
  let scaler: Uint8Array | undefined;
  try {
    scaler = bytes(name, 'activation_scaler.json');
  } catch {
    scaler = undefined;
  }
  return loadSaeLens({
    cfg: bytes(name, 'cfg.json'),
    weights: bytes(name, 'sae_weights.safetensors'),
    ...(scaler ? { activationScaler: scaler } : {}),
    source: name,
  });
};

/** encode/decode of the fixture's x equal Python's f and x_hat (float32 matmul order differs: 1e-5). */
function expectSameOutputs(sae: SparseAutoencoder, name: string): void {
  const ex = expected(name);
  const x = ex.get('x')!;
  tf.tidy(() => {
    const xt = tf.tensor2d(x.data, [x.shape[0]!, x.shape[1]!]);
    const f = sae.encode(xt);
    expectClose(f32(f), ex.get('f')!.data, 1e-5, `${name} f`);
    expectClose(f32(sae.decode(f)), ex.get('x_hat')!.data, 1e-5, `${name} x_hat`);
  });
}

describe('readTorchStateDict (restricted unpickler)', () => {
  it('reads every tensor of every dictionary_learning fixture exactly as torch wrote it', () => {
    for (const name of [
      'dl-relu',
      'dl-topk',
      'dl-jumprelu',
      'dl-relu-f16',
      'dl-topk-bf16',
      'dl-relu-strided',
    ]) {
      const sd = readTorchStateDict(bytes(name, 'ae.pt'), name);
      const ex = expected(name);
      const floats = [...sd.entries()].filter(
        ([, t]) => t.data instanceof Float32Array && t.shape.length > 0,
      );
      expect(floats.length, name).toBeGreaterThanOrEqual(4);
      for (const [key, t] of floats) {
        const want = ex.get(key);
        expect(want, `${name}: ${key} in expected`).toBeDefined();
        expect([...t.shape]).toEqual([...want!.shape]);
        expectBitIdentical(t.data as Float32Array, want!.data, `${name} ${key}`);
      }
    }
    const topk = readTorchStateDict(bytes('dl-topk', 'ae.pt'));
    expect(topk.get('k')).toMatchObject({ shape: [], dtype: 'int32' });
    expect([...topk.get('k')!.data]).toEqual([3]);
    expect(readTorchStateDict(bytes('dl-topk-bf16', 'ae.pt')).get('b_dec')!.dtype).toBe('bfloat16');
    expect(readTorchStateDict(bytes('dl-relu-f16', 'ae.pt')).get('bias')!.dtype).toBe('float16');
  });

  it('refuses globals and opcodes a state dict does not need (a pickle that would run os.system)', async () => {
    const { zipSync } = await import('fflate');
    const evil = new Uint8Array([
      0x80,
      0x02,
      0x63,
      ...new TextEncoder().encode('os\nsystem\n'),
      0x58,
      2,
      0,
      0,
      0,
      0x6c,
      0x73,
      0x85,
      0x52,
      0x2e,
    ]);
    const zip = zipSync({ 'ae/data.pkl': evil, 'ae/byteorder': new TextEncoder().encode('little') });
    expect(() => readTorchStateDict(zip, 'evil')).toThrowError(/global os\.system is not allowed/);
    try {
      readTorchStateDict(zip);
    } catch (e) {
      expect(isRelpError(e, ErrorCodes.BadModelFile)).toBe(true);
    }
  });
});

describeEachBackend('SAE formats', () => {
  it('dictionary_learning AutoEncoder, TopK and JumpReLU (float32, float16, bfloat16, strided) match Python', () => {
    for (const name of [
      'dl-relu',
      'dl-topk',
      'dl-jumprelu',
      'dl-relu-f16',
      'dl-topk-bf16',
      'dl-relu-strided',
    ]) {
      const sae = dl(name);
      try {
        expect(sae.dIn).toBe(6);
        expect(sae.dSae).toBe(10);
        expectSameOutputs(sae, name);
        if (name !== 'dl-jumprelu') {
          // Weights are the state dict's, transposed into the contract's layout, bit for bit.
          const ex = expected(name);
          expectBitIdentical(
            f32(sae.params.wEnc),
            transpose2d(ex.get('encoder.weight')!.data, 10, 6),
            `${name} W_enc`,
          );
          expectBitIdentical(
            f32(sae.params.wDec),
            transpose2d(ex.get('decoder.weight')!.data, 6, 10),
            `${name} W_dec`,
          );
        }
      } finally {
        sae.dispose();
      }
    }
    const t = dl('dl-topk');
    const j = dl('dl-jumprelu');
    expect(t.activation).toEqual({ kind: 'topk', k: 3 });
    expect(t.hookPoint).toEqual({ site: 'mlp_out', layer: 3 });
    expect(j.hookPoint).toEqual({ site: 'attn_out', layer: 3 });
    expect(j.applyBDecToInput).toBe(false);
    t.dispose();
    j.dispose();
  });

  it('SAELens old- and new-style cfgs (standard, TopK, JumpReLU, expected_average_only_in) match Python', () => {
    const cases = [
      ['saelens-standard-old', 'relu', { site: 'resid_post', layer: 3 }],
      ['saelens-topk-old', 'topk', { site: 'mlp_out', layer: 2 }],
      ['saelens-jumprelu-new', 'jumprelu', { site: 'attn_out', layer: 1 }],
      ['saelens-topk-new-scaled', 'topk', { site: 'resid_pre', layer: 0 }],
    ] as const;
    for (const [name, kind, hook] of cases) {
      const sae = saelens(name);
      try {
        expect(sae.activation.kind).toBe(kind);
        expect(sae.hookPoint).toEqual(hook);
        const ex = expected(name);
        expectBitIdentical(f32(sae.params.wEnc), ex.get('W_enc')!.data, `${name} W_enc`);
        expectBitIdentical(f32(sae.params.wDec), ex.get('W_dec')!.data, `${name} W_dec`);
        expectSameOutputs(sae, name);
      } finally {
        sae.dispose();
      }
    }
    const scaled = saelens('saelens-topk-new-scaled');
    expect(scaled.inputScale).toBe(0.25);
    scaled.dispose();
  });

  it('the SAELens writer round-trips bit-exactly (ReLU, TopK, JumpReLU, input scale)', async () => {
    for (const name of [
      'saelens-standard-old',
      'saelens-topk-old',
      'saelens-jumprelu-new',
      'saelens-topk-new-scaled',
    ]) {
      const a = saelens(name);
      const out = await saeLensBytes(a, { modelName: 'tiny' });
      const b = loadSaeLens({ cfg: out.cfg, weights: out.weights, activationScaler: out.activationScaler });
      try {
        for (const k of ['wEnc', 'bEnc', 'wDec', 'bDec'] as const)
          expectBitIdentical(f32(b.params[k]), f32(a.params[k]), `${name} ${k}`);
        if (a.activation.kind === 'jumprelu' && b.activation.kind === 'jumprelu')
          expectBitIdentical(f32(b.activation.threshold), f32(a.activation.threshold), `${name} threshold`);
        expect(b.activation.kind).toBe(a.activation.kind);
        expect(b.hookPoint).toEqual(a.hookPoint);
        expect(b.inputScale).toBe(a.inputScale);
        expect(b.applyBDecToInput).toBe(a.applyBDecToInput);
        const cfg = JSON.parse(out.cfg);
        expect(cfg.hook_name).toBe(`blocks.${a.hookPoint.layer}.hook_${a.hookPoint.site}`);
      } finally {
        a.dispose();
        b.dispose();
      }
    }
  });
});

const code = (f: () => unknown): string | undefined => {
  try {
    const r = f();
    if (r instanceof SparseAutoencoder) r.dispose();
    return undefined;
  } catch (e) {
    if (e instanceof RelpError) return e.code;
    throw e;
  }
};

describe('hostile SAE files', () => {
  const cfg = readFixtureJson<Record<string, unknown>>('sae', 'saelens-standard-old', 'cfg.json');
  const weights = bytes('saelens-standard-old', 'sae_weights.safetensors');
  const st = readSafetensors(weights);
  const tensors = Object.fromEntries(
    st.names().map((n) => [n, { shape: [...st.get(n)!.shape], data: Float32Array.from(st.get(n)!.data) }]),
  );

  it('missing tensors, wrong shapes, bad configs, gated SAEs and unsupported hooks are typed errors', () => {
    const { W_dec: _drop, ...noDec } = tensors;
    expect(code(() => loadSaeLens({ cfg, weights: writeSafetensors(noDec) }))).toBe(ErrorCodes.BadModelFile);
    const wrong = { ...tensors, b_enc: { shape: [9], data: new Float32Array(9) } };
    expect(code(() => loadSaeLens({ cfg, weights: writeSafetensors(wrong) }))).toBe(ErrorCodes.BadModelFile);
    const nan = { ...tensors, b_dec: { shape: [6], data: new Float32Array(6).fill(Number.NaN) } };
    expect(code(() => loadSaeLens({ cfg, weights: writeSafetensors(nan) }))).toBe(ErrorCodes.BadModelFile);
    expect(code(() => loadSaeLens({ cfg: { ...cfg, d_in: 7 }, weights }))).toBe(ErrorCodes.BadModelFile);
    expect(code(() => loadSaeLens({ cfg: { ...cfg, d_sae: -1 }, weights }))).toBe(ErrorCodes.BadModelFile);
    expect(code(() => loadSaeLens({ cfg: { ...cfg, architecture: 'gated' }, weights }))).toBe(
      ErrorCodes.Unsupported,
    );
    expect(() => loadSaeLens({ cfg: { ...cfg, architecture: 'gated' }, weights })).toThrowError(/gated/);
    expect(code(() => loadSaeLens({ cfg: { ...cfg, hook_name: 'blocks.3.attn.hook_z' }, weights }))).toBe(
      ErrorCodes.Unsupported,
    );
    expect(code(() => loadSaeLens({ cfg: { ...cfg, hook_layer: 5 }, weights }))).toBe(
      ErrorCodes.BadModelFile,
    );
    expect(
      code(() =>
        loadSaeLens({ cfg: { ...cfg, normalize_activations: 'expected_average_only_in' }, weights }),
      ),
    ).toBe(ErrorCodes.Unsupported);
    expect(code(() => loadSaeLens({ cfg: '{not json', weights }))).toBe(ErrorCodes.BadModelFile);
    const dlCfg = readFixtureJson<{ trainer: Record<string, unknown> }>('sae', 'dl-relu', 'config.json');
    const ae = bytes('dl-relu', 'ae.pt');
    const dlWith = (trainer: Record<string, unknown>) => () =>
      loadDictionaryLearning({ ae, config: { ...dlCfg, trainer: { ...dlCfg.trainer, ...trainer } } });
    expect(code(dlWith({ dict_class: 'GatedAutoEncoder' }))).toBe(ErrorCodes.Unsupported);
    expect(code(dlWith({ dict_size: 11 }))).toBe(ErrorCodes.BadModelFile);
    expect(code(dlWith({ submodule_name: 'somewhere' }))).toBe(ErrorCodes.BadModelFile);
    expect(code(dlWith({ dict_class: 'JumpReluAutoEncoder' }))).toBe(ErrorCodes.BadModelFile);
  });

  it('an SAE whose d_in is not its site’s width in the model, or whose layer is missing, is BAD_INPUT', () => {
    const model = randomGpt2Model('tiny', 1);
    const sae = saelens('saelens-standard-old'); // d_in 6 at resid_post.3; the tiny GPT-2 is 32 wide with 2 layers
    expect(() => checkSaeFitsModel(sae, model)).toThrowError(/outside the model's 2 layers/);
    const wide = new SparseAutoencoder(
      { wEnc: tf.zeros([6, 4]), bEnc: tf.zeros([4]), wDec: tf.zeros([4, 6]), bDec: tf.zeros([6]) },
      { hookPoint: { site: 'mlp_out', layer: 1 }, activation: { kind: 'relu' } },
    );
    expect(() => checkSaeFitsModel(wide, model)).toThrowError(
      /reads 6 values per token but the model's mlp_out is 32 wide/,
    );
    expect(code(() => checkSaeFitsModel(wide, model))).toBe(ErrorCodes.BadInput);
    const fits = new SparseAutoencoder(
      { wEnc: tf.zeros([32, 4]), bEnc: tf.zeros([4]), wDec: tf.zeros([4, 32]), bDec: tf.zeros([32]) },
      { hookPoint: { site: 'mlp_out', layer: 1 }, activation: { kind: 'relu' } },
    );
    expect(() => checkSaeFitsModel(fits, model)).not.toThrow();
    for (const s of [sae, wide, fits]) s.dispose();
    model.dispose();
  });

  const mutate = (src: Uint8Array) =>
    fc
      .array(fc.tuple(fc.nat(src.length - 1), fc.integer({ min: 0, max: 255 })), {
        minLength: 1,
        maxLength: 8,
      })
      .chain((edits) =>
        fc.nat(src.length).map((cut) => {
          const out = src.slice(0, Math.max(cut, src.length - (cut % 3 === 0 ? cut : 0)));
          for (const [i, v] of edits) if (i < out.length) out[i] = v;
          return out;
        }),
      );

  it('mutated or truncated ae.pt, safetensors and cfg.json bytes give a RelpError or a valid SAE, never a crash', () => {
    const ae = bytes('dl-topk', 'ae.pt');
    const dlCfg = bytes('dl-topk', 'config.json');
    const cfgBytes = bytes('saelens-jumprelu-new', 'cfg.json');
    const w = bytes('saelens-jumprelu-new', 'sae_weights.safetensors');
    fc.assert(
      fc.property(mutate(ae), (m) => {
        code(() => loadDictionaryLearning({ ae: m, config: dlCfg }));
      }),
      { numRuns: 300, seed: 1 },
    );
    fc.assert(
      fc.property(mutate(w), (m) => {
        code(() => loadSaeLens({ cfg: cfgBytes, weights: m }));
      }),
      { numRuns: 200, seed: 2 },
    );
    fc.assert(
      fc.property(mutate(cfgBytes), (m) => {
        code(() => loadSaeLens({ cfg: m, weights: w }));
      }),
      { numRuns: 200, seed: 3 },
    );
  });
});
