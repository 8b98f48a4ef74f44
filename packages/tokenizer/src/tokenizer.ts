import { Tokenizer as HfTokenizer } from '@huggingface/tokenizers';
import { badInput, ErrorCodes, RelpError } from '@relp/core/errors';
import {
  byteFallbackValue,
  byteLevelTokenBytes,
  bytesEqual,
  byteToUtf16Spans,
  concatBytes,
  utf8,
} from './bytes.js';
import { formatTokenBytes, type LabelOptions } from './display.js';
import type { AddedTokenJson, TokenizerJson } from './types.js';

/** How token strings spell text, which decides how a token's bytes are recovered. */
export type TokenSpelling =
  /** GPT-2's byte-level alphabet ('Ġ' = space). */
  | 'byte-level'
  /** SentencePiece: '▁' = space, <0xNN> byte-fallback tokens. */
  | 'sentencepiece'
  /** Token strings are the text itself. */
  | 'plain';

export interface TokenizerOptions {
  /** Beginning-of-sequence token (its text or id); guessed from the special tokens when absent. */
  bos?: string | number;
  /** End-of-sequence token (its text or id); guessed from the special tokens when absent. */
  eos?: string | number;
  /** Padding token (its text or id). */
  pad?: string | number;
}

export interface EncodeOptions {
  /** Add the special tokens the post-processor adds (BOS for Llama-style tokenizers). Default false. */
  addSpecialTokens?: boolean;
}

export interface DecodeOptions {
  /** Leave special tokens (<|endoftext|>, <bos>, …) out of the text. Default false. */
  skipSpecialTokens?: boolean;
}

export interface EncodedText {
  ids: number[];
  /** The token strings, as the vocabulary spells them ('ĠMary', '▁Mary'). */
  tokens: string[];
  /**
   * [start, end) of each token in `text`, in UTF-16 code units (JavaScript string indices). A token that
   * holds part of a character (one byte of an emoji) spans the whole character; a token that adds text
   * (the prefix space of Llama tokenizers) has an empty span.
   */
  offsets: Array<[number, number]>;
  /**
   * The string the offsets index into: the input itself, unless the tokenizer changed it (its
   * normalizer, NFC for GPT-NeoX, rewrote characters; an unknown token lost some), in which case it is
   * the text the tokens spell.
   */
  text: string;
}

interface DecoderJson {
  type?: string;
  decoders?: DecoderJson[];
  pattern?: { String?: string };
}

function detectSpelling(json: TokenizerJson): TokenSpelling {
  const types = new Set<string>();
  const visit = (d: DecoderJson | null | undefined): void => {
    if (!d) return;
    if (d.type) types.add(d.type);
    if (d.type === 'Replace' && d.pattern?.String === '\u2581') types.add('ReplaceMetaspace');
    d.decoders?.forEach(visit);
  };
  visit(json.decoder as DecoderJson | null);
  if (types.has('ByteLevel')) return 'byte-level';
  if (types.has('Metaspace') || types.has('ByteFallback') || types.has('ReplaceMetaspace'))
    return 'sentencepiece';
  return 'plain';
}

const BOS_GUESSES = ['<|begin_of_text|>', '<bos>', '<s>', '<|endoftext|>', '<|im_start|>'];
const EOS_GUESSES = ['<|end_of_text|>', '<|endoftext|>', '<eos>', '</s>', '<|im_end|>'];

function isTokenizerJson(json: unknown): json is TokenizerJson {
  if (typeof json !== 'object' || json === null) return false;
  const model = (json as { model?: unknown }).model;
  return typeof model === 'object' && model !== null && 'vocab' in model;
}

/**
 * A tokenizer built from a parsed tokenizer.json, over @huggingface/tokenizers. Encoding adds no special
 * tokens unless asked; ids, not strings, are what every method trades in.
 */
export class Tokenizer {
  /** How many ids the tokenizer knows: one more than the largest id in the vocabulary or added tokens. */
  readonly vocabSize: number;
  readonly bosId: number | undefined;
  readonly eosId: number | undefined;
  readonly padId: number | undefined;
  readonly unkId: number | undefined;
  readonly spelling: TokenSpelling;
  /** Ids of the special added tokens (<|endoftext|>, <bos>, control tokens of a GGUF vocabulary). */
  readonly specialIds: ReadonlySet<number>;

