import type { WeightMap } from './weights.js';

/**
 * What a checkpoint's tensor names say without reading any tensor: block indices, the layer count, and which
 * tensors a model left unused (reported as warnings, as transformers does). No tfjs, so the loader can use it.
 */

/** The block index in an HF (`…layers.3.…`, GPT-2's `h.3.`) or GGUF (`blk.3.`) tensor name. */
export function layerIndexOf(name: string): number | undefined {
  const m = /(?:^|\.)(?:layers|h|blk)\.(\d+)\./.exec(name);
  return m === null ? undefined : Number(m[1]);
}

/** 1 + the largest block index among the checkpoint's tensor names (0 when none names a block). */
export function checkpointLayerCount(weights: WeightMap): number {
  let count = 0;
  for (const n of weights.names()) {
    const l = layerIndexOf(n);
    if (l !== undefined && l + 1 > count) count = l + 1;
  }
  return count;
}

/**
 * Tensors checkpoints carry that no model reads, as transformers ignores them on load: buffers older transformers
 * versions saved with the weights (GPT-2's and GPT-NeoX's causal masks, rotary inverse frequencies), llama.cpp's
 * precomputed rope_freqs, an lm_head saved next to the embedding it is tied to, and the vision parts of multimodal
 * checkpoints whose text model is loaded.
 */
export const IGNORED_UNUSED_WEIGHTS: readonly RegExp[] = [
  /^(?:language_model\.)?lm_head\.weight$/,
  /\.attn\.(?:masked_)?bias$/,
  /\.attention\.(?:masked_)?bias$/,
  /\.rotary_emb\.inv_freq$/,
  /^rope_freqs\.weight$/,
  /(?:^|\.)(?:vision_tower|vision_model|multi_modal_projector)\./,
];

/**
 * A view of `weights` that records which tensors were read (`get`, or `shape` where the map has it), and the names of those that were not: for
 * reporting tensors a model leaves unused, as transformers does.
 */
export function trackWeightReads(weights: WeightMap): { weights: WeightMap; unread(): string[] } {
  const read = new Set<string>();
  return {
    weights: {
      get(name) {
        const t = weights.get(name);
        if (t !== undefined) read.add(name);
        return t;
      },
      names: () => weights.names(),
      ...(weights.shape === undefined
        ? {}
        : {
            shape(name: string) {
              const shape = weights.shape!(name);
              if (shape !== undefined) read.add(name);
              return shape;
            },
          }),
    },
    unread: () => [...weights.names()].filter((n) => !read.has(n)),
  };
}

/**
 * Warnings for tensors a model did not use (those matching `IGNORED_UNUSED_WEIGHTS` aside): blocks beyond the
 * model's `nLayers` (the config declares fewer layers than the checkpoint holds), and any other unused tensors,
 * a few named with the count.
 */
export function unusedWeightWarnings(unread: readonly string[], nLayers: number): string[] {
  const unused = unread.filter((n) => !IGNORED_UNUSED_WEIGHTS.some((re) => re.test(n)));
  const warnings: string[] = [];
  let extraLayers = 0;
  const others: string[] = [];
  for (const n of unused) {
    const l = layerIndexOf(n);
    if (l !== undefined && l >= nLayers) extraLayers = Math.max(extraLayers, l + 1);
    else others.push(n);
  }
  if (extraLayers > 0) {
    const which =
      extraLayers - nLayers === 1 ? `layer ${nLayers} is` : `layers ${nLayers}–${extraLayers - 1} are`;
    warnings.push(
      `the checkpoint has weights for ${extraLayers} layers but the config declares ${nLayers}: ${which} not used`,
    );
  }
  if (others.length > 0) {
    const shown = others.slice(0, 5).map((n) => `'${n}'`);
    const more = others.length > shown.length ? ` and ${others.length - shown.length} more` : '';
    warnings.push(
      `${others.length} tensor${others.length === 1 ? '' : 's'} in the checkpoint ${others.length === 1 ? 'is' : 'are'} not used by the model: ${shown.join(', ')}${more}`,
    );
  }
  return warnings;
}
