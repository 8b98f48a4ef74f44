import { isRelpError, RelpError } from '@relp/core/errors';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { parsePairsJsonl, toJsonl } from '../src/index.js';

const good = [
  '{"clean": "When John and Mary went", "corrupt": "When Mary and Mary went", "answer": " Mary", "wrong": " John"}',
  '',
  '{"clean_ids": [1, 2, 3], "corrupt_ids": [1, 4, 3], "answer_id": 3, "wrong_id": 7, "note": "ids"}',
].join('\n');

function lineOf(e: unknown): number | undefined {
  return e instanceof RelpError ? (e.details.line as number | undefined) : undefined;
}

describe('parsePairsJsonl', () => {
  it('reads text and id lines with their line numbers, skipping blank lines', () => {
    const recs = parsePairsJsonl(good);
    expect(recs.map((r) => [r.kind, r.line])).toEqual([
      ['text', 1],
      ['ids', 3],
    ]);
    expect(recs[1]!.pair).toMatchObject({ clean: [1, 2, 3], corrupt: [1, 4, 3], answer: 3, wrong: 7 });
  });

  it('handles a BOM and CRLF line ends', () => {
    expect(parsePairsJsonl(`\ufeff${good.replaceAll('\n', '\r\n')}`)).toHaveLength(2);
  });

  it.each([
    ['{"clean": "a", "corrupt": "b", "answer": " x"', 2, /not valid JSON/],
    ['[1, 2]', 2, /JSON object/],
    ['{"clean": "a", "corrupt": "b", "answer": " x"}', 2, /"wrong" must be a string/],
    [
      '{"clean_ids": [1, -2], "corrupt_ids": [1, 2], "answer_id": 1, "wrong_id": 2}',
      2,
      /non-negative integers/,
    ],
    ['{"clean_ids": [1], "corrupt_ids": [2], "answer_id": 1.5, "wrong_id": 2}', 2, /answer_id/],
    ['{"clean": "a", "corrupt_ids": [1], "answer": "x", "wrong": "y"}', 2, /mixes/],
    ['{"foo": 1}', 2, /needs either/],
  ])('reports the line of a malformed line: %s', (bad, line, pattern) => {
    const text = `${good.split('\n')[0]}\n${bad}\n`;
    try {
      parsePairsJsonl(text, 'data.jsonl');
      expect.unreachable();
    } catch (e) {
      expect(isRelpError(e, 'BAD_INPUT')).toBe(true);
      expect(lineOf(e)).toBe(line);
      expect((e as Error).message).toMatch(new RegExp(`^data\\.jsonl:${line}: `));
      expect((e as Error).message).toMatch(pattern);
    }
  });

  it('refuses an empty file', () => {
    expect(() => parsePairsJsonl('\n  \n')).toThrow(/no pairs/);
  });

  it('round-trips generated text pairs', () => {
    const pairs = [{ clean: 'a "quoted"\\ line', corrupt: 'b\nc', answer: ' x', wrong: ' y' }];
    expect(parsePairsJsonl(toJsonl(pairs)).map((r) => r.pair)).toEqual(pairs);
  });
});

describe('parsePairsJsonl under mutation (property)', () => {
  const textPair = fc.record({
    clean: fc.string({ minLength: 1 }),
    corrupt: fc.string(),
    answer: fc.string(),
    wrong: fc.string(),
  });
  const idPair = fc.record({
    clean_ids: fc.array(fc.nat(), { minLength: 1, maxLength: 8 }),
    corrupt_ids: fc.array(fc.nat(), { minLength: 1, maxLength: 8 }),
    answer_id: fc.nat(),
    wrong_id: fc.nat(),
  });
  const line = fc.oneof(textPair, idPair).map((o) => JSON.stringify(o));
  const mutation = fc.oneof(
    fc.record({ kind: fc.constant('delete' as const), at: fc.nat(), len: fc.integer({ min: 1, max: 6 }) }),
    fc.record({ kind: fc.constant('insert' as const), at: fc.nat(), text: fc.string({ maxLength: 4 }) }),
    fc.record({
      kind: fc.constant('insertToken' as const),
      at: fc.nat(),
      text: fc.constantFrom(
        '{',
        '}',
        '[',
        ']',
        ',',
        ':',
        '"',
        '\n',
        'null',
        '-1',
        '1.5',
        'true',
        '\\',
        '"clean"',
        '\u2028',
      ),
    }),
    fc.record({ kind: fc.constant('swapLines' as const), a: fc.nat(), b: fc.nat() }),
  );

  function mutate(text: string, ms: readonly unknown[]): string {
    let t = text;
    for (const m of ms as Array<
      | { kind: 'delete'; at: number; len: number }
      | { kind: 'insert' | 'insertToken'; at: number; text: string }
      | { kind: 'swapLines'; a: number; b: number }
    >) {
      if (m.kind === 'swapLines') {
        const ls = t.split('\n');
        const a = m.a % ls.length;
        const b = m.b % ls.length;
        [ls[a], ls[b]] = [ls[b]!, ls[a]!];
        t = ls.join('\n');
      } else {
        const at = t.length === 0 ? 0 : m.at % (t.length + 1);
        t =
          m.kind === 'delete' ? t.slice(0, at) + t.slice(at + m.len) : t.slice(0, at) + m.text + t.slice(at);
      }
    }
    return t;
  }

  it('either returns well-typed pairs or throws BAD_INPUT naming an existing line, never anything else', () => {
    fc.assert(
      fc.property(
        fc.array(line, { minLength: 1, maxLength: 6 }),
        fc.array(mutation, { maxLength: 4 }),
        (ls, ms) => {
          const text = mutate(ls.join('\n'), ms);
          const nLines = text.replace(/^\ufeff/, '').split(/\r?\n/).length;
          let recs: ReturnType<typeof parsePairsJsonl>;
          try {
            recs = parsePairsJsonl(text);
          } catch (e) {
            expect(isRelpError(e, 'BAD_INPUT')).toBe(true);
            const l = lineOf(e);
            if (l !== undefined) {
              expect(Number.isInteger(l) && l >= 1 && l <= nLines).toBe(true);
              expect((e as Error).message).toContain(`:${l}:`);
            } else {
              expect((e as Error).message).toMatch(/no pairs/);
            }
            return;
          }
          expect(recs.length).toBeGreaterThan(0);
          for (const r of recs) {
            expect(r.line).toBeGreaterThanOrEqual(1);
            if (r.kind === 'text') {
              for (const k of ['clean', 'corrupt', 'answer', 'wrong'] as const)
                expect(typeof r.pair[k]).toBe('string');
            } else {
              for (const id of [...r.pair.clean, ...r.pair.corrupt, r.pair.answer, r.pair.wrong]) {
                expect(Number.isSafeInteger(id) && id >= 0).toBe(true);
              }
            }
          }
        },
      ),
      { numRuns: 400, seed: 1234 },
    );
  });

  it('arbitrary text never throws anything but BAD_INPUT', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'binary', maxLength: 200 }), (s) => {
        try {
          parsePairsJsonl(s);
        } catch (e) {
          expect(isRelpError(e, 'BAD_INPUT')).toBe(true);
        }
      }),
      { numRuns: 300, seed: 99 },
    );
  });
});
