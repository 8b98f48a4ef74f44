import { ErrorCodes, RelpError } from '@relp/core/errors';
import type { TokenizerJson } from './types.js';

export const GPT2_EOS = '<|endoftext|>';
export const GPT2_EOS_ID = 50256;

/**
 * GPT-2's tokenizer.json, built from the original `encoder.json` (token → id) and `vocab.bpe` (merges, one
 * "a b" pair per line after a `#version` header), as Hugging Face's `gpt2` tokenizer.json has it: byte-level
 * BPE, ByteLevel pre-tokenizer without a prefix space, ByteLevel decoder, `<|endoftext|>` = 50256 a special
 * added token. The same object Python `tokenizers` serialises (tools/oracles/tokenizer_gpt2.py checks it).
 */
export function gpt2TokenizerJson(encoder: Record<string, number>, vocabBpe: string): TokenizerJson {
  const lines = vocabBpe.split('\n');
  if (!lines[0]?.startsWith('#version')) {
    throw new RelpError(ErrorCodes.BadModelFile, 'vocab.bpe: expected a "#version" header line');
  }
  const merges: Array<[string, string]> = [];
  for (let i = 1; i < lines.length; i++) {
    const line = lines[i]!;
    if (line === '') continue;
    const parts = line.split(' ');
    if (parts.length !== 2) {
      throw new RelpError(ErrorCodes.BadModelFile, `vocab.bpe line ${i + 1}: expected two symbols`, {
        details: { line: i + 1 },
      });
    }
    merges.push([parts[0]!, parts[1]!]);
  }
  const eosId = encoder[GPT2_EOS];
  if (eosId === undefined) throw new RelpError(ErrorCodes.BadModelFile, `encoder.json has no ${GPT2_EOS}`);
  const byteLevel = { add_prefix_space: false, trim_offsets: true, use_regex: true };
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: [
      {
        id: eosId,
        content: GPT2_EOS,
        single_word: false,
        lstrip: false,
        rstrip: false,
        normalized: true,
        special: true,
      },
    ],
    normalizer: null,
    pre_tokenizer: { type: 'ByteLevel', ...byteLevel },
    post_processor: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: false, use_regex: true },
    decoder: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: {
      type: 'BPE',
      dropout: null,
      unk_token: null,
      continuing_subword_prefix: '',
      end_of_word_suffix: '',
      fuse_unk: false,
      byte_fallback: false,
      ignore_merges: false,
      vocab: encoder,
      merges,
    },
  };
}
