import { isRelpError } from '@relp/core';
import { readSafetensors, type SafetensorsFile, writeSafetensors } from '@relp/weights';
import type * as tf from '@tensorflow/tfjs-core';
import { type SaeActivation, type SaeHookPoint, SparseAutoencoder } from '../sae.js';
import {
  badSaeFile,
  expectFinite,
  expectShape,
  type HostArray,
  hookNameToSite,
  positiveInt,
  siteToHookName,
  toTensor1d,
  toTensor2d,
  unsupportedSae,
} from './common.js';

/**
 * The files of a SAELens SAE folder: `cfg.json` (text, bytes or parsed), `sae_weights.safetensors` (bytes), and
 * optionally `activation_scaler.json` (SAELens ≥ 6 writes the `expected_average_only_in` scaling factor there).
 */
export interface SaeLensFiles {
  readonly cfg: string | Uint8Array | Readonly<Record<string, unknown>>;
  readonly weights: Uint8Array;
  readonly activationScaler?: string | Uint8Array | Readonly<Record<string, unknown>>;
  /** A name for error messages (the folder). */
  readonly source?: string;
}

export interface SaeLensLoadOptions {
  /**
   * The `expected_average_only_in` scaling factor when neither cfg.json nor activation_scaler.json carries it
   * (SAELens keeps the factors of pretrained releases in its release table, outside the SAE folder).
   */
  readonly scalingFactor?: number;
}

function parseJsonish(
  source: string,
  what: string,
  v: string | Uint8Array | Readonly<Record<string, unknown>>,
): Record<string, unknown> {
  if (typeof v === 'object' && !(v instanceof Uint8Array)) return { ...v };
  let text: string;
  try {
    text = typeof v === 'string' ? v : new TextDecoder('utf-8', { fatal: true }).decode(v);
  } catch {
    throw badSaeFile(`${source}: ${what} is not UTF-8`);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (e) {
    throw badSaeFile(`${source}: ${what} is not JSON (${(e as Error).message})`);
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    throw badSaeFile(`${source}: ${what} is not a JSON object`);
  }
  return parsed as Record<string, unknown>;
}

const isObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v);

/** Reads the architecture and nonlinearity of an old-style (≤ 5) or new-style (≥ 6) SAELens cfg. */
function activationOf(
  source: string,
  cfg: Record<string, unknown>,
  dSae: number,
): { kind: 'relu' } | { kind: 'jumprelu' } | { kind: 'topk'; k: number } {
  const arch = cfg.architecture ?? 'standard';
  if (typeof arch !== 'string') throw badSaeFile(`${source}: "architecture" is not a string`);
  const fn = cfg.activation_fn_str ?? cfg.activation_fn ?? undefined;
  const kwargs = isObject(cfg.activation_fn_kwargs) ? cfg.activation_fn_kwargs : {};
  const topkK = (): { kind: 'topk'; k: number } => {
    const k = positiveInt(source, 'k', cfg.k ?? kwargs.k);
    if (k > dSae) throw badSaeFile(`${source}: k = ${k} exceeds d_sae = ${dSae}`);
    return { kind: 'topk', k };
  };
  switch (arch) {
    case 'gated':
      throw unsupportedSae(
        `${source}: gated SAEs are not supported (their encoder has a separate gate path relp does not splice)`,
        { architecture: arch },
      );
    case 'jumprelu':
      return { kind: 'jumprelu' };
    case 'topk':
    case 'batchtopk':
      return topkK();
    case 'standard':
    case 'relu':
      if (fn === 'topk') return topkK();
      if (fn === undefined || fn === 'relu') return { kind: 'relu' };
      throw unsupportedSae(`${source}: activation function ${JSON.stringify(fn)} is not supported`, {
        activation: fn,
      });
    default:
      throw unsupportedSae(`${source}: SAE architecture ${JSON.stringify(arch)} is not supported`, {
        architecture: arch,
      });
  }
}

