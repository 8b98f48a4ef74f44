/**
 * The Node side of the end-to-end tests: the same model file(s), pairs and methods through the library (loader,
 * tokenizer, tasks, core), on tfjs WASM.
 */
import '@tensorflow/tfjs-backend-wasm';
import { type AttributionResult, attribute, compareGrids, makePairBatch, type SiteName } from '@relp/core';
import { loadModel } from '@relp/loader';
import { nodeFs } from '@relp/loader/node';
import { presetByName } from '@relp/lrp-rules';
import { gpt2Family } from '@relp/models-gpt2';
import { llamaFamily } from '@relp/models-llama';
import { buildTask, checkPairs, type TextPair, tokenLabels } from '@relp/tasks';
import { Tokenizer, tokenizerFromGgufMetadata } from '@relp/tokenizer';
import * as tf from '@tensorflow/tfjs-core';

export interface NodeReference {
  results: Record<string, AttributionResult>;
  pearson: Record<string, Record<string, number>>;
  /** Token labels of the first clean prompt (as the heatmaps show them). */
  tokens: string[];
  dims: { nLayers: number; dModel: number; vocabSize: number };
}

/**
 * Runs activation patching, AtP and RelP (whichever `methods` names) on a model folder or GGUF file, with a task
 * of @relp/tasks or literal text pairs, and the Pearson correlation of each estimate with activation patching.
 */
export async function nodeReference(
  ref: string,
  data: { task: string } | { pairs: TextPair[] },
  sites: readonly SiteName[],
  methods: readonly string[] = ['activation-patching', 'atp', 'relp'],
): Promise<NodeReference> {
  await tf.setBackend('wasm');
  await tf.ready();
  const loaded = await loadModel<Tokenizer>(ref, {
    fs: nodeFs,
    families: [gpt2Family, llamaFamily],
    loadTokenizer: (json) => Tokenizer.fromTokenizerJson(json),
    loadGgufTokenizer: (meta) => tokenizerFromGgufMetadata(meta.raw as Record<string, unknown>),
  });
  const tokenizer = loaded.tokenizer!;
  const checked = checkPairs('task' in data ? buildTask(data.task) : data.pairs, tokenizer, {
    prependBos: tokenizer.bosId !== undefined,
    contextLength: loaded.model.dims.contextLength,
    vocabSize: loaded.model.dims.vocabSize,
  });
  const batch = makePairBatch(checked.pairs, { dims: loaded.model.dims });
  const results: Record<string, AttributionResult> = {};
  const { nLayers, dModel, vocabSize } = loaded.model.dims;
  try {
    for (const m of methods) {
      results[m] =
        m === 'relp'
          ? await attribute(loaded.model, batch, {
              method: 'atp',
              rules: presetByName('relp'),
              label: 'relp',
              sites,
              normalize: true,
            })
          : await attribute(loaded.model, batch, {
              method: m as 'activation-patching' | 'atp',
              sites,
              normalize: true,
            });
    }
  } finally {
    loaded.model.dispose();
  }
  const pearson: Record<string, Record<string, number>> = {};
  const ap = results['activation-patching'];
  for (const m of ap ? methods.filter((x) => x !== 'activation-patching') : []) {
    pearson[m] = {};
    for (const s of sites) pearson[m][s] = compareGrids(results[m]!.scores[s]!, ap!.scores[s]!).pearson;
  }
  return {
    results,
    pearson,
    tokens: tokenLabels(checked.pairs[0]!.clean, tokenizer),
    dims: { nLayers, dModel, vocabSize },
  };
}
