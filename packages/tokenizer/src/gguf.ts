import { ErrorCodes, RelpError } from '@relp/core/errors';
import { isByteLevelSpelled, toByteLevel } from './bytes.js';
import { Tokenizer } from './tokenizer.js';
import type { AddedTokenJson, TokenizerJson } from './types.js';

/** llama.cpp's token types (tokenizer.ggml.token_type). */
const GgufTokenType = {
  Normal: 1,
  Unknown: 2,
  Control: 3,
  UserDefined: 4,
  Unused: 5,
  Byte: 6,
} as const;

/** GGUF pre-tokenizer names (tokenizer.ggml.pre) that split digits one by one before GPT-2's regex. */
const DIGIT_SPLIT_PRE = new Set([
  'smollm',
  'starcoder',
  'refact',
  'command-r',
  'codeshell',
  'exaone',
  'minerva',
]);
/** Names that mean plain GPT-2 pre-tokenization. */
const GPT2_PRE = new Set(['default', 'gpt2', 'gpt-2', 'mpt', 'olmo', 'jais']);
const LLAMA3_SPLIT =
  "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}" +
  '| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+';
/** Qwen2's split: Llama 3's, but digits one by one (`\p{N}`, not `\p{N}{1,3}`); its tokenizer.json also NFC-normalises. */
const QWEN2_SPLIT = LLAMA3_SPLIT.replace('\\p{N}{1,3}', '\\p{N}');
const QWEN2_PRE = new Set(['qwen2', 'deepseek-r1-qwen']);
const LLAMA3_PRE = new Set([
  'llama3',
  'llama-v3',
  'llama-bpe',
  'falcon3',
  'falcon-h1',
  'pixtral',
  'midm-2.0',
  'lfm2',
  'dbrx',
  'smaug-bpe',
]);

function bad(message: string, details?: Record<string, unknown>): RelpError {
  return new RelpError(ErrorCodes.BadModelFile, message, details ? { details } : {});
}

function stringArray(meta: Record<string, unknown>, key: string, required: true): string[];
function stringArray(meta: Record<string, unknown>, key: string, required: false): string[] | undefined;
function stringArray(meta: Record<string, unknown>, key: string, required: boolean): string[] | undefined {
  const v = meta[key];
  if (v === undefined || v === null) {
    if (required) throw bad(`GGUF metadata lacks ${key}`);
    return undefined;
  }
  if (!Array.isArray(v) || v.some((x) => typeof x !== 'string')) throw bad(`GGUF ${key}: expected strings`);
  return v as string[];
}

function numberArray(meta: Record<string, unknown>, key: string): number[] | undefined {
  const v = meta[key];
  if (v === undefined || v === null) return undefined;
  if (Array.isArray(v) || ArrayBuffer.isView(v)) {
    return Array.from(v as ArrayLike<number | bigint>, (x) => Number(x));
  }
  throw bad(`GGUF ${key}: expected numbers`);
}

function optionalNumber(meta: Record<string, unknown>, key: string): number | undefined {
  const v = meta[key];
  if (typeof v === 'number') return v;
  if (typeof v === 'bigint') return Number(v);
  return undefined;
}

function optionalString(meta: Record<string, unknown>, key: string): string | undefined {
  const v = meta[key];
  return typeof v === 'string' ? v : undefined;
}

function optionalBool(meta: Record<string, unknown>, key: string): boolean | undefined {
  const v = meta[key];
  return typeof v === 'boolean' ? v : undefined;
}

/** Special token ids and flags a GGUF file states. */
export interface GgufSpecialTokens {
  bosId: number | undefined;
  eosId: number | undefined;
  unkId: number | undefined;
  padId: number | undefined;
  /** tokenizer.ggml.add_bos_token (llama.cpp's default for SentencePiece vocabularies: true). */
  addBosToken: boolean;
}

