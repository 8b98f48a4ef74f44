import {
  badInput,
  type LanguageModel,
  type Patch,
  type SiteHook,
  type SiteKey,
  siteKey,
  siteShape,
} from '@relp/core';
import * as tf from '@tensorflow/tfjs-core';
import type { SparseAutoencoder } from './sae.js';

/** The two node kinds an SAE adds at its site: the feature activations f and the error term err = x − x̂. */
export type SaeNodeKind = 'features' | 'error';

/** Features [B,T,dSae] and error [B,T,dIn] of one SAE in one run. */
export interface SaeActs {
  readonly features: tf.Tensor;
  readonly error: tf.Tensor;
}

/** What one run does with one SAE's nodes (all optional; absent means "leave alone"). */
export interface SaeNodeOptions {
  /** Patches of the features (mask and value broadcast against [B,T,dSae]), applied in order. */
  readonly featurePatches?: readonly Patch[];
  /** Patches of the error term (against [B,T,dIn]). */
  readonly errorPatches?: readonly Patch[];
  /** Zero tensors [B,T,dSae] added to the features: gradients with respect to them are ∂m/∂f. */
  readonly featureDelta?: tf.Tensor;
  /** Zero tensors [B,T,dIn] added to the error term: gradients with respect to them are ∂m/∂err. */
  readonly errorDelta?: tf.Tensor;
  /** Record the (patched, pre-delta) features and error of this run. */
  readonly cache?: boolean;
}

/** The site key an SAE is spliced at. */
export function saeKey(sae: SparseAutoencoder): SiteKey {
  return siteKey(sae.hookPoint.site, sae.hookPoint.layer);
}

/**
 * Checks SAEs against a model before any run: one SAE per site key, the site exists at that layer, and its hidden
 * axis is as wide as the SAE's input. Returns the SAEs by key, in the order given.
 */
export function checkSaes(
  model: LanguageModel,
  saes: readonly SparseAutoencoder[],
): Map<SiteKey, SparseAutoencoder> {
  if (saes.length === 0) throw badInput('no SAEs given');
  const out = new Map<SiteKey, SparseAutoencoder>();
  for (const sae of saes) {
    const { site, layer } = sae.hookPoint;
    const key = saeKey(sae);
    if (!model.sites.includes(site)) {
      throw badInput(
        `SAE at ${key}: site '${site}' does not exist in ${model.architecture} (it has ${model.sites.join(', ')})`,
        { site },
      );
    }
    if (!Number.isInteger(layer) || layer < 0 || layer >= model.dims.nLayers) {
      throw badInput(`SAE at ${key}: layer outside 0..${model.dims.nLayers - 1}`, { layer });
    }
    const shape = siteShape(model.dims, site, 1, 1);
    if (shape.length !== 3) {
      throw badInput(
        `SAE at ${key}: '${site}' has shape [${shape}] per token; SAEs read sites with one hidden axis ` +
          '(resid_pre, resid_mid, resid_post, attn_out, mlp_out, mlp_pre, mlp_post)',
        { site },
      );
    }
    const width = shape[2]!;
    if (width !== sae.dIn) {
      throw badInput(
        `SAE at ${key} has d_in ${sae.dIn} but ${model.architecture}'s ${site} is ${width} wide ` +
          '(an SAE trained for another model or site?)',
        { site, expected: width, got: sae.dIn },
      );
    }
    if (out.has(key)) throw badInput(`two SAEs at ${key}: one SAE per site`, { site: key });
    out.set(key, sae);
  }
  return out;
}

/**
 * f = encode(x) and err = x − decode(f), computed off the gradient tape (one custom op whose gradient is zero):
 * the splice routes the gradient to x as the identity, so encoder gradients would be wasted work.
 */
function detachedEncode(sae: SparseAutoencoder, x: tf.Tensor): { f: tf.Tensor; err: tf.Tensor } {
  const both = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const input = args[0] as tf.Tensor;
    const value = tf.tidy(() => {
      const f = sae.encode(input);
      const err = tf.sub(input, sae.decode(f));
      return tf.concat([f, err], -1);
    });
    return { value, gradFunc: () => tf.zerosLike(input) };
  })(x) as tf.Tensor;
  const lead = x.shape.slice(0, -1);
  const zero = lead.map(() => 0);
  const f = tf.slice(both, [...zero, 0], [...lead, sae.dSae]);
  const err = tf.slice(both, [...zero, sae.dSae], [...lead, sae.dIn]);
  return { f, err };
}

/**
 * out = x + ((decode(f′) − decode(f)) + (err′ − err)): exactly x when f′ = f and err′ = err (bit for bit), and
 * otherwise the reconstruction from the patched features plus the patched error. Backward: ∂out/∂x = I,
 * ∂out/∂f′ = W_decᵀ / scale, ∂out/∂err′ = I.
 */
