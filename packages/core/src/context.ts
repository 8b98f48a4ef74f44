import * as tf from '@tensorflow/tfjs-core';
import { ErrorCodes, RelpError } from './errors.js';
import type { PeakBytes } from './memory.js';
import { type SiteDef, type SiteKey, type SiteName, siteKey } from './sites.js';
import {
  type ActivationKind,
  NO_RULES,
  type NormName,
  plainSlots,
  type RuleSet,
  type SlotFunctions,
  type SlotKind,
} from './slots.js';

/**
 * Replace part of a site's activation: out = where(mask, value, x). `mask` is boolean and broadcasts
 * against the site's shape (e.g. [B,T,1] for positions, [B,T,H,1] for heads); `value` has the site's shape
 * or broadcasts to it. `where` is exact: unmasked elements keep their bits.
 */
export interface Patch {
  readonly mask: tf.Tensor;
  readonly value: tf.Tensor;
}

/**
 * A user transform at a site, e.g. an SAE splice; `ctx` is the run's context (a splice visits its own run-time
 * sites through it). Must not dispose its input.
 */
export type SiteHook = (x: tf.Tensor, site: string, layer: number, ctx: RunContext) => tf.Tensor;

export interface RunContextOptions {
  /** Sites whose activations are recorded (kept tensors; the caller disposes them, see `takeCache`). */
  readonly cache?: Iterable<SiteKey>;
  /** Patches applied at sites, in order. */
  readonly patches?: ReadonlyMap<SiteKey, readonly Patch[]>;
  /** Zero tensors added at sites so gradients with respect to them are the gradients at the sites. */
  readonly deltas?: ReadonlyMap<SiteKey, tf.Tensor>;
  /** Arbitrary transforms at sites, applied after patches. */
  readonly hooks?: ReadonlyMap<SiteKey, readonly SiteHook[]>;
  /** The LRP rules for this run; none by default. */
  readonly rules?: RuleSet;
  /** Checked between layers: a run stops with an Aborted error when it fires. */
  readonly signal?: AbortSignal;
  /** Sampled at every site, for the peak memory a method reports. */
  readonly peak?: PeakBytes;
  /**
   * Run-time sites (not the model's own, e.g. an SAE's features) that hooks of this run visit with `site`:
   * keys of them are valid requests (checkRequestedSites).
   */
  readonly extraSites?: readonly SiteDef[];
}

/**
 * Everything about one forward pass that is not the model: what to record, patch, differentiate, and which
 * rules to use. A model calls `site` at every site and the slot methods for the rule slots. Because the
 * context lives for one run only, nothing a run changes survives it.
 */
export class RunContext {
  readonly rules: RuleSet;
  readonly extraSites: readonly SiteDef[];
  private readonly slots: SlotFunctions;
  private readonly cacheKeys: ReadonlySet<SiteKey>;
  private readonly patches: ReadonlyMap<SiteKey, readonly Patch[]>;
  private readonly deltas: ReadonlyMap<SiteKey, tf.Tensor>;
  private readonly hooks: ReadonlyMap<SiteKey, readonly SiteHook[]>;
  private readonly signal: AbortSignal | undefined;
  private readonly peak: PeakBytes | undefined;
  private readonly recorded = new Map<SiteKey, tf.Tensor>();
  private readonly visited = new Set<SiteKey>();
  /** How often each rule slot was called in this run (tests use it to prove a rule was live). */
  readonly slotCalls: Record<SlotKind, number> = {
    normalize: 0,
    activation: 0,
    gate_product: 0,
    attention_softmax: 0,
    attention_scores: 0,
    attention_values: 0,
  };

  constructor(options: RunContextOptions = {}) {
    this.rules = options.rules ?? NO_RULES;
    this.extraSites = options.extraSites ?? [];
    this.slots = { ...plainSlots, ...this.rules.slots };
    this.cacheKeys = new Set(options.cache ?? []);
    this.patches = options.patches ?? new Map();
    this.deltas = options.deltas ?? new Map();
    this.hooks = options.hooks ?? new Map();
    this.signal = options.signal;
    this.peak = options.peak;
  }

