import { isRelpError } from '@relp/core/errors';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { JSONL_LIMITS, jsonlLines, parsePairsJsonl, readPairsJsonl } from '../src/index.js';

const enc = new TextEncoder();

/** The bytes of `text`, cut at the given offsets (any byte, so inside a character too). */
async function* chunked(bytes: Uint8Array, cuts: readonly number[]): AsyncGenerator<Uint8Array> {
  let from = 0;
  for (const c of [...new Set(cuts)].sort((a, b) => a - b)) {
    if (c <= from || c >= bytes.length) continue;
    yield bytes.slice(from, c);
    from = c;
  }
  yield bytes.slice(from);
}

async function collect<T>(it: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const x of it) out.push(x);
  return out;
}

const line = fc.oneof(
  fc.constant(''),
  fc.constant('   '),
  fc
    .tuple(fc.string({ minLength: 1, maxLength: 6 }), fc.string({ maxLength: 6 }), fc.string(), fc.string())
    .map(([clean, corrupt, answer, wrong]) =>
      JSON.stringify({ clean: `${clean}ä€😀`, corrupt, answer, wrong }),
    ),
  fc
    .tuple(fc.array(fc.nat(50), { minLength: 1, maxLength: 5 }), fc.nat(50), fc.nat(50))
    .map(([ids, a, w]) => JSON.stringify({ clean_ids: ids, corrupt_ids: ids, answer_id: a, wrong_id: w })),
);

describe('readPairsJsonl (streamed)', () => {
  it('reads exactly what parsePairsJsonl reads, however the bytes are cut (inside characters, between \\r and \\n)', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(line, { minLength: 1, maxLength: 12 }),
        fc.boolean(),
        fc.boolean(),
        fc.array(fc.nat(2000), { maxLength: 8 }),
        async (lines, crlf, bom, cuts) => {
          const text = `${bom ? '\ufeff' : ''}${lines.join(crlf ? '\r\n' : '\n')}`;
          let want: unknown;
          try {
            want = parsePairsJsonl(text);
          } catch {
            return; // only blank lines: the streaming reader yields nothing (checked below)
          }
          const got = await collect(readPairsJsonl(chunked(enc.encode(text), cuts)));
          expect(got).toEqual(want);
        },
      ),
      { numRuns: 200 },
    );
    expect(await collect(readPairsJsonl(chunked(enc.encode('\n  \n'), [1])))).toEqual([]);
  });

  it('a bad line is BAD_INPUT naming its line', async () => {
    const text = '{"clean_ids":[1],"corrupt_ids":[2],"answer_id":1,"wrong_id":2}\n\n{"clean_ids": [1}\n';
    const e = await collect(readPairsJsonl(chunked(enc.encode(text), [3, 40]), 'p.jsonl')).catch((x) => x);
    expect(isRelpError(e)).toBe(true);
    expect(e.details.line).toBe(3);
    expect(e.message).toMatch(/p\.jsonl:3: not valid JSON/);
  });

  it('bytes that are not UTF-8 are BAD_INPUT', async () => {
    const bytes = new Uint8Array([...enc.encode('{"clean": "a'), 0xff, ...enc.encode('"}\n')]);
    const e = await collect(jsonlLines(chunked(bytes, [5]))).catch((x) => x);
    expect(isRelpError(e)).toBe(true);
    expect(e.message).toMatch(/not UTF-8/);
  });

  it('a line without end is refused once it passes the limit, without reading the rest', async () => {
    let produced = 0;
    async function* endless(): AsyncGenerator<Uint8Array> {
      const chunk = enc.encode('a'.repeat(65536));
      for (;;) {
        produced += chunk.length;
        yield chunk;
      }
    }
    const e = await collect(jsonlLines(endless())).catch((x) => x);
    expect(isRelpError(e)).toBe(true);
    expect(e.message).toMatch(/line longer than/);
    expect(produced).toBeLessThan(JSONL_LIMITS.maxLineChars + 2 * 65536);
  });

  it('more pairs than the cap is BAD_INPUT; Infinity lifts the cap', async () => {
    const one = '{"clean_ids":[1],"corrupt_ids":[2],"answer_id":1,"wrong_id":2}\n';
    const bytes = enc.encode(one.repeat(5));
    const e = await collect(readPairsJsonl(chunked(bytes, []), 'p', 4)).catch((x) => x);
    expect(e.message).toMatch(/more than 4 pairs/);
    expect(await collect(readPairsJsonl(chunked(bytes, []), 'p', Number.POSITIVE_INFINITY))).toHaveLength(5);
  });
});