export function ggufSpecialTokens(meta: Record<string, unknown>): GgufSpecialTokens {
  const model = optionalString(meta, 'tokenizer.ggml.model');
  return {
    bosId: optionalNumber(meta, 'tokenizer.ggml.bos_token_id'),
    eosId: optionalNumber(meta, 'tokenizer.ggml.eos_token_id'),
    unkId: optionalNumber(meta, 'tokenizer.ggml.unknown_token_id'),
    padId: optionalNumber(meta, 'tokenizer.ggml.padding_token_id'),
    addBosToken: optionalBool(meta, 'tokenizer.ggml.add_bos_token') ?? model === 'llama',
  };
}

function addedToken(id: number, content: string, special: boolean): AddedTokenJson {
  return { id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special };
}

/** token → id, the last id winning for a repeated token (as a Python dict built in id order). */
function vocabOf(tokens: readonly string[]): Record<string, number> {
  const vocab: Record<string, number> = Object.create(null);
  tokens.forEach((t, i) => {
    vocab[t] = i;
  });
  return vocab;
}

function mergesOf(list: readonly string[]): Array<[string, string]> {
  return list.map((m, i) => {
    const k = m.indexOf(' ');
    if (k < 0) throw bad(`GGUF tokenizer.ggml.merges[${i}] is not "a b"`, { index: i });
    const rest = m.slice(k + 1);
    // Python's merge.split(" ") must give a pair; a second space would make it three pieces.
    if (rest.includes(' '))
      throw bad(`GGUF tokenizer.ggml.merges[${i}] has more than two symbols`, { index: i });
    return [m.slice(0, k), rest];
  });
}

/**
 * Merges implied by a vocabulary: every split of a token into two tokens, best-scored first. A port of
 * transformers' `generate_merges(vocab, vocab_scores)` (what it does for GGUF files without merges),
 * including its tie-breaking (by the halves' ids, then stable on the vocabulary order).
 */
export function mergesFromScores(
  vocab: Record<string, number>,
  scores: ReadonlyMap<string, number>,
): Array<[string, string]> {
  const all: Array<{ l: string; r: string; score: number; ll: number; lr: number }> = [];
  for (const [merge, score] of scores) {
    const chars = Array.from(merge);
    const local: Array<{ l: string; r: string; score: number; ll: number; lr: number }> = [];
    for (let i = 1; i < chars.length; i++) {
      const l = chars.slice(0, i).join('');
      const r = chars.slice(i).join('');
      if (l in vocab && r in vocab) local.push({ l, r, score, ll: i, lr: chars.length - i });
    }
    local.sort((a, b) => vocab[a.l]! - vocab[b.l]! || vocab[a.r]! - vocab[b.r]!);
    for (const x of local) all.push(x);
  }
  // sorted(key=(score, len(l), len(r)), reverse=True) is stable: ties keep their order.
  all.sort((a, b) => b.score - a.score || b.ll - a.ll || b.lr - a.lr);
  return all.map((x) => [x.l, x.r]);
}

function specialAddedTokens(
  tokens: readonly string[],
  types: readonly number[] | undefined,
  byteLevel: boolean,
) {
  const added: AddedTokenJson[] = [];
  if (!types) return added;
  tokens.forEach((t, i) => {
    const ty = types[i];
    if (ty === GgufTokenType.Control || (!byteLevel && ty === GgufTokenType.Unknown)) {
      // A control token outside the byte alphabet in a byte-level vocabulary is a mislabel (transformers skips it).
      if (!byteLevel || isByteLevelSpelled(t)) added.push(addedToken(i, t, true));
    } else if (ty === GgufTokenType.UserDefined) {
      added.push(addedToken(i, t, false));
    }
  });
  return added;
}

