// The real-model workload of `pnpm bench`: a cached GGUF checkpoint (SmolLM2-135M) on the 8 IOI prompts of the
// RelP reference demo (task `ioi-demo`), tokenised with the tokenizer stored in the same file, exactly as
// `relp demo` does (BOS prepended, right-padded with EOS). main.ts writes the token ids to a JSON file that the
// tfjs worker and the PyTorch script both read, so the two sides run on the same ids.
import { readFile } from 'node:fs/promises';
import { isModelAlias, resolveModelAlias } from '@relp/provision';
import { buildTask, checkPairs } from '@relp/tasks';
import { tokenizerFromGgufMetadata } from '@relp/tokenizer';
import { ggufTokenizerMetadata, parseGguf } from '@relp/weights';

/** Real models the bench knows: bench name → provision alias. */
export const REAL_MODELS: Readonly<Record<string, string>> = { smollm2: 'smollm2-135m' };

export function isRealModel(name: string): boolean {
  return name in REAL_MODELS;
}

/** What both sides read: the GGUF file and the token ids of every pair. */
export interface RealWorkload {
  readonly model: string;
  readonly alias: string;
  readonly gguf: string;
  readonly task: string;
  readonly bos: boolean;
  readonly padId: number;
  readonly pairs: { clean: number[]; corrupt: number[]; answer: number; wrong: number }[];
}

/**
 * Resolves the model's cached GGUF (no download: the bench never fetches) and tokenises the task. Returns a
 * string (why it is skipped) when the file is not cached.
 */
export async function prepareReal(model: string, task = 'ioi-demo'): Promise<RealWorkload | string> {
  const alias = REAL_MODELS[model];
  if (alias === undefined || !isModelAlias(alias)) return `unknown real model ${model}`;
  let gguf: string;
  try {
    gguf = await resolveModelAlias(alias, { env: { ...process.env }, download: false });
  } catch (e) {
    return `skipped: ${(e as Error).message}`;
  }
  const bytes = new Uint8Array(await readFile(gguf));
  const meta = ggufTokenizerMetadata(parseGguf(bytes));
  const tokenizer = tokenizerFromGgufMetadata(meta.raw as Record<string, unknown>);
  const bos = tokenizer.bosId !== undefined;
  const checked = checkPairs(buildTask(task), tokenizer, { prependBos: bos, what: `task ${task}` });
  if (checked.dropped.length > 0) {
    return `task ${task}: ${checked.dropped.length} pairs dropped by the tokenizer check`;
  }
  const eos = (tokenizer as { eosId?: number }).eosId;
  return {
    model,
    alias,
    gguf,
    task,
    bos,
    padId: eos ?? 0,
    pairs: checked.pairs.map((p) => ({
      clean: [...p.clean],
      corrupt: [...p.corrupt],
      answer: p.answer,
      wrong: p.wrong,
    })),
  };
}
