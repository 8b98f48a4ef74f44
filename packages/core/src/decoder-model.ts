import * as tf from '@tensorflow/tfjs-core';
import { CONFIG_LIMITS } from './checkpoint.js';
import type { RunContext } from './context.js';
import {
  attentionMaskBias,
  joinRows,
  prefixAt,
  type RopeSpec,
  ropeInverseFrequencies,
  rotaryTables,
  rowsAt,
  startLayerOf,
} from './decoder.js';
import { ErrorCodes, RelpError } from './errors.js';
import { checkRequestedSites, checkTokens, readoutRows, selectPositions } from './layers.js';
import {
  type ForwardOptions,
  type LanguageModel,
  type ModelDims,
  type ModelInput,
  positionOffset,
  vocabIds,
} from './model.js';
import type { SiteName } from './sites.js';
import type { Nonlinearity } from './slots.js';
import { type Built, buildWeights } from './weight-reader.js';

/**
 * The decoder runner every model family shares: a family supplies its weights, embedding, block and final layer;
 * this class owns everything around them — input validation (tokens, start layer, prefix, joins, readout,
 * vocabulary), the requested-site check, the attention masks and rotary tables of each kind of layer (made once
 * per run), each block's prefix keys/values and joined rows, the per-block tidy, abort checks, the readout, and
 * the weights' lifetime.
 */

/** The kind of attention a block has: which mask and which rotary embedding. */
export interface AttentionKind {
  /** A sliding window of this many positions (transformers' sliding_window); full causal attention when absent. */
  readonly slidingWindow?: number | undefined;
  /** Rotary embeddings of the queries and keys; none (e.g. GPT-2's learned positions) when absent. */
  readonly rope?: RopeSpec | undefined;
}

/** What a block's attention gets from the runner. */
export interface BlockAttention {
  /** Additive mask [T, offset+T] (attentionMaskBias) for this block's kind. */
  readonly mask: tf.Tensor2D;
  /** Rotary tables [T, rotated dims] at the run's absolute positions, when the block's kind has rotary embeddings. */
  readonly rope: { readonly cos: tf.Tensor2D; readonly sin: tf.Tensor2D } | undefined;
  /** The prefix's cached keys and values of this block (a prefix run), for `groupedQueryAttention`. */
  readonly prefix: { readonly k: tf.Tensor4D; readonly v: tf.Tensor4D } | undefined;
}

/** Construction options every family takes. */
export interface DecoderModelOptions {
  /**
   * Hold Wᵀ with every block matrix so the backward pass computes dy·Wᵀ without transpose flags (core's
   * `Linear`): on wasm, XNNPACK then runs it, 6–20× faster than tfjs's transposeB loop, at twice the matrices'
   * memory. Values do not change. Default: `wantsTransposedWeightCopies()` (true on wasm only).
   */
  readonly transposedCopies?: boolean;
}

/**
 * The sizes of a config as `ModelDims` (key/value heads default to the heads, the head width to d / heads),
 * checked against `CONFIG_LIMITS` (BAD_MODEL_FILE): every family calls this before it makes anything sized by
 * the config, so a config that claims absurd sizes costs nothing.
 */
export function decoderDims(c: {
  readonly nLayers: number;
  readonly dModel: number;
  readonly nHeads: number;
  readonly nKvHeads?: number;
  readonly dHead?: number;
  readonly dMlp: number;
  readonly vocabSize: number;
  readonly contextLength: number;
}): ModelDims {
  const dims: ModelDims = {
    nLayers: c.nLayers,
    dModel: c.dModel,
    nHeads: c.nHeads,
    nKvHeads: c.nKvHeads ?? c.nHeads,
    dHead: c.dHead ?? c.dModel / c.nHeads,
    dMlp: c.dMlp,
    vocabSize: c.vocabSize,
    contextLength: c.contextLength,
  };
  checkDecoderDims(dims);
  return dims;
}

