import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { mergesFromScores, tokenizerFromGgufMetadata, tokenizerJsonFromGgufMetadata } from '../src/index.js';
import { FIXTURES, type Oracle, readFixture } from './oracles.js';

type Meta = Record<string, unknown>;

function checkAgainstOracle(name: string, meta: Meta) {
  const oracle = readFixture<Oracle & { pythonTokenizerJson: Record<string, unknown> }>(
    `${name}.oracle.json`,
  );
  const tok = tokenizerFromGgufMetadata(meta);

  it(`encodes all ${oracle.cases.length} oracle strings to the ids Python gives`, () => {
    const bad = oracle.cases.filter((c) => JSON.stringify(tok.encode(c.text)) !== JSON.stringify(c.ids));
    expect(bad.map((c) => ({ text: c.text, want: c.ids, got: tok.encode(c.text) }))).toEqual([]);
  });

  it('decodes as Python decodes', () => {
    const bad = oracle.cases.filter((c) => tok.decode(c.ids) !== c.decoded);
    expect(bad.map((c) => ({ text: c.text, want: c.decoded, got: tok.decode(c.ids) }))).toEqual([]);
  });

  it('gives offsets that cover the text', () => {
    for (const c of oracle.cases) {
      const enc = tok.encodeWithOffsets(c.text);
      expect(enc.ids).toEqual(c.ids);
      expect(enc.offsets).toHaveLength(c.ids.length);
      if (enc.text === c.text && c.ids.length > 0) expect(enc.offsets.at(-1)![1]).toBe(c.text.length);
    }
  });
  return tok;
}

describe('GGUF "gpt2" vocabulary, pre-tokenizer "smollm" (synthetic)', () => {
  const meta = readFixture<Meta>('gguf-gpt2-synthetic.metadata.json');
  const tok = checkAgainstOracle('gguf-gpt2-synthetic', meta);
  it('has the file’s special ids and splits digits one by one', () => {
    expect(tok.bosId).toBe(1);
    expect(tok.eosId).toBe(2);
    expect(tok.specialIds.has(0)).toBe(true);
    expect(tok.encode('2024')).toHaveLength(4);
    expect(tok.encode('<|im_start|>')).toEqual([1]);
  });
});

describe('GGUF "llama" vocabulary, Gemma (synthetic: byte fallback, no merges in the file)', () => {
  const meta = readFixture<Meta>('gguf-gemma-synthetic.metadata.json');
  const tok = checkAgainstOracle('gguf-gemma-synthetic', meta);
  it('falls back to bytes for characters outside the vocabulary', () => {
    const ids = tok.encode('☃');
    expect(ids.map((id) => tok.idToToken(id))).toEqual(['<0xE2>', '<0x98>', '<0x83>']);
    expect(tok.decode(ids)).toBe('☃');
    expect(tok.spelling).toBe('sentencepiece');
    expect(tok.tokenLabels(tok.encode(' Mary\n'))).toEqual(expect.arrayContaining(['\\n']));
  });
  it('adds BOS only when asked', () => {
    expect(tok.encode('a', { addSpecialTokens: true })[0]).toBe(2);
    expect(tok.encode('a')[0]).not.toBe(2);
  });
});

describe('GGUF "llama" vocabulary, Llama (synthetic: prefix space, merges from scores)', () => {
  const meta = readFixture<Meta>('gguf-llama-synthetic.metadata.json');
  const tok = checkAgainstOracle('gguf-llama-synthetic', meta);
  it('maps offsets past the prefix space', () => {
    const enc = tok.encodeWithOffsets('Hello world');
    expect(enc.text).toBe('Hello world');
    expect(enc.offsets[0]![0]).toBe(0);
    expect(enc.offsets.at(-1)![1]).toBe(11);
  });
});

