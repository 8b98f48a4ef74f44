import type { ModelFamily } from '@relp/core';
import { gemma3Family } from '@relp/models-gemma';
import { gpt2Family } from '@relp/models-gpt2';
import { llamaFamily } from '@relp/models-llama';
import { pythiaFamily } from '@relp/models-pythia';

/**
 * Every model family relp ships, each claiming its config.json `model_type`s: the one list the CLI and the web
 * package hand the loader. A new family is added here (docs/new-family.md).
 */
export const MODEL_FAMILIES: readonly ModelFamily[] = Object.freeze([
  gpt2Family,
  pythiaFamily,
  llamaFamily,
  gemma3Family,
]);