function scalingFactorOf(
  source: string,
  cfg: Record<string, unknown>,
  scaler: Record<string, unknown> | undefined,
  options: SaeLensLoadOptions,
): number {
  const norm = cfg.normalize_activations ?? 'none';
  if (norm === 'none' || norm === null || norm === false) return 1;
  if (norm !== 'expected_average_only_in') {
    throw unsupportedSae(
      `${source}: normalize_activations ${JSON.stringify(norm)} is not supported (only none and expected_average_only_in)`,
      { normalize_activations: norm },
    );
  }
  const candidates = [
    scaler?.scaling_factor,
    cfg.activation_scaling_factor,
    cfg.scaling_factor,
    options.scalingFactor,
  ];
  const f = candidates.find((v) => v !== undefined && v !== null);
  if (f === undefined) {
    throw unsupportedSae(
      `${source}: normalize_activations is expected_average_only_in but no scaling factor was found ` +
        '(activation_scaler.json, cfg.activation_scaling_factor or the scalingFactor option): without it every ' +
        'feature activation is off by an unknown constant',
    );
  }
  if (typeof f !== 'number' || !Number.isFinite(f) || f <= 0) {
    throw badSaeFile(`${source}: scaling factor must be a positive number (got ${JSON.stringify(f)})`);
  }
  return f;
}

/**
 * Loads a SAELens SAE (cfg.json + sae_weights.safetensors). Old-style configs (hook_name, hook_layer,
 * activation_fn_str / activation_fn_kwargs) and new ones (architecture, k, metadata.hook_name) both work.
 * W_enc [d_in, d_sae], b_enc, W_dec [d_sae, d_in], b_dec, and for JumpReLU `threshold` (or `log_threshold`);
 * a per-feature `scaling_factor` (finetuning_scaling_factor) is folded into W_dec's rows. Throws BAD_MODEL_FILE
 * for malformed files and UNSUPPORTED for gated SAEs, head-flattened hooks and other normalisations.
 */
export function loadSaeLens(files: SaeLensFiles, options: SaeLensLoadOptions = {}): SparseAutoencoder {
  const source = files.source ?? 'SAELens SAE';
  const cfg = parseJsonish(source, 'cfg.json', files.cfg);
  const scaler =
    files.activationScaler === undefined
      ? undefined
      : parseJsonish(source, 'activation_scaler.json', files.activationScaler);
  const dIn = positiveInt(source, 'd_in', cfg.d_in);
  const dSae = positiveInt(source, 'd_sae', cfg.d_sae);
  const act = activationOf(source, cfg, dSae);
  const meta = isObject(cfg.metadata) ? cfg.metadata : {};
  const hookName = cfg.hook_name ?? meta.hook_name;
  const hookPoint: SaeHookPoint = hookNameToSite(source, hookName);
  const hookLayer = cfg.hook_layer ?? meta.hook_layer;
  if (hookLayer !== undefined && hookLayer !== null && hookLayer !== hookPoint.layer) {
    throw badSaeFile(
      `${source}: hook_layer ${JSON.stringify(hookLayer)} disagrees with hook_name ${String(hookName)}`,
    );
  }
  const headIndex = cfg.hook_head_index ?? meta.hook_head_index;
  if (headIndex !== undefined && headIndex !== null) {
    throw unsupportedSae(`${source}: SAEs on one head (hook_head_index) are not supported`);
  }
  const inputScale = scalingFactorOf(source, cfg, scaler, options);
  const applyBDec = cfg.apply_b_dec_to_input ?? true;
  if (typeof applyBDec !== 'boolean') throw badSaeFile(`${source}: apply_b_dec_to_input is not a boolean`);

  let file: SafetensorsFile;
  try {
    file = readSafetensors(files.weights, { source: `${source}/sae_weights.safetensors` });
  } catch (e) {
    if (isRelpError(e)) throw e;
    throw badSaeFile(`${source}: sae_weights.safetensors cannot be read (${(e as Error).message})`);
  }
  const get = (name: string, shape: readonly number[]): HostArray => {
    if (file.has(name) && !file.isFloat(name))
      throw badSaeFile(`${source}: tensor "${name}" is not floating point`);
    const t = expectShape(source, name, file.get(name), shape);
    expectFinite(source, name, t);
    return t;
  };
  const wEnc = get('W_enc', [dIn, dSae]);
  const bEnc = get('b_enc', [dSae]);
  let wDec = get('W_dec', [dSae, dIn]);
  const bDec = get('b_dec', [dIn]);
  if (file.has('scaling_factor')) {
    const sf = get('scaling_factor', [dSae]);
    const folded = new Float32Array(wDec.data);
    for (let i = 0; i < dSae; i++) for (let j = 0; j < dIn; j++) folded[i * dIn + j]! *= sf.data[i]!;
    wDec = { shape: wDec.shape, data: folded };
  }
  let threshold: HostArray | undefined;
  if (act.kind === 'jumprelu') {
    if (file.has('threshold')) threshold = get('threshold', [dSae]);
    else if (file.has('log_threshold')) {
      const lt = get('log_threshold', [dSae]);
      threshold = { shape: lt.shape, data: lt.data.map((v) => Math.exp(v)) };
    } else throw badSaeFile(`${source}: JumpReLU SAE has no "threshold" tensor`, { tensor: 'threshold' });
  }
  const tensors: tf.Tensor[] = [];
  const keep = <T extends tf.Tensor>(t: T): T => {
    tensors.push(t);
    return t;
  };
  try {
    const activation: SaeActivation =
      act.kind === 'jumprelu' ? { kind: 'jumprelu', threshold: keep(toTensor1d(threshold!)) } : act;
    return new SparseAutoencoder(
      {
        wEnc: keep(toTensor2d(wEnc)),
        bEnc: keep(toTensor1d(bEnc)),
        wDec: keep(toTensor2d(wDec)),
        bDec: keep(toTensor1d(bDec)),
      },
      {
        hookPoint,
        activation,
        applyBDecToInput: applyBDec,
        inputScale,
        provenance: {
          format: 'saelens',
          source,
          ...(typeof (cfg.model_name ?? meta.model_name) === 'string'
            ? { modelName: cfg.model_name ?? meta.model_name }
            : {}),
        },
      },
    );
  } catch (e) {
    for (const t of tensors) t.dispose();
    throw e;
  }
}

