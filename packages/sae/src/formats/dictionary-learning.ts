import * as tf from '@tensorflow/tfjs-core';
import { type SaeActivation, type SaeHookPoint, SparseAutoencoder } from '../sae.js';
import {
  badSaeFile,
  expectFinite,
  expectShape,
  type HostArray,
  positiveInt,
  transpose2d,
  unsupportedSae,
} from './common.js';
import { MAX_TORCH_BYTES, readTorchStateDict, type TorchTensor } from './torch-pickle.js';

/** The files of a dictionary_learning SAE: `ae.pt` (a torch.save'd state dict) and `config.json`. */
export interface DictionaryLearningFiles {
  readonly ae: Uint8Array;
  readonly config: string | Uint8Array | Readonly<Record<string, unknown>>;
  readonly source?: string;
}

export interface DictionaryLearningLoadOptions {
  /** Where the SAE reads the model, when config.json's submodule_name does not say (e.g. "layer_3"). */
  readonly hookPoint?: SaeHookPoint;
}

/**
 * dictionary_learning submodule names as relp sites: "resid_post_layer_3" (its training scripts),
 * "resid_out_layer3", "attn_out_layer3", "mlp_out_layer3" (the feature-circuits dictionaries), "embed".
 */
export function submoduleToSite(name: unknown, layer: unknown): SaeHookPoint | undefined {
  if (typeof name !== 'string') return undefined;
  if (name === 'embed') return { site: 'resid_pre', layer: 0 };
  const m = /^(resid_post|resid_out|resid_pre|attn_out|mlp_out)_?layer_?(\d+)$/.exec(name);
  if (m) {
    const site =
      m[1] === 'resid_out' ? 'resid_post' : (m[1] as 'resid_post' | 'resid_pre' | 'attn_out' | 'mlp_out');
    return { site, layer: Number(m[2]) };
  }
  const plain: Record<string, SaeHookPoint['site']> = {
    resid_post: 'resid_post',
    resid_pre: 'resid_pre',
    attn_out: 'attn_out',
    mlp_out: 'mlp_out',
  };
  if (plain[name] !== undefined && typeof layer === 'number' && Number.isSafeInteger(layer) && layer >= 0)
    return { site: plain[name]!, layer };
  return undefined;
}

function parseConfig(source: string, v: DictionaryLearningFiles['config']): Record<string, unknown> {
  if (typeof v === 'object' && !(v instanceof Uint8Array)) return { ...v };
  let parsed: unknown;
  try {
    parsed = JSON.parse(typeof v === 'string' ? v : new TextDecoder('utf-8', { fatal: true }).decode(v));
  } catch (e) {
    throw badSaeFile(`${source}: config.json is not JSON (${(e as Error).message})`);
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed))
    throw badSaeFile(`${source}: config.json is not a JSON object`);
  return parsed as Record<string, unknown>;
}

/** The tensors (by state dict name) each dictionary class is read from, with their shapes. */
function expectedTensors(
  cls: unknown,
  dIn: number,
  dSae: number,
  source: string,
): Record<string, readonly number[]> {
  switch (cls) {
    case 'AutoEncoder':
      return {
        'encoder.weight': [dSae, dIn],
        'encoder.bias': [dSae],
        'decoder.weight': [dIn, dSae],
        bias: [dIn],
      };
    case 'AutoEncoderTopK':
      return {
        'encoder.weight': [dSae, dIn],
        'encoder.bias': [dSae],
        'decoder.weight': [dIn, dSae],
        b_dec: [dIn],
        k: [],
      };
    case 'JumpReluAutoEncoder':
      return { W_enc: [dIn, dSae], b_enc: [dSae], W_dec: [dSae, dIn], b_dec: [dIn], threshold: [dSae] };
    case 'GatedAutoEncoder':
      throw unsupportedSae(`${source}: gated SAEs (GatedAutoEncoder) are not supported`);
    default:
      throw unsupportedSae(`${source}: dictionary class ${JSON.stringify(cls)} is not supported`, {
        dictClass: cls,
      });
  }
}

/**
 * Loads a dictionary_learning SAE (github.com/saprmarks/dictionary_learning): ae.pt read directly (no Python), the
 * class from config.json's trainer.dict_class.
 * - AutoEncoder: encoder.weight [dSae, dIn], encoder.bias, decoder.weight [dIn, dSae], bias (subtracted from the
 *   input, added to the output); ReLU.
 * - AutoEncoderTopK: encoder.weight, encoder.bias, decoder.weight, b_dec, k (and an inference threshold, unused:
 *   encode keeps the top k); TopK.
 * - JumpReluAutoEncoder: W_enc [dIn, dSae], b_enc, W_dec [dSae, dIn], b_dec, threshold; no pre-encoder bias. Its
 *   features are scaled by ‖W_dec row‖ (and unscaled in decode), which is folded into W_enc, b_enc and threshold.
 * Throws BAD_MODEL_FILE for malformed files, UNSUPPORTED for other classes (gated, crosscoders, …).
 */