  private readonly hf: HfTokenizer;
  private readonly idToTok: Array<string | undefined>;
  private readonly tokToId: Map<string, number>;
  private readonly addedIds: ReadonlySet<number>;
  private readonly normalizes: boolean;
  private readonly bytesCache = new Map<number, Uint8Array>();

  private constructor(
    readonly json: TokenizerJson,
    options: TokenizerOptions,
  ) {
    try {
      this.hf = new HfTokenizer(json, { clean_up_tokenization_spaces: false });
    } catch (e) {
      throw new RelpError(
        ErrorCodes.BadModelFile,
        `cannot build a tokenizer from this tokenizer.json: ${String(e)}`,
        {
          cause: e,
        },
      );
    }
    this.spelling = detectSpelling(json);
    this.normalizes = json.normalizer !== null && json.normalizer !== undefined;

    const vocab = json.model.vocab;
    this.tokToId = new Map();
    this.idToTok = [];
    const entries: Array<[string, number]> = Array.isArray(vocab)
      ? (vocab as Array<[string, number]>).map(([t], i) => [t, i]) // Unigram: [piece, score] pairs
      : Object.entries(vocab as Record<string, number>);
    for (const [t, id] of entries) {
      this.tokToId.set(t, id);
      this.idToTok[id] = t;
    }
    const special = new Set<number>();
    const added = new Set<number>();
    for (const a of json.added_tokens ?? ([] as AddedTokenJson[])) {
      this.tokToId.set(a.content, a.id);
      this.idToTok[a.id] = a.content;
      added.add(a.id);
      if (a.special) special.add(a.id);
    }
    this.specialIds = special;
    this.addedIds = added;
    this.vocabSize = this.idToTok.length;

    const resolve = (t: string | number | undefined, guesses: string[]): number | undefined => {
      if (typeof t === 'number') return t;
      if (typeof t === 'string') return this.tokToId.get(t);
      for (const g of guesses) {
        const id = this.tokToId.get(g);
        if (id !== undefined && special.has(id)) return id;
      }
      return undefined;
    };
    this.bosId = resolve(options.bos, BOS_GUESSES);
    this.eosId = resolve(options.eos, EOS_GUESSES);
    this.padId = resolve(options.pad, ['<pad>', '<|padding|>', '[PAD]']);
    const unk = (json.model as { unk_token?: string | null }).unk_token;
    this.unkId = typeof unk === 'string' ? this.tokToId.get(unk) : undefined;
  }

  /** Builds a tokenizer from a parsed tokenizer.json (throws BAD_MODEL_FILE when it is not one). */
  static fromTokenizerJson(json: unknown, options: TokenizerOptions = {}): Tokenizer {
    if (!isTokenizerJson(json)) {
      throw new RelpError(
        ErrorCodes.BadModelFile,
        'not a tokenizer.json: expected an object with model.vocab',
      );
    }
    return new Tokenizer(json, options);
  }

  /** The token ids of `text` (no special tokens added unless asked). */
  encode(text: string, options: EncodeOptions = {}): number[] {
    const ids: number[] = this.hf.encode(text, { add_special_tokens: options.addSpecialTokens ?? false }).ids;
    return ids;
  }

  /** Ids, token strings and where each token lies in the text. */
  encodeWithOffsets(text: string, options: EncodeOptions = {}): EncodedText {
    const enc = this.hf.encode(text, { add_special_tokens: options.addSpecialTokens ?? false });
    const ids: number[] = enc.ids;
    const parts = ids.map((id) => this.tokenBytes(id));
    const all = concatBytes(parts);
    // Which string do the tokens spell? The text; or, for tokenizers that prepend a space, ' ' + text;
    // or the text as the normalizer left it.
    const candidates: Array<{ s: string; skip: number }> = [
      { s: text, skip: 0 },
      { s: ` ${text}`, skip: 1 },
    ];
    if (this.normalizes) {
      const nfc = text.normalize('NFC');
      if (nfc !== text) candidates.push({ s: nfc, skip: 0 }, { s: ` ${nfc}`, skip: 1 });
    }
    let target = candidates.find((c) => bytesEqual(utf8(c.s), all));
    if (target === undefined) target = { s: new TextDecoder().decode(all), skip: 0 };
    const spans = byteToUtf16Spans(target.s);
    const offsets: Array<[number, number]> = [];
    let b = 0;
    for (const p of parts) {
      const lo = b;
      const hi = b + p.length;
      b = hi;
      const start = spans.start[lo]!;
      const end = p.length === 0 ? start : spans.end[hi - 1]!;
      offsets.push([Math.max(0, start - target.skip), Math.max(0, end - target.skip)]);
    }
    const outText = target.skip === 1 ? target.s.slice(1) : target.s;
    return { ids, tokens: ids.map((id) => this.idToToken(id)), offsets, text: outText };
  }

