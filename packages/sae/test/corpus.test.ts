import { isRelpError } from '@relp/core/errors';
import { describe, expect, it } from 'vitest';
import { splitText, tokenWindows } from '../src/corpus.js';

/** Words as token ids: "w12" → 12. */
const tok = { encode: (s: string) => (s.match(/\d+/g) ?? []).map(Number), bosId: 0 };
const words = (n: number, from = 1) => Array.from({ length: n }, (_, i) => `w${from + i}`);

function failure(f: () => unknown): { message: string; reason: unknown } {
  try {
    f();
  } catch (e) {
    if (isRelpError(e, 'BAD_INPUT')) return { message: e.message, reason: e.details.reason };
    throw e;
  }
  throw new Error('expected BAD_INPUT');
}

describe('splitText', () => {
  it('a text without blank lines still gives several pseudo-documents, cut at line breaks', () => {
    const lines = Array.from({ length: 30 }, (_, i) => words(40, i * 100).join(' '));
    const docs = splitText(lines.join('\n'), 2_000);
    expect(docs.length).toBeGreaterThan(1);
    // Nothing is lost or reordered: the words are the text's words.
    expect(docs.join(' ').match(/w\d+/g)).toEqual(lines.join(' ').match(/w\d+/g));
    for (const d of docs) expect(d.length).toBeLessThan(2 * 2_000);
  });

  it('a text of one line is cut at white space; one without white space anywhere, but not inside a surrogate pair', () => {
    const line = words(2_000).join(' ');
    const docs = splitText(line, 500);
    expect(docs.length).toBeGreaterThan(10);
    expect(docs.join(' ').match(/w\d+/g)).toEqual(line.match(/w\d+/g));
    const emoji = '😀'.repeat(1_000); // 2 000 code units
    const cut = splitText(emoji, 333);
    expect(cut.length).toBeGreaterThan(2);
    expect(cut.join('')).toBe(emoji);
    for (const d of cut) expect(d).toMatch(/^(😀)+$/u);
  });

  it('texts of short paragraphs split as before (at blank lines)', () => {
    const paras = Array.from({ length: 10 }, (_, i) => words(30, i * 100).join(' '));
    const docs = splitText(paras.join('\n\n'), 600);
    for (const d of docs) for (const p of d.split('\n\n')) expect(paras).toContain(p);
  });
});

describe('tokenWindows says why no training window comes out', () => {
  const options = { contextLength: 9, seed: 0, bos: 0, evalWindows: 2, maxTrainWindows: 100 };

  it('an empty text', () => {
    expect(failure(() => tokenWindows([], tok, options))).toMatchObject({ reason: 'empty' });
  });

  it('documents shorter than one window: the numbers of the window and of the longest document', () => {
    const f = failure(() => tokenWindows([words(5).join(' '), words(7).join(' ')], tok, options));
    expect(f.reason).toBe('too-short');
    expect(f.message).toMatch(
      /a window of 9 tokens holds 8 tokens of text and BOS, the longest has 7 tokens/,
    );
    // No held-out windows asked for: the same case, said the same way.
    const g = failure(() => tokenWindows([words(7).join(' ')], tok, { ...options, evalWindows: 0 }));
    expect(g.message).toMatch(
      /^every document of the text is shorter than one window.*the longest has 7 tokens/,
    );
  });

  it('the held-out windows took every document', () => {
    const f = failure(() => tokenWindows([words(40).join(' ')], tok, options));
    expect(f.reason).toBe('held-out-took-all');
    expect(f.message).toMatch(/the 2 held-out windows took all 1 document/);
  });

  it('the documents left for training are too short, though the held-out ones were long enough', () => {
    const docs = [words(3).join(' '), words(3, 50).join(' '), words(200, 100).join(' ')];
    // Seeds whose order holds the long document out first leave only the short ones to train on.
    const failures = Array.from({ length: 10 }, (_, seed) =>
      failure(() => tokenWindows(docs, tok, { ...options, evalWindows: 1, seed })),
    );
    const tooShort = failures.filter((f) => f.reason === 'too-short');
    expect(tooShort.length).toBeGreaterThan(0);
    for (const f of tooShort) {
      expect(f.message).toMatch(
        /each of the [12] document\(s\) left after the held-out windows .* the longest has 3 tokens/,
      );
    }
  });
});