export function loadDictionaryLearning(
  files: DictionaryLearningFiles,
  options: DictionaryLearningLoadOptions = {},
): SparseAutoencoder {
  const source = files.source ?? 'dictionary_learning SAE';
  const config = parseConfig(source, files.config);
  const trainer = config.trainer;
  if (typeof trainer !== 'object' || trainer === null || Array.isArray(trainer))
    throw badSaeFile(`${source}: config.json has no "trainer" object`);
  const tr = trainer as Record<string, unknown>;
  const cls = tr.dict_class;
  const dIn = positiveInt(source, 'trainer.activation_dim', tr.activation_dim);
  const dSae = positiveInt(source, 'trainer.dict_size', tr.dict_size);
  const hookPoint = options.hookPoint ?? submoduleToSite(tr.submodule_name, tr.layer);
  if (!hookPoint) {
    throw badSaeFile(
      `${source}: cannot tell the site from trainer.submodule_name ${JSON.stringify(tr.submodule_name)}: pass hookPoint`,
    );
  }
  const want = expectedTensors(cls, dIn, dSae, source);
  // Room for float64 storages and the float32 copies made of them, and no more: a file that declares more is refused
  // before anything is inflated.
  const expectedElements = Object.values(want).reduce((a, shape) => a + shape.reduce((x, y) => x * y, 1), 0);
  const sd = readTorchStateDict(files.ae, `${source}/ae.pt`, {
    want,
    maxBytes: Math.min(12 * expectedElements + 2 ** 20, MAX_TORCH_BYTES),
  });
  const get = (name: string, shape: readonly number[]): HostArray => {
    const t: TorchTensor | undefined = sd.get(name);
    if (t !== undefined && !(t.data instanceof Float32Array))
      throw badSaeFile(`${source}: tensor "${name}" is not floating point`);
    const h = expectShape(source, name, t as HostArray | undefined, shape);
    expectFinite(source, name, h);
    return h;
  };
  let wEnc: Float32Array;
  let bEnc: Float32Array;
  let wDec: Float32Array;
  let bDec: Float32Array;
  let activation:
    | { kind: 'relu' }
    | { kind: 'topk'; k: number }
    | { kind: 'jumprelu'; threshold: Float32Array };
  let applyBDec = true;
  switch (cls) {
    case 'AutoEncoder':
    case 'AutoEncoderTopK': {
      wEnc = transpose2d(get('encoder.weight', [dSae, dIn]).data, dSae, dIn);
      bEnc = get('encoder.bias', [dSae]).data;
      wDec = transpose2d(get('decoder.weight', [dIn, dSae]).data, dIn, dSae);
      bDec = get(cls === 'AutoEncoder' ? 'bias' : 'b_dec', [dIn]).data;
      if (cls === 'AutoEncoder') activation = { kind: 'relu' };
      else {
        const kt = sd.get('k');
        const k = kt && kt.shape.length === 0 && kt.data.length === 1 ? kt.data[0] : tr.k;
        if (tr.k !== undefined && kt && tr.k !== k)
          throw badSaeFile(`${source}: config k = ${String(tr.k)} but ae.pt has k = ${String(k)}`);
        const kk = positiveInt(source, 'k', k);
        if (kk > dSae) throw badSaeFile(`${source}: k = ${kk} exceeds dict_size ${dSae}`);
        activation = { kind: 'topk', k: kk };
      }
      break;
    }
    case 'JumpReluAutoEncoder': {
      const we = get('W_enc', [dIn, dSae]).data;
      const be = get('b_enc', [dSae]).data;
      const wd = get('W_dec', [dSae, dIn]).data;
      const th = get('threshold', [dSae]).data;
      bDec = get('b_dec', [dIn]).data;
      // f = relu(pre·[pre > θ])·n with n = ‖W_dec row‖, x̂ = (f/n)·W_dec + b_dec: fold n into the encoder side.
      wEnc = new Float32Array(we.length);
      bEnc = new Float32Array(dSae);
      wDec = new Float32Array(wd.length);
      const threshold = new Float32Array(dSae);
      for (let i = 0; i < dSae; i++) {
        let sq = 0;
        for (let j = 0; j < dIn; j++) sq += wd[i * dIn + j]! ** 2;
        const n = Math.sqrt(sq);
        if (!(n > 0)) throw badSaeFile(`${source}: decoder row ${i} is zero`);
        for (let j = 0; j < dIn; j++) {
          wEnc[j * dSae + i] = we[j * dSae + i]! * n;
          wDec[i * dIn + j] = wd[i * dIn + j]! / n;
        }
        bEnc[i] = be[i]! * n;
        threshold[i] = th[i]! * n;
      }
      activation = { kind: 'jumprelu', threshold };
      applyBDec = false;
      break;
    }
    case 'GatedAutoEncoder':
      throw unsupportedSae(`${source}: gated SAEs (GatedAutoEncoder) are not supported`);
    default:
      throw unsupportedSae(`${source}: dictionary class ${JSON.stringify(cls)} is not supported`, {
        dictClass: cls,
      });
  }
  const made: tf.Tensor[] = [];
  const keep = <T extends tf.Tensor>(t: T): T => {
    made.push(t);
    return t;
  };
  try {
    const act: SaeActivation =
      activation.kind === 'jumprelu'
        ? { kind: 'jumprelu', threshold: keep(tf.tensor1d(activation.threshold)) }
        : activation;
    return new SparseAutoencoder(
      {
        wEnc: keep(tf.tensor2d(wEnc, [dIn, dSae])),
        bEnc: keep(tf.tensor1d(bEnc)),
        wDec: keep(tf.tensor2d(wDec, [dSae, dIn])),
        bDec: keep(tf.tensor1d(bDec)),
      },
      {
        hookPoint,
        activation: act,
        applyBDecToInput: applyBDec,
        provenance: { format: 'dictionary_learning', dictClass: cls, source },
      },
    );
  } catch (e) {
    for (const t of made) t.dispose();
    throw e;
  }
}
