/** The Node side of the end-to-end test: the same model, pairs and methods through the library, on tfjs WASM. */
import '@tensorflow/tfjs-backend-wasm';
import { type AttributionResult, attribute, compareGrids, makePairBatch, type SiteName } from '@relp/core';
import { loadModel } from '@relp/loader';
import { nodeFs } from '@relp/loader/node';
import { presetByName } from '@relp/lrp-rules';
import { gpt2Family } from '@relp/models-gpt2';
import { buildTask, checkPairs } from '@relp/tasks';
import { Tokenizer } from '@relp/tokenizer';
import * as tf from '@tensorflow/tfjs-core';

export async function nodeReference(
  folder: string,
  task: string,
  sites: readonly SiteName[],
): Promise<{ results: Record<string, AttributionResult>; pearson: Record<string, Record<string, number>> }> {
  await tf.setBackend('wasm');
  await tf.ready();
  const loaded = await loadModel<Tokenizer>(folder, {
    fs: nodeFs,
    families: [gpt2Family],
    loadTokenizer: (json) => Tokenizer.fromTokenizerJson(json),
  });
  const tokenizer = loaded.tokenizer!;
  const checked = checkPairs(buildTask(task), tokenizer, {
    prependBos: tokenizer.bosId !== undefined,
    contextLength: loaded.model.dims.contextLength,
    vocabSize: loaded.model.dims.vocabSize,
  });
  const batch = makePairBatch(checked.pairs, { dims: loaded.model.dims });
  const results: Record<string, AttributionResult> = {};
  try {
    results['activation-patching'] = await attribute(loaded.model, batch, {
      method: 'activation-patching',
      sites,
      normalize: true,
    });
    results.atp = await attribute(loaded.model, batch, { method: 'atp', sites, normalize: true });
    results.relp = await attribute(loaded.model, batch, {
      method: 'atp',
      rules: presetByName('relp'),
      label: 'relp',
      sites,
      normalize: true,
    });
  } finally {
    loaded.model.dispose();
  }
  const pearson: Record<string, Record<string, number>> = {};
  for (const m of ['atp', 'relp']) {
    pearson[m] = {};
    for (const s of sites) {
      pearson[m][s] = compareGrids(
        results[m]!.scores[s]!,
        results['activation-patching']!.scores[s]!,
      ).pearson;
    }
  }
  return { results, pearson };
}
