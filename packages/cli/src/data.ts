import { resolve } from 'node:path';
import type { LanguageModel, TokenPair } from '@relp/core';
import { badInput, ErrorCodes, isRelpError, RelpError } from '@relp/core/errors';
import { readRegularText } from '@relp/core/node-files';
import {
  buildTask,
  type CheckedPairs,
  checkPairs,
  describeDropped,
  type PairRecord,
  parsePairsJsonl,
  type TextTokenizer,
  tokenLabels,
} from '@relp/tasks';

export interface DataOptions {
  readonly data?: string;
  readonly task?: string;
  readonly n?: number;
  readonly seed?: number;
  readonly corruption?: string;
  readonly order?: string;
  /** Prepend the tokenizer's BOS token to text prompts (default: when the tokenizer has one). */
  readonly bos?: boolean;
}

export interface ResolvedData {
  readonly pairs: TokenPair[];
  readonly checked: CheckedPairs;
  /** Token strings of the first clean prompt. */
  readonly labels: string[];
  /** For provenance: where the pairs came from. */
  readonly description: Readonly<Record<string, unknown>>;
  /** A line about dropped pairs, or ''. */
  readonly droppedNote: string;
}

/** The largest --data file read: a pairs file of 100,000 pairs is about 20 MiB. */
const MAX_DATA_BYTES = 256 * 2 ** 20;

/** Whether text prompts get the tokenizer's BOS token: --bos / --no-bos, else when the tokenizer has one. */
export function prependsBos(o: DataOptions, tokenizer: TextTokenizer | undefined, hasText: boolean): boolean {
  return (o.bos ?? tokenizer?.bosId !== undefined) && hasText;
}

/** Reads --data or builds --task, then checks the pairs against the model's tokenizer and context. */
export async function resolveData(
  o: DataOptions,
  model: LanguageModel,
  tokenizer: TextTokenizer | undefined,
  cwd: string,
): Promise<ResolvedData> {
  if (o.data !== undefined && o.task !== undefined) throw badInput('give either --data or --task, not both');
  if (o.data === undefined && o.task === undefined) {
    throw badInput('no data: pass --data <pairs.jsonl> or --task <name> (see `relp tasks`)');
  }
  let input: readonly PairRecord[] | ReturnType<typeof buildTask>;
  let description: Record<string, unknown>;
  if (o.data !== undefined) {
    const path = resolve(cwd, o.data);
    let text: string;
    try {
      text = await readRegularText(path, { what: '--data', maxBytes: MAX_DATA_BYTES });
    } catch (e) {
      if (isRelpError(e)) throw e; // not a regular file, too large, not UTF-8
      throw new RelpError(ErrorCodes.BadInput, `cannot read --data ${o.data}: ${(e as Error).message}`, {
        cause: e,
      });
    }
    input = parsePairsJsonl(text, o.data);
    description = { kind: 'file', path: o.data, lines: input.length };
  } else {
    input = buildTask(o.task!, {
      ...(o.n === undefined ? {} : { n: o.n }),
      ...(o.seed === undefined ? {} : { seed: o.seed }),
      ...(o.corruption === undefined ? {} : { corruption: o.corruption }),
      ...(o.order === undefined ? {} : { order: o.order }),
    });
    description = {
      kind: 'task',
      task: o.task,
      n: input.length,
      seed: o.seed ?? 0,
      ...(o.corruption === undefined ? {} : { corruption: o.corruption }),
      ...(o.order === undefined ? {} : { order: o.order }),
    };
  }
  const hasText = input.some((x) => !('kind' in x) || x.kind === 'text');
  const prependBos = prependsBos(o, tokenizer, hasText);
  const checked = checkPairs(input, tokenizer, {
    prependBos,
    contextLength: model.dims.contextLength,
    vocabSize: model.dims.vocabSize,
    what: o.data ?? `task ${o.task}`,
  });
  const pairs = checked.pairs.map((p) => ({
    clean: p.clean,
    corrupt: p.corrupt,
    answer: p.answer,
    wrong: p.wrong,
  }));
  description = {
    ...description,
    used: pairs.length,
    dropped: checked.dropped.length,
    bos: prependBos,
  };
  return {
    pairs,
    checked,
    labels: tokenLabels(pairs[0]!.clean, tokenizer),
    description,
    droppedNote: describeDropped(checked),
  };
}
