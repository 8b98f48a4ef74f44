import { isRelpError } from '@relp/core/errors';
import { describe, expect, it } from 'vitest';
import {
  buildTask,
  checkPairs,
  fillIoiTemplate,
  generateGreaterThan,
  generateIoi,
  generateSva,
  IOI_ABBA_TEMPLATES,
  IOI_BABA_TEMPLATES,
  IOI_NAMES,
  ioiDemoPairs,
  SVA_STRUCTURES,
  TASKS,
} from '../src/index.js';
import { gpt2 } from './gpt2.js';

const tok = gpt2();

/** Positions where two token lists differ. */
function diffPositions(a: readonly number[], b: readonly number[]): number[] {
  expect(a.length).toBe(b.length);
  return a.flatMap((t, i) => (t === b[i] ? [] : [i]));
}

/** `checkPairs` with the GPT-2 tokenizer; each kept pair comes with the positions where clean and corrupt differ. */
function checkedDiffs(pairs: Parameters<typeof checkPairs>[0], options?: Parameters<typeof checkPairs>[2]) {
  const checked = checkPairs(pairs, tok, options);
  return { ...checked, diffs: checked.pairs.map((p) => [p, diffPositions(p.clean, p.corrupt)] as const) };
}

describe('IOI templates', () => {
  it('has the 15 templates of Wang et al. in both orders, each with one IO slot and two S slots', () => {
    expect(IOI_BABA_TEMPLATES).toHaveLength(15);
    expect(IOI_ABBA_TEMPLATES).toHaveLength(15);
    for (const [i, t] of IOI_BABA_TEMPLATES.entries()) {
      const abba = IOI_ABBA_TEMPLATES[i]!;
      for (const x of [t, abba]) {
        expect(x.match(/\[A\]/g)).toHaveLength(2);
        expect(x.match(/\[B\]/g)).toHaveLength(2);
        expect(x.endsWith(' [A]')).toBe(true);
      }
      // BABA: B comes first; ABBA: A comes first; the rest of the sentence is the same.
      expect(t.indexOf('[B]')).toBeLessThan(t.indexOf('[A]'));
      expect(abba.indexOf('[A]')).toBeLessThan(abba.indexOf('[B]'));
      expect(abba.replaceAll('[A]', '[X]').replaceAll('[B]', '[X]')).toBe(
        t.replaceAll('[A]', '[X]').replaceAll('[B]', '[X]'),
      );
    }
  });

  it('fills every template to a well-formed prompt ending in " to" or " said to" with no slot left', () => {
    for (const t of [...IOI_BABA_TEMPLATES, ...IOI_ABBA_TEMPLATES]) {
      const s = fillIoiTemplate(t, { io: 'Mary', s1: 'John', s2: 'John', place: 'store', object: 'ring' });
      expect(s).not.toMatch(/\[|\]/);
      expect(s).toMatch(/ to$/);
      expect(s.split('John')).toHaveLength(3);
      expect(s.split('Mary')).toHaveLength(2);
    }
  });

  it('the name list has 100 distinct names, each a single GPT-2 token with a leading space', () => {
    expect(new Set(IOI_NAMES).size).toBe(IOI_NAMES.length);
    expect(IOI_NAMES.length).toBeGreaterThanOrEqual(100);
    const multi = IOI_NAMES.filter((n) => tok.encode(` ${n}`).length !== 1);
    expect(multi).toEqual([]);
  });
});

describe('IOI generator', () => {
  it('is deterministic per seed and differs across seeds', () => {
    expect(generateIoi({ n: 20, seed: 3 })).toEqual(generateIoi({ n: 20, seed: 3 }));
    expect(generateIoi({ n: 20, seed: 3 })).not.toEqual(generateIoi({ n: 20, seed: 4 }));
  });

  it('mixes ABBA and BABA half and half', () => {
    const orders = generateIoi({ n: 10, seed: 1 }).map((p) => p.meta?.order);
    expect(orders.filter((o) => o === 'ABBA')).toHaveLength(5);
    expect(orders.filter((o) => o === 'BABA')).toHaveLength(5);
  });

  it('s2-swap changes exactly the S2 token, to the IO token', () => {
    const checked = checkedDiffs(generateIoi({ n: 100, seed: 7, corruption: 's2-swap' }));
    expect(checked.dropped).toEqual([]);
    for (const [p, d] of checked.diffs) {
      expect(d).toHaveLength(1);
      const at = d[0]!;
      expect(p.clean[at]).toBe(p.wrong); // S2 in the clean prompt is the subject (the wrong answer)
      expect(p.corrupt[at]).toBe(p.answer); // replaced by the IO
      // S2 is the last occurrence of the subject: S appears exactly twice in the clean prompt.
      expect(p.clean.filter((t) => t === p.wrong)).toHaveLength(2);
      expect(p.clean.filter((t) => t === p.answer)).toHaveLength(1);
    }
  });

  it('abc replaces the three name tokens by three distinct other names and nothing else', () => {
    const checked = checkedDiffs(generateIoi({ n: 60, seed: 11, corruption: 'abc' }));
    expect(checked.dropped).toEqual([]);
    for (const [p, d] of checked.diffs) {
      expect(d).toHaveLength(3);
      const names = d.map((i) => p.corrupt[i]!);
      expect(new Set(names).size).toBe(3);
      expect(names).not.toContain(p.answer);
      expect(names).not.toContain(p.wrong);
      expect(d.map((i) => p.clean[i]).sort()).toEqual([p.answer, p.wrong, p.wrong].sort());
    }
  });
});

