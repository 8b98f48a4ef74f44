import { ErrorCodes, type LanguageModel, RelpError, type SiteName, siteShape } from '@relp/core';
import * as tf from '@tensorflow/tfjs-core';
import type { SaeHookPoint, SparseAutoencoder } from '../sae.js';

/** A malformed SAE file or config (RelpError BAD_MODEL_FILE). */
export function badSaeFile(message: string, details: Record<string, unknown> = {}): RelpError {
  return new RelpError(ErrorCodes.BadModelFile, message, { details });
}

/** A well-formed SAE of a kind relp does not run (RelpError UNSUPPORTED). */
export function unsupportedSae(message: string, details: Record<string, unknown> = {}): RelpError {
  return new RelpError(ErrorCodes.Unsupported, message, { details });
}

/** A host-side float32 tensor read from a file. */
export interface HostArray {
  readonly shape: readonly number[];
  readonly data: Float32Array;
}

/** Throws BAD_MODEL_FILE unless `t` exists with exactly `shape`. */
export function expectShape(
  source: string,
  name: string,
  t: HostArray | undefined,
  shape: readonly number[],
): HostArray {
  if (t === undefined) throw badSaeFile(`${source}: tensor "${name}" is missing`, { tensor: name });
  if (t.shape.length !== shape.length || t.shape.some((s, i) => s !== shape[i])) {
    throw badSaeFile(`${source}: tensor "${name}" has shape [${t.shape}], expected [${shape}]`, {
      tensor: name,
      shape: [...t.shape],
      expected: [...shape],
    });
  }
  const size = shape.reduce((a, b) => a * b, 1);
  if (t.data.length !== size) throw badSaeFile(`${source}: tensor "${name}" has ${t.data.length} values`);
  return t;
}

/** Throws BAD_MODEL_FILE unless every value is finite (NaN weights make every downstream number NaN). */
export function expectFinite(source: string, name: string, t: HostArray): void {
  for (let i = 0; i < t.data.length; i++) {
    if (!Number.isFinite(t.data[i])) {
      throw badSaeFile(`${source}: tensor "${name}" holds a non-finite value at index ${i}`, {
        tensor: name,
      });
    }
  }
}

/** Transpose of a row-major [rows, cols] array. */
export function transpose2d(data: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(rows * cols);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) out[c * rows + r] = data[r * cols + c]!;
  return out;
}

/** A positive integer from a config value, else BAD_MODEL_FILE. */
export function positiveInt(source: string, key: string, v: unknown): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 1) {
    throw badSaeFile(`${source}: "${key}" must be a positive integer (got ${JSON.stringify(v)})`, { key });
  }
  return v;
}

const HOOKS: Readonly<Record<string, SiteName>> = {
  hook_resid_pre: 'resid_pre',
  hook_resid_mid: 'resid_mid',
  hook_resid_post: 'resid_post',
  hook_attn_out: 'attn_out',
  hook_mlp_out: 'mlp_out',
  'mlp.hook_post': 'mlp_post',
};

/**
 * A TransformerLens hook name ("blocks.3.hook_resid_post", "blocks.3.hook_mlp_out", "blocks.3.mlp.hook_post", …)
 * as a relp site. Head-flattened hooks (attn.hook_z and friends) and anything else raise UNSUPPORTED.
 */
export function hookNameToSite(source: string, hookName: unknown): SaeHookPoint {
  if (typeof hookName !== 'string')
    throw badSaeFile(`${source}: no hook name (got ${JSON.stringify(hookName)})`);
  const m = /^blocks\.(\d+)\.(.+)$/.exec(hookName);
  const site = m ? HOOKS[m[2]!] : undefined;
  if (!m || site === undefined) {
    throw unsupportedSae(
      `${source}: hook "${hookName}" is not a site relp splices SAEs into (supported: blocks.<l>.${Object.keys(HOOKS).join(' | ')})`,
      { hookName },
    );
  }
  const layer = Number(m[1]);
  if (!Number.isSafeInteger(layer)) throw badSaeFile(`${source}: bad layer in hook "${hookName}"`);
  return { site, layer };
}

/** The TransformerLens hook name of a relp site (inverse of hookNameToSite). */
export function siteToHookName(hook: SaeHookPoint): string {
  const entry = Object.entries(HOOKS).find(([, s]) => s === hook.site);
  if (!entry) throw unsupportedSae(`site ${hook.site} has no TransformerLens hook name relp writes`);
  return `blocks.${hook.layer}.${entry[0]}`;
}

/**
 * Throws BAD_INPUT unless the SAE fits the model: its hook point is a site the model has, at a layer it has,
 * with a hidden axis dIn wide.
 */
export function checkSaeFitsModel(sae: SparseAutoencoder, model: LanguageModel): void {
  const { site, layer } = sae.hookPoint;
  if (!model.sites.includes(site)) {
    throw new RelpError(ErrorCodes.BadInput, `the model (${model.architecture}) has no site ${site}`, {
      details: { site },
    });
  }
  if (!Number.isInteger(layer) || layer < 0 || layer >= model.dims.nLayers) {
    throw new RelpError(
      ErrorCodes.BadInput,
      `SAE hook ${site}.${layer} is outside the model's ${model.dims.nLayers} layers`,
      { details: { site, layer } },
    );
  }
  const width = siteShape(model.dims, site, 1, 1).at(-1);
  if (width !== sae.dIn) {
    throw new RelpError(
      ErrorCodes.BadInput,
      `SAE at ${site}.${layer} reads ${sae.dIn} values per token but the model's ${site} is ${width} wide`,
      { details: { site, layer, dIn: sae.dIn, width } },
    );
  }
}

/** float32 tensors from host arrays (the caller owns them). */
export function toTensor2d(a: HostArray): tf.Tensor2D {
  return tf.tensor2d(a.data, [a.shape[0]!, a.shape[1]!], 'float32');
}

export function toTensor1d(a: HostArray): tf.Tensor1D {
  return tf.tensor1d(a.data, 'float32');
}
