/**
 * The tokenizer as a GGUF file describes it (`tokenizer.ggml.*`, `tokenizer.chat_template`): what
 * `tokenizerJsonFromGgufMetadata` in packages/tokenizer turns into a tokenizer.json. No interpretation here beyond
 * typing and checking: ids are checked to be inside the vocabulary, arrays to have one entry per token.
 */
import { badFile } from '../errors.js';
import { metaBool, metaNumber, metaString, metaStringArray } from './metadata.js';
import type { GgufFile, GgufParseOptions, GgufValue } from './reader.js';
import { parseGguf } from './reader.js';

export interface GgufTokenizerMetadata {
  /** tokenizer.ggml.model: "gpt2" (byte-level BPE), "llama" (SentencePiece), "bert", "t5", … */
  readonly model: string;
  /** tokenizer.ggml.pre: the pre-tokenizer name ("smollm", "default", "llama-bpe", …). */
  readonly pre?: string;
  readonly tokens: readonly string[];
  /** Per token (SentencePiece scores). */
  readonly scores?: Float32Array;
  /** Per token, llama.cpp's token type (1 normal, 2 unknown, 3 control, 4 user-defined, 5 unused, 6 byte). */
  readonly tokenTypes?: Int32Array;
  /** BPE merges, "a b" strings. */
  readonly merges?: readonly string[];
  readonly bosTokenId?: number;
  readonly eosTokenId?: number;
  readonly unknownTokenId?: number;
  readonly paddingTokenId?: number;
  readonly separatorTokenId?: number;
  readonly maskTokenId?: number;
  readonly eotTokenId?: number;
  readonly addBosToken?: boolean;
  readonly addEosToken?: boolean;
  readonly addSepToken?: boolean;
  readonly addSpacePrefix?: boolean;
  readonly removeExtraWhitespaces?: boolean;
  readonly chatTemplate?: string;
  /** Every `tokenizer.*` key as stored, for keys not covered above. */
  readonly raw: Readonly<Record<string, GgufValue>>;
}

function typedOf<T extends Float32Array | Int32Array>(
  file: GgufFile,
  key: string,
  ctor: { new (n: number): T; name: string },
  n: number,
): T | undefined {
  const v = file.metadata.get(key)?.value;
  if (v === undefined) return undefined;
  if (!(v instanceof ctor)) throw badFile(`GGUF: "${key}" should be an array of ${ctor.name}`, { key });
  if (v.length !== n) throw badFile(`GGUF: "${key}" has ${v.length} entries for ${n} tokens`, { key });
  return v;
}

/** The `tokenizer.*` metadata of a GGUF file, typed. Throws BAD_MODEL_FILE when it is absent or inconsistent. */
export function ggufTokenizerMetadata(
  input: GgufFile | Uint8Array | ArrayBuffer,
  options?: GgufParseOptions,
): GgufTokenizerMetadata {
  const file =
    input instanceof Uint8Array || input instanceof ArrayBuffer ? parseGguf(input, options) : input;
  const model = metaString(file, 'tokenizer.ggml.model');
  const tokens = metaStringArray(file, 'tokenizer.ggml.tokens');
  if (model === undefined || tokens === undefined) {
    throw badFile('GGUF: the file has no tokenizer (tokenizer.ggml.model / tokenizer.ggml.tokens)');
  }
  const n = tokens.length;
  const id = (key: string): number | undefined => {
    const v = metaNumber(file, key);
    if (v !== undefined && (!Number.isInteger(v) || v < 0 || v >= n)) {
      throw badFile(`GGUF: "${key}" = ${v} is not a token id (vocabulary of ${n})`, { key });
    }
    return v;
  };
  const raw: Record<string, GgufValue> = {};
  for (const [key, e] of file.metadata) if (key.startsWith('tokenizer.')) raw[key] = e.value;
  const out: { -readonly [K in keyof GgufTokenizerMetadata]: GgufTokenizerMetadata[K] } = {
    model,
    tokens,
    raw,
  };
  const set = <K extends keyof GgufTokenizerMetadata>(k: K, v: GgufTokenizerMetadata[K] | undefined) => {
    if (v !== undefined) out[k] = v;
  };
  set('pre', metaString(file, 'tokenizer.ggml.pre'));
  set('scores', typedOf(file, 'tokenizer.ggml.scores', Float32Array, n));
  set('tokenTypes', typedOf(file, 'tokenizer.ggml.token_type', Int32Array, n));
  set('merges', metaStringArray(file, 'tokenizer.ggml.merges'));
  set('bosTokenId', id('tokenizer.ggml.bos_token_id'));
  set('eosTokenId', id('tokenizer.ggml.eos_token_id'));
  set('unknownTokenId', id('tokenizer.ggml.unknown_token_id'));
  set('paddingTokenId', id('tokenizer.ggml.padding_token_id'));
  set('separatorTokenId', id('tokenizer.ggml.seperator_token_id') ?? id('tokenizer.ggml.separator_token_id'));
  set('maskTokenId', id('tokenizer.ggml.mask_token_id'));
  set('eotTokenId', id('tokenizer.ggml.eot_token_id'));
  set('addBosToken', metaBool(file, 'tokenizer.ggml.add_bos_token'));
  set('addEosToken', metaBool(file, 'tokenizer.ggml.add_eos_token'));
  set('addSepToken', metaBool(file, 'tokenizer.ggml.add_sep_token'));
  set('addSpacePrefix', metaBool(file, 'tokenizer.ggml.add_space_prefix'));
  set('removeExtraWhitespaces', metaBool(file, 'tokenizer.ggml.remove_extra_whitespaces'));
  set('chatTemplate', metaString(file, 'tokenizer.chat_template'));
  return out;
}