/** The bytes of a SAELens folder for an SAE: cfg.json, sae_weights.safetensors, activation_scaler.json. */
export interface SaeLensOutput {
  readonly cfg: string;
  readonly weights: Uint8Array;
  readonly activationScaler: string;
}

export interface SaeLensWriteOptions {
  /** Model name written to cfg (model_name / metadata.model_name). */
  readonly modelName?: string;
  /** Extra cfg fields (training settings), written under metadata. */
  readonly metadata?: Readonly<Record<string, unknown>>;
}

/**
 * Serialises an SAE as a SAELens folder (float32 weights as they are, so a load gives the same bits back).
 * The cfg carries both old-style keys (hook_name, hook_layer, activation_fn_str, activation_fn_kwargs) and new
 * ones (architecture, k, metadata.hook_name). An input scale ≠ 1 is written as normalize_activations
 * expected_average_only_in with the factor in cfg and activation_scaler.json.
 */
export async function saeLensBytes(
  sae: SparseAutoencoder,
  options: SaeLensWriteOptions = {},
): Promise<SaeLensOutput> {
  const act = sae.activation;
  const arch = act.kind === 'relu' ? 'standard' : act.kind;
  const hookName = siteToHookName(sae.hookPoint);
  const scaled = sae.inputScale !== 1;
  const cfg: Record<string, unknown> = {
    architecture: arch,
    d_in: sae.dIn,
    d_sae: sae.dSae,
    dtype: 'float32',
    device: 'cpu',
    model_name: options.modelName ?? '',
    hook_name: hookName,
    hook_layer: sae.hookPoint.layer,
    hook_head_index: null,
    activation_fn_str: act.kind === 'topk' ? 'topk' : 'relu',
    activation_fn_kwargs: act.kind === 'topk' ? { k: act.k } : {},
    ...(act.kind === 'topk' ? { k: act.k } : {}),
    apply_b_dec_to_input: sae.applyBDecToInput,
    finetuning_scaling_factor: false,
    normalize_activations: scaled ? 'expected_average_only_in' : 'none',
    ...(scaled ? { activation_scaling_factor: sae.inputScale } : {}),
    reshape_activations: 'none',
    metadata: {
      model_name: options.modelName ?? '',
      hook_name: hookName,
      hook_layer: sae.hookPoint.layer,
      hook_head_index: null,
      ...(options.metadata ?? {}),
    },
  };
  const host = async (t: tf.Tensor) => (await t.data()) as Float32Array;
  const p = sae.params;
  const tensors: [string, { shape: number[]; data: Float32Array }][] = [
    ['W_enc', { shape: [sae.dIn, sae.dSae], data: await host(p.wEnc) }],
    ['b_enc', { shape: [sae.dSae], data: await host(p.bEnc) }],
    ['W_dec', { shape: [sae.dSae, sae.dIn], data: await host(p.wDec) }],
    ['b_dec', { shape: [sae.dIn], data: await host(p.bDec) }],
  ];
  if (act.kind === 'jumprelu')
    tensors.push(['threshold', { shape: [sae.dSae], data: await host(act.threshold) }]);
  return {
    cfg: `${JSON.stringify(cfg, null, 2)}\n`,
    weights: writeSafetensors(tensors),
    activationScaler: `${JSON.stringify({ scaling_factor: scaled ? sae.inputScale : null })}\n`,
  };
}