  /** Every site key this context acts on. */
  requestedKeys(): Set<SiteKey> {
    return new Set<SiteKey>([
      ...this.cacheKeys,
      ...this.patches.keys(),
      ...this.deltas.keys(),
      ...this.hooks.keys(),
    ]);
  }

  /** Whether anything is attached at a site: models skip optional work (per-head results) when not. */
  wants(site: SiteName | SiteDef, layer: number): boolean {
    const key = siteKey(site, layer);
    return this.cacheKeys.has(key) || this.patches.has(key) || this.deltas.has(key) || this.hooks.has(key);
  }

  /** Called by models at every site; returns the (possibly patched) activation to continue with. */
  site(site: SiteName | SiteDef, layer: number, x: tf.Tensor): tf.Tensor {
    const key = siteKey(site, layer);
    this.visited.add(key);
    this.peak?.sample();
    let out = x;
    const patches = this.patches.get(key);
    if (patches) for (const p of patches) out = tf.where(p.mask, p.value, out);
    const hooks = this.hooks.get(key);
    if (hooks) {
      const name = typeof site === 'string' ? site : site.name;
      for (const h of hooks) out = h(out, name, layer, this);
    }
    if (this.cacheKeys.has(key)) {
      const previous = this.recorded.get(key);
      if (previous) previous.dispose();
      // A copy survives the tidy scopes of the forward pass; the caller owns it.
      this.recorded.set(key, tf.keep(tf.clone(out)));
    }
    const delta = this.deltas.get(key);
    if (delta) out = tf.add(out, delta);
    return out;
  }

  /** sqrt(mean(xc²) + eps) over the last axis: a norm's scale, through the normalize slot's rule. */
  normScale(xc: tf.Tensor, eps: number, norm?: NormName): tf.Tensor {
    return this.slots.normScale(xc, eps, norm);
  }

  /** `norm` says which norm instance this is (a rule may treat only some); the plain slot ignores it. */
  normalize(xc: tf.Tensor, scale: tf.Tensor, norm?: NormName): tf.Tensor {
    this.slotCalls.normalize++;
    return this.slots.normalize(xc, scale, norm);
  }

  activation(kind: ActivationKind, x: tf.Tensor): tf.Tensor {
    this.slotCalls.activation++;
    return this.slots.activation(kind, x);
  }

  gateProduct(activatedGate: tf.Tensor, up: tf.Tensor): tf.Tensor {
    this.slotCalls.gate_product++;
    return this.slots.gateProduct(activatedGate, up);
  }

  attentionSoftmax(scores: tf.Tensor): tf.Tensor {
    this.slotCalls.attention_softmax++;
    return this.slots.attentionSoftmax(scores);
  }

  attentionScores(q: tf.Tensor3D, k: tf.Tensor3D): tf.Tensor3D {
    this.slotCalls.attention_scores++;
    return this.slots.attentionScores(q, k);
  }

  attentionValues(pattern: tf.Tensor3D, v: tf.Tensor3D): tf.Tensor3D {
    this.slotCalls.attention_values++;
    return this.slots.attentionValues(pattern, v);
  }

  /** Models call this between layers so long runs can be stopped. */
  checkAborted(): void {
    if (this.signal?.aborted) {
      throw new RelpError(ErrorCodes.Aborted, 'the run was aborted', { cause: this.signal.reason });
    }
  }

  /** Throws UnknownSite when a requested site was never reached (a typo or a layer the run skipped). */
  assertAllVisited(): void {
    for (const key of this.requestedKeys()) {
      if (!this.visited.has(key)) {
        throw new RelpError(
          ErrorCodes.UnknownSite,
          `site ${key} was requested but the model never reached it`,
          {
            details: { site: key },
          },
        );
      }
    }
  }

  /** Hands the recorded activations to the caller (who must dispose them) and forgets them. */
  takeCache(): Map<SiteKey, tf.Tensor> {
    const out = new Map(this.recorded);
    this.recorded.clear();
    return out;
  }

  /** Disposes recorded activations nobody took (on error paths). */
  dispose(): void {
    for (const t of this.recorded.values()) t.dispose();
    this.recorded.clear();
  }
}
