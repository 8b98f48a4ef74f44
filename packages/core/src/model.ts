import * as tf from '@tensorflow/tfjs-core';
import type { RunContext } from './context.js';
import { ErrorCodes, RelpError } from './errors.js';
import type { SiteName } from './sites.js';
import type { Nonlinearity } from './slots.js';

/** The shape facts every attribution method needs, whatever the family. */
export interface ModelDims {
  readonly nLayers: number;
  readonly dModel: number;
  readonly nHeads: number;
  /** Key/value heads (grouped-query attention); equals nHeads otherwise. */
  readonly nKvHeads: number;
  readonly dHead: number;
  readonly dMlp: number;
  readonly vocabSize: number;
  /** Longest sequence the model accepts. */
  readonly contextLength: number;
}

/**
 * Keys and values of the positions before a run's first position, per layer: what a full run's sites `k.l` and
 * `v.l` record at positions 0..length−1 (after rotary embeddings and any key norm; key/value heads only under
 * grouped-query attention). Because attention is causal, the residual at positions ≥ length depends on the
 * earlier positions only through these, so a run given them and the residual at positions ≥ length computes
 * exactly what a full run computes there (up to float rounding: the matmul shapes differ).
 */
export interface KvPrefix {
  /** Number of cached positions; the run's first position is this absolute position. */
  readonly length: number;
  /** keys[l] [B, length, nKvHeads, dHead] for every block l ≥ the start layer (earlier entries are ignored). */
  readonly keys: readonly (tf.Tensor4D | undefined)[];
  /** values[l], as keys. */
  readonly values: readonly (tf.Tensor4D | undefined)[];
}

/**
 * Where a forward pass starts. `tokens`: from token ids [B,T] (int32). `resid`: from the residual stream
 * entering block `layer` (block 0: the embeddings), e.g. to interpolate embeddings for integrated gradients or
 * to recompute only the blocks a patch can change.
 *
 * With `prefix`, `resid` [B,T',d] is the residual at the absolute positions prefix.length … prefix.length+T'−1
 * only, and attention also reads the prefix's keys and values (rotary embeddings and sliding windows use the
 * absolute positions). Semantics of such a *prefix run*: every site sees only the run's own positions (its
 * position axis has T' entries, index i being absolute position prefix.length + i; `k`/`v` sites hold the new
 * positions' keys/values, before the prefix is prepended; `pattern` is [B,H,T',prefix.length+T'] with absolute
 * key positions); `readout` positions are absolute and must lie in [prefix.length, prefix.length+T'); logits
 * without a readout are [B,T',V] for the run's positions. Gradients flow as in any run (into resid and the
 * prefix tensors). The LRP rule slots are called as in a full run.
 *
 * With `joins`, rows join the batch on the way (a *joined run*): before block j.layer runs, j.resid is
 * appended to the batch axis. Every block, its sites and a prefix's keys/values at that block have the rows
 * joined so far (prefix.keys[l] then has that many rows); `readout` gives one position per final row and the
 * logits have the final rows. A joined row computes what a run started at its join layer computes (every step of
 * a block acts on each row alone; attention within a row), so one pass can carry patches that start at different
 * blocks — fast activation patching's use — with the later blocks' weights read once for all of them.
 */
export type ModelInput =
  | { readonly tokens: tf.Tensor2D }
  | {
      readonly resid: tf.Tensor3D;
      readonly layer: number;
      readonly prefix?: KvPrefix;
      readonly joins?: readonly BatchJoin[];
    };

/** Rows that join a residual-stream run before a block (see ModelInput). */
export interface BatchJoin {
  /** The block before which the rows join: after the run's start layer, before nLayers; increasing. */
  readonly layer: number;
  /** The residual entering that block at the run's positions, [rows, T', d]. */
  readonly resid: tf.Tensor3D;
}

/** The number of positions before the run's first one (0 without a prefix). */
export function positionOffset(input: ModelInput): number {
  return 'resid' in input && input.prefix !== undefined ? input.prefix.length : 0;
}

export interface ForwardOptions {
  /**
   * Positions to read logits at, one per batch row: the model then applies the final norm and the unembedding
   * only there and returns logits [B,1,V]. Without it, logits are [B,T,V].
   */
  readonly readout?: readonly number[];
  /**
   * Vocabulary ids to compute logits for: the last axis of the logits then has vocab.length entries, entry i
   * being token vocab[i]'s logit (the unembedding multiplies by those rows only; element-wise steps after it,
   * such as Gemma's soft-capping, apply as before). For metrics that read a few tokens' logits (logit
   * difference), this skips most of the unembedding. Values equal the full logits' columns up to float
   * rounding (a matmul of another shape).
   */
  readonly vocab?: readonly number[];
}

/** Checks a `vocab` option (ids in [0, vocabSize), non-empty; BAD_INPUT) and returns it as an int32 tensor. */
export function vocabIds(vocab: readonly number[], vocabSize: number): tf.Tensor1D {
  if (vocab.length === 0 || vocab.some((t) => !Number.isInteger(t) || t < 0 || t >= vocabSize)) {
    throw new RelpError(ErrorCodes.BadInput, `vocab ids must be a non-empty list in [0, ${vocabSize})`);
  }
  return tf.tensor1d(vocab as number[], 'int32');
}

/** A transformer language model that runs under a RunContext. Models hold weights and nothing about runs. */
export interface LanguageModel {
  /** Family and size, e.g. "gpt2", "gpt_neox". */
  readonly architecture: string;
  readonly dims: ModelDims;
  /** The site names this model has (e.g. no resid_mid for parallel-residual blocks). */
  readonly sites: readonly SiteName[];
  /** The nonlinearities and gates it contains, checked against a rule set before a run. */
  readonly nonlinearities: readonly Nonlinearity[];
  /** The residual stream entering block 0 for these tokens (the site resid_pre.0 before hooks). */
  embed(tokens: tf.Tensor2D): tf.Tensor3D;
  /** Logits for the input; calls ctx.site at every site and ctx's slots for every rule slot. */
  forward(input: ModelInput, ctx: RunContext, options?: ForwardOptions): tf.Tensor3D;
  /** Frees the weights. */
  dispose(): void;
}

/** Reads a model family's config (config.json or GGUF metadata mapped to the same keys) and builds a model. */
export interface ModelFamily {
  /** Family name, e.g. "gpt2". */
  readonly name: string;
  /** HF `model_type` values this family loads (config.json's "model_type"). */
  readonly modelTypes: readonly string[];
  /** Builds a model from config.json contents and float32 weights named as in HF checkpoints. */
  fromHfConfig(
    config: Readonly<Record<string, unknown>>,
    weights: import('./weights.js').WeightMap,
  ): LanguageModel;
}