function gpt2Style(
  meta: Record<string, unknown>,
  tokens: string[],
  types: number[] | undefined,
): TokenizerJson {
  const pre = optionalString(meta, 'tokenizer.ggml.pre') ?? 'default';
  const respelled = tokens.map((t) => (isByteLevelSpelled(t) ? t : toByteLevel(t)));
  const mergeList = stringArray(meta, 'tokenizer.ggml.merges', false);
  if (!mergeList) throw bad('GGUF byte-level (gpt2) vocabulary without tokenizer.ggml.merges');
  const byteLevel = { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true };
  let preTokenizer: Record<string, unknown>;
  if (GPT2_PRE.has(pre)) preTokenizer = byteLevel;
  else if (DIGIT_SPLIT_PRE.has(pre)) {
    preTokenizer = {
      type: 'Sequence',
      pretokenizers: [{ type: 'Digits', individual_digits: true }, byteLevel],
    };
  } else if (LLAMA3_PRE.has(pre) || QWEN2_PRE.has(pre)) {
    const split = QWEN2_PRE.has(pre) ? QWEN2_SPLIT : LLAMA3_SPLIT;
    preTokenizer = {
      type: 'Sequence',
      pretokenizers: [
        { type: 'Split', pattern: { Regex: split }, behavior: 'Isolated', invert: false },
        { ...byteLevel, use_regex: false },
      ],
    };
  } else {
    throw new RelpError(
      ErrorCodes.Unsupported,
      `GGUF pre-tokenizer "${pre}" is not supported (known: ${[...GPT2_PRE, ...DIGIT_SPLIT_PRE, ...LLAMA3_PRE, ...QWEN2_PRE].join(', ')})`,
      { details: { pre } },
    );
  }
  const added = specialAddedTokens(respelled, types, true);
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: added,
    normalizer: QWEN2_PRE.has(pre) ? { type: 'NFC' } : null,
    pre_tokenizer: preTokenizer,
    post_processor: null,
    decoder: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: {
      type: 'BPE',
      dropout: null,
      unk_token: null,
      continuing_subword_prefix: null,
      end_of_word_suffix: null,
      fuse_unk: false,
      byte_fallback: false,
      ignore_merges: false,
      vocab: vocabOf(respelled),
      merges: mergesOf(mergeList),
    },
  };
}

function sentencePieceStyle(
  meta: Record<string, unknown>,
  tokens: string[],
  types: number[] | undefined,
): TokenizerJson {
  const arch = optionalString(meta, 'general.architecture') ?? '';
  const gemma = arch === 'gemma' || arch === 'gemma2' || arch === 'gemma3';
  // Gemma files spell whitespace-run tokens with real spaces; its merges use '▁'.
  const respelled = gemma
    ? tokens.map((t) => (t.includes(' ') && t.trim() === '' ? '\u2581'.repeat(t.length) : t))
    : tokens;
  const vocab = vocabOf(respelled);
  const mergeList = stringArray(meta, 'tokenizer.ggml.merges', false);
  let merges: Array<[string, string]>;
  if (mergeList) merges = mergesOf(mergeList);
  else {
    const scores = new Map<string, number>();
    if (gemma) {
      // Gemma's scores do not follow its merge order; the token order does (as transformers does it).
      respelled.forEach((t, i) => {
        scores.set(t, -i);
      });
    } else {
      const s = numberArray(meta, 'tokenizer.ggml.scores');
      if (!s || s.length !== tokens.length)
        throw bad('GGUF SentencePiece vocabulary without merges or scores');
      respelled.forEach((t, i) => {
        scores.set(t, s[i]!);
      });
    }
    merges = mergesFromScores(vocab, scores);
  }
  const special = ggufSpecialTokens(meta);
  const unk = special.unkId !== undefined ? respelled[special.unkId] : undefined;
  const added = specialAddedTokens(respelled, types, false);
  const prefixSpace = !gemma && (optionalBool(meta, 'tokenizer.ggml.add_space_prefix') ?? true);
  const decoders: Array<Record<string, unknown>> = [
    { type: 'Replace', pattern: { String: '\u2581' }, content: ' ' },
    { type: 'ByteFallback' },
    { type: 'Fuse' },
  ];
  if (prefixSpace) decoders.push({ type: 'Strip', content: ' ', start: 1, stop: 0 });
  let postProcessor: Record<string, unknown> | null = null;
  if (special.addBosToken && special.bosId !== undefined) {
    const bos = respelled[special.bosId]!;
    postProcessor = {
      type: 'TemplateProcessing',
      single: [{ SpecialToken: { id: bos, type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }],
      pair: [
        { SpecialToken: { id: bos, type_id: 0 } },
        { Sequence: { id: 'A', type_id: 0 } },
        { SpecialToken: { id: bos, type_id: 1 } },
        { Sequence: { id: 'B', type_id: 1 } },
      ],
      special_tokens: { [bos]: { id: bos, ids: [special.bosId], tokens: [bos] } },
    };
  }
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: added,
    // Gemma: spaces become '▁' in the normalizer and the whole text is one BPE word (its Split on " "
    // after that normalizer is a no-op, so it is left out). Llama: Metaspace with a prefix '▁'.
    normalizer: gemma ? { type: 'Replace', pattern: { String: ' ' }, content: '\u2581' } : null,
    pre_tokenizer: gemma
      ? null
      : {
          type: 'Metaspace',
          replacement: '\u2581',
          prepend_scheme: prefixSpace ? 'first' : 'never',
          split: false,
        },
    post_processor: postProcessor,
    decoder: { type: 'Sequence', decoders },
    model: {
      type: 'BPE',
      dropout: null,
      unk_token: gemma ? (unk ?? '<unk>') : null,
      continuing_subword_prefix: null,
      end_of_word_suffix: null,
      fuse_unk: true,
      byte_fallback: true,
      ignore_merges: false,
      vocab,
      merges,
    },
  };
}

