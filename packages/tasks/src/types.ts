/** One clean/corrupt prompt pair as text, with the metric's answer and wrong continuations. */
export interface TextPair {
  readonly clean: string;
  readonly corrupt: string;
  /** The continuation the metric rewards (one token, usually with a leading space: " Mary"). */
  readonly answer: string;
  /** The continuation it penalises (one token). */
  readonly wrong: string;
  /** Free-form facts about how the pair was made (template, names, …), kept in reports. */
  readonly meta?: Readonly<Record<string, string | number | boolean>>;
}

/**
 * A pair as token ids, structurally the same as @relp/core's TokenPair (this package does not depend on
 * tfjs, so it does not import core's index), plus the record of where it came from.
 */
export interface IdPair {
  readonly clean: readonly number[];
  readonly corrupt: readonly number[];
  readonly answer: number;
  readonly wrong: number;
  readonly source?: TextPair;
}

/**
 * What the tasks need from a tokenizer: text to ids without special tokens, ids back to text (for labels),
 * and the beginning-of-sequence id if the model's convention prepends one (GPT-2 as in TransformerLens).
 */
export interface TextTokenizer {
  encode(text: string): number[];
  decode(ids: readonly number[]): string;
  readonly bosId?: number | undefined;
  /** A name for provenance records, e.g. "gpt2". */
  readonly name?: string;
}

/** A seeded pseudo-random number generator in [0, 1). */
export type Rng = () => number;
