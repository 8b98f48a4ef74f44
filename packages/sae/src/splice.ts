import {
  badInput,
  type JobRuns,
  type LanguageModel,
  type ModelDims,
  RunContext,
  type RunContextOptions,
  type SiteDef,
  type SiteHook,
  type SiteKey,
  siteKey,
  siteShape,
} from '@relp/core';
import * as tf from '@tensorflow/tfjs-core';
import type { SparseAutoencoder } from './sae.js';

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

/** The two sites an SAE adds at its host site: its features f [B,T,dSae] and its error err = x − decode(f) [B,T,dIn]. */
export interface SaeSites {
  readonly sae: SparseAutoencoder;
  /** The host site's key, e.g. resid_post.3. */
  readonly host: SiteKey;
  readonly features: SiteDef;
  readonly error: SiteDef;
  /** The keys of the two sites (each has one layer, 0). */
  readonly featuresKey: SiteKey;
  readonly errorKey: SiteKey;
}

/**
 * The run-time sites of an SAE at host key h: `h/features` (a feature axis) and `h/error`, each with one layer (0)
 * that belongs to the host's block, so a run that changes them starts at that block.
 */
export function saeSites(sae: SparseAutoencoder): SaeSites {
  const host = saeKey(sae);
  const block = sae.hookPoint.layer;
  const common = {
    layers: () => 1,
    block: () => block,
    readoutOnly: false,
    circuitNodes: true,
    // The two make up the host's activation: IG interpolates them together.
    group: host,
    // Most features are equal (often 0) on both runs: patching runs only those that differ.
    sparse: true,
  };
  const features: SiteDef = Object.freeze({
    ...common,
    name: `${host}/features`,
    description: `features of the SAE at ${host}`,
    shape: (_dims: ModelDims, b: number, t: number) => [b, t, sae.dSae],
    axes: { position: 1, feature: 2, rank: 3 },
    defaultGranularity: 'feature' as const,
  });
  const error: SiteDef = Object.freeze({
    ...common,
    name: `${host}/error`,
    description: `error term x − decode(f) of the SAE at ${host}`,
    shape: (_dims: ModelDims, b: number, t: number) => [b, t, sae.dIn],
    axes: { position: 1, rank: 3 },
    defaultGranularity: 'position' as const,
  });
  return { sae, host, features, error, featuresKey: siteKey(features, 0), errorKey: siteKey(error, 0) };
}

/**
 * SAEs spliced into runs as sites of the engine: a hook at each SAE's host site encodes x, visits the SAE's
 * features and error through the run's context (`ctx.site`: that is where patches, deltas and caches of those
 * sites act), and continues with x + (decode(f′) − decode(f)) + (err′ − err). When the run asks nothing of an SAE's
 * sites the hook returns x itself (no encoder work), and when it changes nothing it returns x too: the spliced
 * model is the model, bit for bit. Holds no run state: one splice serves any number of runs.
 */
export class SaeSplice {
  /** By host key, in the order given. */
  readonly sites: ReadonlyMap<SiteKey, SaeSites>;
  readonly saes: ReadonlyMap<SiteKey, SparseAutoencoder>;

  constructor(model: LanguageModel, saes: readonly SparseAutoencoder[]) {
    this.saes = checkSaes(model, saes);
    this.sites = new Map([...this.saes].map(([k, sae]) => [k, saeSites(sae)]));
  }

  /** The run-time site definitions (features and error of every SAE). */
  get extraSites(): SiteDef[] {
    return [...this.sites.values()].flatMap((s) => [s.features, s.error]);
  }

  /** The features and error keys of every SAE, in order. */
  nodeKeys(): SiteKey[] {
    return [...this.sites.values()].flatMap((s) => [s.featuresKey, s.errorKey]);
  }

  /** Hooks for `RunContextOptions.hooks`, one per host site. */
  hooks(): Map<SiteKey, SiteHook[]> {
    const out = new Map<SiteKey, SiteHook[]>();
    for (const [key, s] of this.sites) out.set(key, [(x, _site, _layer, ctx) => spliceAt(s, x, ctx)]);
    return out;
  }

  /** What every run of an attribution job carries: the sites and the hooks. */
  runs(): JobRuns {
    return { extraSites: this.extraSites, hooks: this.hooks() };
  }

  /** A run context with the SAEs spliced in (its own hooks, if any, run after the splice's). */
  context(options: RunContextOptions = {}): RunContext {
    const hooks = this.hooks();
    for (const [k, hs] of options.hooks ?? []) hooks.set(k, [...(hooks.get(k) ?? []), ...hs]);
    return new RunContext({
      ...options,
      hooks,
      extraSites: [...this.extraSites, ...(options.extraSites ?? [])],
    });
  }
}

function spliceAt(s: SaeSites, x: tf.Tensor, ctx: RunContext): tf.Tensor {
  if (!ctx.wants(s.features, 0) && !ctx.wants(s.error, 0)) return x;
  const { f, err } = detachedEncode(s.sae, x);
  const fp = ctx.site(s.features, 0, f);
  const ep = ctx.site(s.error, 0, err);
  // Nothing to change and nothing to differentiate: the activation itself continues, bit for bit.
  if (fp === f && ep === err) return x;
  return spliceOut(s.sae, x, f, err, fp, ep);
}
