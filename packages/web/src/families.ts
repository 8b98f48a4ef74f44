import { MODEL_FAMILIES } from '@relp/models';

/** The `model_type`s (config.json, or GGUF metadata mapped to it) of the families the web runtime loads. */
export function supportedModelTypes(): string[] {
  return MODEL_FAMILIES.flatMap((f) => [...f.modelTypes]);
}

/**
 * Of a list of GGUF architectures (`general.architecture`; the GGUF reader's supported list, or an error's
 * `details.supported`), those a family runs: a GGUF architecture maps to the config `model_type` of its name.
 */
export function runnableGgufArchitectures(architectures: readonly string[]): string[] {
  const types = new Set(supportedModelTypes());
  return architectures.filter((a) => types.has(a));
}
