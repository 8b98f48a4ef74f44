export { BYTE_TO_CHAR, byteLevelTokenBytes, CHAR_TO_BYTE, toByteLevel } from './bytes.js';
export { formatTokenBytes, formatTokenText, type LabelOptions } from './display.js';
export {
  type GgufSpecialTokens,
  ggufSpecialTokens,
  mergesFromScores,
  tokenizerFromGgufMetadata,
  tokenizerJsonFromGgufMetadata,
} from './gguf.js';
export { GPT2_EOS, GPT2_EOS_ID, gpt2TokenizerJson } from './gpt2.js';
export {
  type DecodeOptions,
  type EncodedText,
  type EncodeOptions,
  Tokenizer,
  type TokenizerOptions,
  type TokenSpelling,
} from './tokenizer.js';
export type { AddedTokenJson, BpeModelJson, TokenizerJson } from './types.js';