describe('GGUF pre-tokenizers', () => {
  // A vocabulary where "12" and "Ġ1" are tokens: only a digit-splitting pre-tokenizer keeps them apart.
  const meta = (pre: string): Meta => ({
    'tokenizer.ggml.model': 'gpt2',
    'tokenizer.ggml.pre': pre,
    'tokenizer.ggml.tokens': ['1', '2', 'Ġ', 'Ġ1', '12'],
    'tokenizer.ggml.merges': ['Ġ 1', '1 2'],
  });
  it('"smollm" splits digits one by one, "gpt2" does not', () => {
    const smollm = tokenizerFromGgufMetadata(meta('smollm'));
    const gpt2 = tokenizerFromGgufMetadata(meta('gpt2'));
    expect(smollm.encode(' 12')).toEqual([2, 0, 1]);
    expect(gpt2.encode(' 12')).toEqual([3, 1]);
    expect(gpt2.encode('12')).toEqual([4]);
  });
  it('"qwen2" splits digits one by one where "llama3" keeps up to three, and NFC-normalises', () => {
    // Byte-level spellings: é is C3 A9 → "Ã©"; e + U+0301 is 65 CC 81 → "e", "Ì", "ģ".
    const m = (pre: string): Meta => ({
      'tokenizer.ggml.model': 'gpt2',
      'tokenizer.ggml.pre': pre,
      'tokenizer.ggml.tokens': ['1', '2', '3', '12', '123', 'Ã', '©', 'e', 'Ì', 'ģ'],
      'tokenizer.ggml.merges': ['1 2', '12 3'],
    });
    const qwen2 = tokenizerFromGgufMetadata(m('qwen2'));
    const llama3 = tokenizerFromGgufMetadata(m('llama3'));
    expect(qwen2.encode('123')).toEqual([0, 1, 2]);
    expect(llama3.encode('123')).toEqual([4]);
    expect(qwen2.encode('e\u0301')).toEqual([5, 6]);
    expect(qwen2.encode('é')).toEqual([5, 6]);
    expect(llama3.encode('e\u0301')).toEqual([7, 8, 9]);
  });
});

describe('mergesFromScores (port of transformers generate_merges)', () => {
  it('orders merges by score, then by longer left half, ties by vocabulary order', () => {
    const vocab = { a: 0, b: 1, c: 2, ab: 3, bc: 4, abc: 5 };
    const scores = new Map(Object.entries({ a: 0, b: 0, c: 0, ab: -1, bc: -2, abc: -3 }));
    expect(mergesFromScores(vocab, scores)).toEqual([
      ['a', 'b'],
      ['b', 'c'],
      ['ab', 'c'],
      ['a', 'bc'],
    ]);
  });
});

describe('GGUF metadata errors', () => {
  it('rejects unknown tokenizer models and pre-tokenizers', () => {
    expect(() =>
      tokenizerJsonFromGgufMetadata({ 'tokenizer.ggml.model': 'bert', 'tokenizer.ggml.tokens': [] }),
    ).toThrow(expect.objectContaining({ code: 'UNSUPPORTED' }));
    expect(() =>
      tokenizerJsonFromGgufMetadata({
        'tokenizer.ggml.model': 'gpt2',
        'tokenizer.ggml.pre': 'qwen9',
        'tokenizer.ggml.tokens': ['a'],
        'tokenizer.ggml.merges': [],
      }),
    ).toThrow(expect.objectContaining({ code: 'UNSUPPORTED' }));
    expect(() => tokenizerJsonFromGgufMetadata({ 'tokenizer.ggml.model': 'gpt2' })).toThrow(
      expect.objectContaining({ code: 'BAD_MODEL_FILE' }),
    );
  });
});

// The real SmolLM2-135M-Instruct vocabulary: its tokenizer.* metadata, trimmed from the GGUF file and
// gzipped (tools/oracles/tokenizer_gguf.py --smollm …), is committed, so this runs without the model.
const smollmMeta = join(FIXTURES, 'gguf-smollm2.metadata.json.gz');
describe.skipIf(!existsSync(smollmMeta))('SmolLM2-135M-Instruct GGUF vocabulary (real)', () => {
  const meta = JSON.parse(gunzipSync(readFileSync(smollmMeta)).toString('utf8')) as Meta;
  const tok = checkAgainstOracle('gguf-smollm2', meta);
  it('has 49152 tokens and the chat tokens', () => {
    expect(tok.vocabSize).toBe(49152);
    expect(tok.encode('<|im_start|>user')[0]).toBe(1);
    expect(tok.eosId).toBe(2);
    expect(tok.singleTokenId(' Mary')).toBe(tok.encode(' Mary')[0]);
  });
});