/**
 * A tokenizer.json object from a GGUF file's metadata (the `tokenizer.ggml.*` keys and
 * `general.architecture`), the way transformers' GGUF loader rebuilds it:
 *
 * - `tokenizer.ggml.model` = "gpt2" (SmolLM2, Qwen, Llama 3): byte-level BPE from tokens + merges; the
 *   pre-tokenizer follows `tokenizer.ggml.pre` ("smollm" and its kin split digits one by one, which
 *   transformers does not do but llama.cpp and the original tokenizers do).
 * - "llama" (Gemma, Llama 2, Mistral): SentencePiece BPE with byte fallback and '▁' for spaces; merges
 *   from the file or rebuilt from scores (Gemma: from token order). Gemma has no prefix space, others
 *   follow `tokenizer.ggml.add_space_prefix` (default true).
 *
 * Control tokens (and, for SentencePiece, the unknown token) become special added tokens, user-defined
 * tokens plain added tokens. Unlike transformers, no token absent from the file is ever added.
 */
export function tokenizerJsonFromGgufMetadata(meta: Record<string, unknown>): TokenizerJson {
  const model = optionalString(meta, 'tokenizer.ggml.model');
  const tokens = stringArray(meta, 'tokenizer.ggml.tokens', true);
  const types = numberArray(meta, 'tokenizer.ggml.token_type');
  if (types && types.length !== tokens.length) {
    throw bad('GGUF tokenizer.ggml.token_type and tokenizer.ggml.tokens differ in length', {
      tokens: tokens.length,
      types: types.length,
    });
  }
  if (model === 'gpt2') return gpt2Style(meta, tokens, types);
  if (model === 'llama') return sentencePieceStyle(meta, tokens, types);
  throw new RelpError(
    ErrorCodes.Unsupported,
    `GGUF tokenizer model "${model}" is not supported (gpt2, llama)`,
    {
      details: { model },
    },
  );
}

/** A Tokenizer from GGUF metadata, with the file's BOS / EOS / padding ids. */
export function tokenizerFromGgufMetadata(meta: Record<string, unknown>): Tokenizer {
  const json = tokenizerJsonFromGgufMetadata(meta);
  const s = ggufSpecialTokens(meta);
  const opts: { bos?: number; eos?: number; pad?: number } = {};
  if (s.bosId !== undefined) opts.bos = s.bosId;
  if (s.eosId !== undefined) opts.eos = s.eosId;
  if (s.padId !== undefined) opts.pad = s.padId;
  return Tokenizer.fromTokenizerJson(json, opts);
}