/** Each size's limit, and the product of sizes that makes one weight tensor. */
const DIM_LIMITS: readonly (readonly [keyof ModelDims, string, number])[] = [
  ['nLayers', 'layer count', CONFIG_LIMITS.layers],
  ['dModel', 'model width', CONFIG_LIMITS.width],
  ['nHeads', 'head count', CONFIG_LIMITS.width],
  ['nKvHeads', 'key/value head count', CONFIG_LIMITS.width],
  ['dHead', 'head width', CONFIG_LIMITS.width],
  ['dMlp', 'MLP width', CONFIG_LIMITS.width],
  ['vocabSize', 'vocabulary size', CONFIG_LIMITS.vocab],
  ['contextLength', 'context length', CONFIG_LIMITS.positions],
];

/**
 * Model sizes that a checkpoint could hold: positive integers within `CONFIG_LIMITS`, heads a multiple of the
 * key/value heads, heads × head width and every weight matrix's size within the limits. BAD_MODEL_FILE otherwise.
 */
export function checkDecoderDims(dims: ModelDims): void {
  const bad = (message: string, details: Record<string, unknown>) =>
    new RelpError(ErrorCodes.BadModelFile, `model sizes: ${message}`, { details });
  for (const [key, what, max] of DIM_LIMITS) {
    const v = dims[key];
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 1) {
      throw bad(`the ${what} (${key}) must be a positive integer, got ${String(v)}`, { [key]: v });
    }
    if (v > max) {
      throw bad(`the ${what} (${key}) is ${v}, more than the largest supported (${max})`, { [key]: v });
    }
  }
  const { dModel: d, nHeads: H, nKvHeads: Hkv, dHead: dh, dMlp: m, vocabSize: V } = dims;
  if (H % Hkv !== 0) {
    throw bad(`${Hkv} key/value heads do not divide ${H} heads`, { nHeads: H, nKvHeads: Hkv });
  }
  if (H * dh > CONFIG_LIMITS.width) {
    throw bad(`${H} heads × head width ${dh} is more than the largest supported (${CONFIG_LIMITS.width})`, {
      nHeads: H,
      dHead: dh,
    });
  }
  for (const [what, size] of [
    ['embedding [vocab, width]', V * d],
    ['MLP matrix [width, MLP width]', d * m],
    ['attention projection [width, heads × head width]', d * H * dh],
  ] as const) {
    if (size > CONFIG_LIMITS.tensorElements) {
      throw bad(
        `the ${what} would have ${size} elements, more than a tensor may (${CONFIG_LIMITS.tensorElements})`,
        {
          elements: size,
        },
      );
    }
  }
}

export interface DecoderSpec<P> {
  /** Family and size, e.g. "gpt2". */
  readonly architecture: string;
  readonly dims: ModelDims;
  readonly sites: readonly SiteName[];
  readonly nonlinearities: readonly Nonlinearity[];
  /** Each block's attention kind, [nLayers]; blocks that share a kind share its mask and tables. */
  readonly attention: readonly AttentionKind[];
  /** The weight plan (`WeightReader`'s deferred tensors, read and checked); built by the constructor. */
  readonly weights: P;
}

/** A decoder-only transformer run by the shared runner; subclasses are the model families. */
export abstract class DecoderModel<P> implements LanguageModel {
  readonly architecture: string;
  readonly dims: ModelDims;
  readonly sites: readonly SiteName[];
  readonly nonlinearities: readonly Nonlinearity[];
  /** The family's weights as tensors (built from the plan once every weight was checked). */
  protected readonly weights: Built<P>;
  private readonly tensors: tf.Tensor[];
  private readonly attention: readonly AttentionKind[];
  private readonly inverseFrequencies = new Map<RopeSpec, Float32Array>();
  private disposed = false;

  protected constructor(spec: DecoderSpec<P>) {
    this.architecture = spec.architecture;
    this.dims = spec.dims;
    this.sites = spec.sites;
    this.nonlinearities = spec.nonlinearities;
    if (spec.attention.length !== spec.dims.nLayers) {
      throw new RelpError(
        ErrorCodes.BadModelFile,
        `${spec.attention.length} attention kinds for ${spec.dims.nLayers} layers`,
      );
    }
    this.attention = spec.attention;
    for (const { rope } of spec.attention) {
      if (rope !== undefined && !this.inverseFrequencies.has(rope)) {
        this.inverseFrequencies.set(rope, ropeInverseFrequencies(rope));
      }
    }
    const built = buildWeights(spec.weights);
    this.weights = built.weights;
    this.tensors = built.tensors;
  }

