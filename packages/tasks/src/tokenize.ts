import { badInput } from '@relp/core/errors';
import type { PairRecord } from './jsonl.js';
import type { IdPair, TextPair, TextTokenizer } from './types.js';

export type DropReason =
  | 'length-mismatch'
  | 'answer-not-one-token'
  | 'wrong-not-one-token'
  | 'answer-equals-wrong'
  | 'identical'
  | 'too-long'
  | 'empty'
  | 'tokenizer-error';

export interface DroppedPair {
  readonly index: number;
  /** Line in pairs.jsonl, when the pair came from a file. */
  readonly line?: number;
  readonly reason: DropReason;
  readonly detail: string;
}

export interface CheckedPairs {
  readonly pairs: IdPair[];
  readonly dropped: DroppedPair[];
  /** Count per reason, for the "dropped N pairs" message. */
  readonly droppedByReason: Partial<Record<DropReason, number>>;
}

export interface CheckOptions {
  /** Prepend the tokenizer's BOS id to clean and corrupt (GPT-2 under TransformerLens conventions). */
  readonly prependBos?: boolean;
  /** The model's context length: longer prompts are dropped. */
  readonly contextLength?: number;
  /** The model's vocabulary size, for id pairs. */
  readonly vocabSize?: number;
  /** Name of the data set in messages. */
  readonly what?: string;
  /** Return no pairs instead of BAD_INPUT when every pair is dropped (one batch of a larger data set). */
  readonly allowNone?: boolean;
}

type Candidate = { readonly index: number; readonly line?: number } & (
  | { readonly kind: 'text'; readonly pair: TextPair }
  | { readonly kind: 'ids'; readonly pair: IdPair }
);

const REASON_TEXT: Record<DropReason, string> = {
  'length-mismatch': 'clean and corrupt tokenise to different lengths',
  'answer-not-one-token': 'the answer is not exactly one token',
  'wrong-not-one-token': 'the wrong token is not exactly one token',
  'answer-equals-wrong': 'answer and wrong are the same token',
  identical: 'clean and corrupt are identical',
  'too-long': "the prompt is longer than the model's context",
  empty: 'the prompt is empty',
  'tokenizer-error': 'the tokenizer could not encode the text',
};

/**
 * Tokenises pairs and keeps those a patching experiment can use: equal clean/corrupt lengths, single-token
 * answer and wrong (different from each other), clean ≠ corrupt, within the context. Failing pairs are dropped
 * with a reason; when none remain, a BAD_INPUT RelpError says why, by reason.
 */