function spliceOut(
  sae: SparseAutoencoder,
  x: tf.Tensor,
  f: tf.Tensor,
  err: tf.Tensor,
  fp: tf.Tensor,
  ep: tf.Tensor,
): tf.Tensor {
  const op = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const [xx, ff, ee] = args as tf.Tensor[];
    const value = tf.tidy(() =>
      tf.add(xx!, tf.add(tf.sub(sae.decode(ff!), sae.decode(f)), tf.sub(ee!, err))),
    );
    return {
      value,
      gradFunc: (dy: tf.Tensor) => {
        const lead = dy.shape.slice(0, -1);
        const flat = tf.reshape(dy, [-1, sae.dIn]);
        let gf = tf.matMul(flat, sae.params.wDec, false, true);
        if (sae.inputScale !== 1) gf = tf.div(gf, sae.inputScale);
        const gfFull = tf.reshape(gf, [...lead, sae.dSae]);
        // Patch values broadcast against the site: reduce to each input's own shape.
        return [reduceTo(dy, xx!.shape), reduceTo(gfFull, ff!.shape), reduceTo(dy, ee!.shape)];
      },
    };
  });
  return op(x, fp, ep) as tf.Tensor;
}

/** Sums a gradient over the axes an input was broadcast along. */
function reduceTo(g: tf.Tensor, shape: readonly number[]): tf.Tensor {
  if (g.shape.length === shape.length && g.shape.every((s, i) => s === shape[i])) return g;
  const axes: number[] = [];
  g.shape.forEach((s, i) => {
    if (shape[i] === 1 && s !== 1) axes.push(i);
  });
  return tf.reshape(tf.sum(g, axes, true), shape as number[]);
}

/**
 * SAEs spliced into one run: hooks for a RunContext (`hooks()`), the nodes' patches, deltas and caches. Make a fresh
 * splice per run, as a RunContext is made per run: nothing survives it. `dispose` frees recorded activations nobody
 * took (on error paths).
 */
export class SaeSplice {
  private readonly recorded = new Map<SiteKey, SaeActs>();
  private readonly visited = new Set<SiteKey>();

  constructor(
    readonly saes: ReadonlyMap<SiteKey, SparseAutoencoder>,
    private readonly nodes: ReadonlyMap<SiteKey, SaeNodeOptions> = new Map(),
  ) {
    for (const key of nodes.keys()) {
      if (!saes.has(key)) throw badInput(`SAE node options for ${key}, where no SAE is spliced`);
    }
  }

  /** Hooks for `RunContextOptions.hooks`, one per SAE site. */
  hooks(): Map<SiteKey, SiteHook[]> {
    const out = new Map<SiteKey, SiteHook[]>();
    for (const [key, sae] of this.saes) out.set(key, [(x) => this.apply(key, sae, x)]);
    return out;
  }

  private apply(key: SiteKey, sae: SparseAutoencoder, x: tf.Tensor): tf.Tensor {
    this.visited.add(key);
    const opts = this.nodes.get(key);
    // Nothing asked of this SAE in this run: the activation continues untouched (no encoder work).
    if (
      !opts ||
      (!opts.cache &&
        !opts.featurePatches?.length &&
        !opts.errorPatches?.length &&
        !opts.featureDelta &&
        !opts.errorDelta)
    ) {
      return x;
    }
    const { f, err } = detachedEncode(sae, x);
    let fp = f;
    let ep = err;
    for (const p of opts.featurePatches ?? []) fp = tf.where(p.mask, p.value, fp);
    for (const p of opts.errorPatches ?? []) ep = tf.where(p.mask, p.value, ep);
    if (opts.cache) {
      const previous = this.recorded.get(key);
      if (previous) tf.dispose([previous.features, previous.error]);
      this.recorded.set(key, { features: tf.keep(tf.clone(fp)), error: tf.keep(tf.clone(ep)) });
    }
    if (opts.featureDelta) fp = tf.add(fp, opts.featureDelta);
    if (opts.errorDelta) ep = tf.add(ep, opts.errorDelta);
    // Nothing to change and nothing to differentiate: the activation itself continues, bit for bit.
    if (fp === f && ep === err) return x;
    return spliceOut(sae, x, f, err, fp, ep);
  }

  /** Whether the run reached every spliced site. */
  assertAllVisited(): void {
    for (const key of this.saes.keys()) {
      if (!this.visited.has(key)) throw badInput(`the run never reached the SAE site ${key}`);
    }
  }

  /** Hands the recorded features and errors to the caller (who disposes them). */
  takeCache(): Map<SiteKey, SaeActs> {
    const out = new Map(this.recorded);
    this.recorded.clear();
    return out;
  }

  dispose(): void {
    for (const a of this.recorded.values()) tf.dispose([a.features, a.error]);
    this.recorded.clear();
  }
}