describe('IOI reference demo set', () => {
  it('is the 8 prompts of the RelP notebook: 15 tokens with BOS, corrupt = neighbour, one name swapped at S2', () => {
    const pairs = ioiDemoPairs();
    expect(pairs).toHaveLength(8);
    expect(pairs[0]!.clean).toBe('When John and Mary went to the shops, John gave the bag to');
    expect(pairs[7]!.clean).toBe('After Martin and Amy went to the park, Martin gave a drink to');
    const checked = checkedDiffs(pairs, { prependBos: true });
    expect(checked.dropped).toEqual([]);
    for (const [p, d] of checked.diffs) {
      expect(p.clean).toHaveLength(15);
      expect(p.clean[0]).toBe(50256);
      expect(d).toEqual([10]); // S2 position in the notebook's labels (" John_10")
      expect(p.clean[10]).toBe(p.wrong);
      expect(p.corrupt[10]).toBe(p.answer);
    }
    // The notebook's answer token ids.
    expect(checked.pairs.map((p) => [p.answer, p.wrong])).toEqual([
      [5335, 1757],
      [1757, 5335],
      [4186, 3700],
      [3700, 4186],
      [6035, 15686],
      [15686, 6035],
      [5780, 14235],
      [14235, 5780],
    ]);
  });
});

describe('greater-than', () => {
  it('changes exactly the YY token to 01, with single-token two-digit answer above and wrong below YY', () => {
    const checked = checkedDiffs(generateGreaterThan({ n: 100, seed: 2 }));
    expect(checked.pairs.length).toBeGreaterThan(80);
    for (const [p, d] of checked.diffs) {
      expect(d).toHaveLength(1);
      expect(tok.decode([p.corrupt[d[0]!]!])).toBe('01');
      const yy = Number(tok.decode([p.clean[d[0]!]!]));
      expect(Number(tok.decode([p.answer]))).toBeGreaterThan(yy);
      expect(Number(tok.decode([p.wrong]))).toBeLessThan(yy);
      expect(tok.decode(p.clean)).toMatch(/^The \w+ lasted from the year 17\d\d to the year 17$/);
    }
  });
});

describe('subject–verb agreement', () => {
  for (const structure of SVA_STRUCTURES) {
    it(`${structure}: the corrupt prompt flips the number of exactly the agreeing noun`, () => {
      const checked = checkedDiffs(generateSva({ n: 60, seed: 5, structure }));
      expect(checked.pairs.length).toBeGreaterThan(30);
      for (const [p, d] of checked.diffs) {
        expect(d).toHaveLength(1);
        const clean = tok.decode([p.clean[d[0]!]!]);
        const corrupt = tok.decode([p.corrupt[d[0]!]!]);
        // singular ↔ plural of the same noun
        expect(clean === `${corrupt}s` || corrupt === `${clean}s`).toBe(true);
        const src = p.source!;
        // The agreeing noun: the subject (position 1) except within an RC (the RC's subject).
        const nounIndex = structure === 'within-rc' ? 4 : 1;
        expect(d[0]).toBe(nounIndex);
        // Answer agrees with the clean noun: plural nouns take plural verbs.
        const plural = clean.endsWith('s');
        const sgForms = [' is', ' was', ' has', ' likes', ' loves', ' hates', ' admires', ' knows'];
        expect(sgForms.includes(src.answer)).toBe(!plural);
        expect(sgForms.includes(src.wrong)).toBe(plural);
      }
    });
  }
});

describe('task registry', () => {
  it('builds every task, and refuses an unknown one with BAD_INPUT listing the known tasks', () => {
    for (const t of TASKS) expect(buildTask(t.name, { n: 4 }).length).toBeGreaterThan(0);
    try {
      buildTask('ioj');
      expect.unreachable();
    } catch (e) {
      expect(isRelpError(e, 'BAD_INPUT')).toBe(true);
      expect((e as Error).message).toContain('ioi-demo');
    }
    expect(() => buildTask('ioi', { corruption: 'xyz' })).toThrow(/s2-swap/);
  });
});

describe('checkPairs', () => {
  it('drops failing pairs with a count and reason', () => {
    const checked = checkPairs(
      [
        { clean: 'When John and Mary', corrupt: 'When Mary and Mary', answer: ' Mary', wrong: ' John' },
        { clean: 'a b', corrupt: 'a b', answer: ' x', wrong: ' y' },
        { clean: 'a b', corrupt: 'a c', answer: ' Anderson Cooper', wrong: ' y' },
        { clean: 'a b', corrupt: 'a xqzvbnmqq', answer: ' x', wrong: ' y' },
      ],
      tok,
    );
    expect(checked.pairs).toHaveLength(1);
    expect(checked.droppedByReason).toEqual({
      identical: 1,
      'answer-not-one-token': 1,
      'length-mismatch': 1,
    });
  });

  it('refuses with a clear error when clean == corrupt everywhere', () => {
    expect(() => checkPairs([{ clean: 'a b', corrupt: 'a b', answer: ' x', wrong: ' y' }], tok)).toThrow(
      /no usable pairs.*identical/,
    );
  });

  it('drops prompts longer than the context', () => {
    const long = 'word '.repeat(50);
    expect(() =>
      checkPairs([{ clean: `${long}a`, corrupt: `${long}b`, answer: ' x', wrong: ' y' }], tok, {
        contextLength: 24,
      }),
    ).toThrow(/longer than the model's context/);
  });
});
