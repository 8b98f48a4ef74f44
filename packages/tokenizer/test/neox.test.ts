import { describe, expect, it } from 'vitest';
import { Tokenizer } from '../src/index.js';
import { type Oracle, readFixture } from './oracles.js';

const oracle = readFixture('neox-small.oracle.json');
const tok = Tokenizer.fromTokenizerJson(readFixture<unknown>('neox-small.tokenizer.json'));

describe('GPT-NeoX-style tokenizer (NFC + ByteLevel BPE + space-run added tokens) against Python', () => {
  it('reads the special and added tokens', () => {
    expect(tok.eosId).toBe(0);
    expect(tok.padId).toBe(1);
    expect(tok.vocabSize).toBe((oracle as Oracle & { vocabSize: number }).vocabSize);
    expect(tok.specialIds.has(0)).toBe(true);
    expect(tok.specialIds.has(tok.tokenToId('  ')!)).toBe(false);
  });

  it(`encodes all ${oracle.cases.length} oracle strings to the same ids`, () => {
    const bad = oracle.cases.filter((c) => JSON.stringify(tok.encode(c.text)) !== JSON.stringify(c.ids));
    expect(bad.map((c) => ({ text: c.text, want: c.ids, got: tok.encode(c.text) }))).toEqual([]);
  });

  it('decodes as Python decodes', () => {
    const bad = oracle.cases.filter((c) => tok.decode(c.ids) !== c.decoded);
    expect(bad.map((c) => ({ want: c.decoded, got: tok.decode(c.ids) }))).toEqual([]);
  });

  it('gives offsets into the NFC-normalised text, covering it', () => {
    for (const c of oracle.cases) {
      const enc = tok.encodeWithOffsets(c.text);
      expect(enc.text).toBe(c.text.normalize('NFC'));
      let last = 0;
      for (const [a, b] of enc.offsets) {
        expect(a).toBeGreaterThanOrEqual(last === 0 ? 0 : last - 2); // partial characters may share a span
        expect(b).toBeGreaterThanOrEqual(a);
        last = b;
      }
      if (enc.offsets.length > 0) expect(enc.offsets.at(-1)![1]).toBe(enc.text.length);
    }
  });
});