  /** The residual entering block 0 for token ids already checked, [B,T,d]. */
  protected abstract embedTokens(tokens: tf.Tensor2D): tf.Tensor3D;

  /**
   * Block `layer` on the residual entering it [rows, T, d]: calls every site of the block (resid_pre first,
   * resid_post last) and returns the residual leaving it. Runs inside its own tidy.
   */
  protected abstract block(
    ctx: RunContext,
    layer: number,
    resid: tf.Tensor3D,
    attention: BlockAttention,
  ): tf.Tensor3D;

  /**
   * Logits [rows, T, V] from the residual leaving the last block (already reduced to the readout positions):
   * the final norm (its scale through ln_final_scale at layer 0) and the unembedding. With `vocab` (checked ids
   * [V']) only those tokens' logits, in that order.
   */
  protected abstract logits(ctx: RunContext, resid: tf.Tensor3D, vocab: tf.Tensor1D | undefined): tf.Tensor3D;

  embed(tokens: tf.Tensor2D): tf.Tensor3D {
    this.assertLive();
    checkTokens(tokens, this.dims.vocabSize, this.dims.contextLength);
    return tf.tidy(() => this.embedTokens(tokens));
  }

  forward(input: ModelInput, ctx: RunContext, options: ForwardOptions = {}): tf.Tensor3D {
    this.assertLive();
    const { nLayers } = this.dims;
    checkRequestedSites(ctx, this.sites, nLayers);
    const start = startLayerOf(input, this.dims);
    const offset = positionOffset(input);
    const prefix = 'resid' in input ? input.prefix : undefined;
    const seq = 'tokens' in input ? input.tokens.shape[1] : input.resid.shape[1];
    // Rows joined on the way (ModelInput.joins) are part of the final batch.
    const readout = options.readout && readoutRows(options.readout, rowsAt(input, nLayers), seq, offset);
    return tf.tidy(() => {
      const vocab = options.vocab && vocabIds(options.vocab, this.dims.vocabSize);
      const kinds = this.attentionTables(seq, offset);
      let resid: tf.Tensor3D = 'tokens' in input ? this.embedTokens(input.tokens) : input.resid;
      for (let l = start; l < nLayers; l++) {
        ctx.checkAborted();
        const x = joinRows(input, l, resid) as tf.Tensor3D;
        const attention = { ...kinds(l), prefix: prefixAt(prefix, l) };
        // Each block's intermediates are freed when it ends (the tape keeps what a gradient needs).
        resid = tf.tidy(() => this.block(ctx, l, x, attention));
      }
      ctx.checkAborted();
      if (readout) resid = selectPositions(resid, readout) as tf.Tensor3D;
      return this.logits(ctx, resid, vocab);
    });
  }

  /** The mask and rotary tables of each block's kind for a run of `seq` positions from `offset`, made once each. */
  private attentionTables(seq: number, offset: number): (layer: number) => Omit<BlockAttention, 'prefix'> {
    const masks = new Map<number | undefined, tf.Tensor2D>();
    const tables = new Map<RopeSpec, { cos: tf.Tensor2D; sin: tf.Tensor2D }>();
    return (layer) => {
      const { slidingWindow, rope } = this.attention[layer]!;
      let mask = masks.get(slidingWindow);
      if (mask === undefined) {
        mask = attentionMaskBias(seq, slidingWindow, offset);
        masks.set(slidingWindow, mask);
      }
      if (rope === undefined) return { mask, rope: undefined };
      let table = tables.get(rope);
      if (table === undefined) {
        table = rotaryTables(this.inverseFrequencies.get(rope)!, seq, 1, offset);
        tables.set(rope, table);
      }
      return { mask, rope: table };
    };
  }

  /** Frees the weights; the model cannot run afterwards. Idempotent. */
  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    tf.dispose(this.tensors);
  }

  protected assertLive(): void {
    if (this.disposed)
      throw new RelpError(ErrorCodes.BadInput, `this ${this.architecture} model has been disposed`);
  }
}