  /** The text of a sequence of ids (an empty sequence is the empty string). */
  decode(ids: readonly number[], options: DecodeOptions = {}): string {
    if (ids.length === 0) return '';
    for (const id of ids) this.checkId(id);
    return this.hf.decode([...ids], {
      skip_special_tokens: options.skipSpecialTokens ?? false,
      clean_up_tokenization_spaces: false,
    });
  }

  /** The token string of an id, as the vocabulary spells it (throws BAD_TOKENS for an unknown id). */
  idToToken(id: number): string {
    this.checkId(id);
    return this.idToTok[id]!;
  }

  /** The id of a token string as the vocabulary spells it ('ĠMary', not ' Mary'), or undefined. */
  tokenToId(token: string): number | undefined {
    return this.tokToId.get(token);
  }

  /** True when the id is in the vocabulary. */
  hasId(id: number): boolean {
    return Number.isInteger(id) && id >= 0 && id < this.vocabSize && this.idToTok[id] !== undefined;
  }

  /**
   * The id of `text` when it is exactly one token, as an answer for logit-difference metrics (" Mary").
   * Throws BAD_INPUT otherwise, naming the tokens it splits into.
   */
  singleTokenId(text: string): number {
    const ids = this.encode(text);
    if (ids.length === 1) return ids[0]!;
    const shown = ids.map((id) => JSON.stringify(this.tokenLabel(id, { space: ' ' }))).join(', ');
    let hint = '';
    if (ids.length > 1 && !text.startsWith(' ') && this.encode(` ${text}`).length === 1) {
      hint = ` (" ${text}", with a leading space, is one token)`;
    }
    const what = ids.length === 0 ? 'no tokens' : `${ids.length} tokens [${shown}]`;
    throw badInput(`${JSON.stringify(text)} is ${what}, not exactly one token${hint}`, {
      text,
      ids,
    });
  }

  /** The bytes a token stands for (a byte-level or SentencePiece spelling undone; special tokens: their text). */
  tokenBytes(id: number): Uint8Array {
    const cached = this.bytesCache.get(id);
    if (cached) return cached;
    const tok = this.idToToken(id);
    let bytes: Uint8Array | undefined;
    if (this.addedIds.has(id)) bytes = utf8(tok);
    else if (this.spelling === 'byte-level') bytes = byteLevelTokenBytes(tok) ?? utf8(tok);
    else if (this.spelling === 'sentencepiece') {
      const b = byteFallbackValue(tok);
      bytes = b === undefined ? utf8(tok.replaceAll('\u2581', ' ')) : Uint8Array.of(b);
    } else bytes = utf8(tok);
    this.bytesCache.set(id, bytes);
    return bytes;
  }

  /** A display label for one token: its text with spaces as '·', escapes for \n, \t and partial bytes. */
  tokenLabel(id: number, options: LabelOptions = {}): string {
    if (this.specialIds.has(id)) return this.idToToken(id);
    return formatTokenBytes(this.tokenBytes(id), options);
  }

  /** Display labels for a sequence of ids. */
  tokenLabels(ids: readonly number[], options: LabelOptions = {}): string[] {
    return ids.map((id) => this.tokenLabel(id, options));
  }

  private checkId(id: number): void {
    if (!this.hasId(id)) {
      throw new RelpError(
        ErrorCodes.BadTokens,
        `token id ${id} is not in the vocabulary (size ${this.vocabSize})`,
        {
          details: { id, vocabSize: this.vocabSize },
        },
      );
    }
  }
}