export function checkPairs(
  input: readonly TextPair[] | readonly PairRecord[],
  tokenizer: TextTokenizer | undefined,
  options: CheckOptions = {},
): CheckedPairs {
  const what = options.what ?? 'the data set';
  if (input.length === 0 && !options.allowNone) throw badInput(`${what} has no pairs`);
  const candidates: Candidate[] = input.map((x, index) =>
    'kind' in x ? { ...x, index } : { kind: 'text' as const, pair: x, index },
  );
  const bos = options.prependBos ? tokenizer?.bosId : undefined;
  if (options.prependBos && bos === undefined) {
    throw badInput('prepending a BOS token was asked for, but the tokenizer has no BOS id');
  }
  const pairs: IdPair[] = [];
  const dropped: DroppedPair[] = [];
  const drop = (c: Candidate, reason: DropReason, detail: string): void => {
    dropped.push({ index: c.index, ...(c.line === undefined ? {} : { line: c.line }), reason, detail });
  };
  for (const c of candidates) {
    let ids: IdPair;
    if (c.kind === 'text') {
      if (!tokenizer) throw badInput(`${what} has text pairs, but no tokenizer is available for this model`);
      const p = c.pair;
      const pre = bos === undefined ? [] : [bos];
      let clean: number[];
      let corrupt: number[];
      let a: number[];
      let w: number[];
      try {
        clean = [...pre, ...tokenizer.encode(p.clean)];
        corrupt = [...pre, ...tokenizer.encode(p.corrupt)];
        a = tokenizer.encode(p.answer);
        w = tokenizer.encode(p.wrong);
      } catch (e) {
        drop(c, 'tokenizer-error', e instanceof Error ? e.message : String(e));
        continue;
      }
      const all = [...clean, ...corrupt, ...a, ...w];
      const bad = all.findIndex((t) => !Number.isSafeInteger(t) || t < 0);
      if (bad >= 0) {
        drop(
          c,
          'tokenizer-error',
          `the tokenizer returned an invalid id (${String(all[bad])}): unknown word?`,
        );
        continue;
      }
      if (a.length !== 1) {
        drop(c, 'answer-not-one-token', `answer ${JSON.stringify(p.answer)} is ${a.length} tokens`);
        continue;
      }
      if (w.length !== 1) {
        drop(c, 'wrong-not-one-token', `wrong ${JSON.stringify(p.wrong)} is ${w.length} tokens`);
        continue;
      }
      ids = { clean, corrupt, answer: a[0]!, wrong: w[0]!, source: p };
    } else {
      ids = c.pair;
    }
    if (ids.clean.length === 0 || ids.clean.length === (bos === undefined ? 0 : 1)) {
      drop(c, 'empty', 'the clean prompt has no tokens');
      continue;
    }
    if (ids.clean.length !== ids.corrupt.length) {
      drop(c, 'length-mismatch', `${ids.clean.length} vs ${ids.corrupt.length} tokens`);
      continue;
    }
    if (ids.answer === ids.wrong) {
      drop(c, 'answer-equals-wrong', `both are token ${ids.answer}`);
      continue;
    }
    if (ids.clean.every((t, j) => t === ids.corrupt[j])) {
      drop(c, 'identical', 'no token differs');
      continue;
    }
    if (options.contextLength !== undefined && ids.clean.length > options.contextLength) {
      drop(c, 'too-long', `${ids.clean.length} tokens > context ${options.contextLength}`);
      continue;
    }
    if (options.vocabSize !== undefined) {
      const bad = [...ids.clean, ...ids.corrupt, ids.answer, ids.wrong].find((t) => t >= options.vocabSize!);
      if (bad !== undefined) {
        throw badInput(
          `${c.line === undefined ? `pair ${c.index}` : `line ${c.line}`}: token id ${bad} is outside the model's vocabulary of ${options.vocabSize}`,
          c.line === undefined ? { pair: c.index } : { line: c.line },
        );
      }
    }
    pairs.push(ids);
  }
  const droppedByReason: Partial<Record<DropReason, number>> = {};
  for (const d of dropped) droppedByReason[d.reason] = (droppedByReason[d.reason] ?? 0) + 1;
  if (pairs.length === 0 && !options.allowNone) {
    const why = Object.entries(droppedByReason)
      .map(([r, k]) => `${k} × ${REASON_TEXT[r as DropReason]}`)
      .join('; ');
    const first = dropped[0];
    const where = first?.line === undefined ? '' : ` (first at line ${first.line}: ${first.detail})`;
    throw badInput(`no usable pairs remain in ${what}: ${why}${where}`, {
      dropped: dropped.length,
      ...(first?.line === undefined ? {} : { line: first.line }),
    });
  }
  return { pairs, dropped, droppedByReason };
}

/** One line summarising what was dropped, or '' if nothing was. */
export function describeDropped(checked: CheckedPairs): string {
  if (checked.dropped.length === 0) return '';
  const parts = Object.entries(checked.droppedByReason).map(
    ([r, k]) => `${k} ${REASON_TEXT[r as DropReason]}`,
  );
  return `dropped ${checked.dropped.length} of ${checked.dropped.length + checked.pairs.length} pairs: ${parts.join('; ')}`;
}

/** Token labels for plots ("When", " John", …), position by position, from one prompt. */
export function tokenLabels(ids: readonly number[], tokenizer: TextTokenizer | undefined): string[] {
  return ids.map((id, i) => (tokenizer ? tokenizer.decode([id]) : `#${id}`) || `[${i}]`);
}
