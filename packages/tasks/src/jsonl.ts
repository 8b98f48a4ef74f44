import { badInput } from '@relp/core/errors';
import type { IdPair, TextPair } from './types.js';

/** A pair read from pairs.jsonl: text (to be tokenised) or token ids, with its line number. */
export type PairRecord =
  | { readonly kind: 'text'; readonly line: number; readonly pair: TextPair }
  | { readonly kind: 'ids'; readonly line: number; readonly pair: IdPair };

const TEXT_KEYS = ['clean', 'corrupt', 'answer', 'wrong'] as const;
const ID_KEYS = ['clean_ids', 'corrupt_ids', 'answer_id', 'wrong_id'] as const;

/** Caps against hostile input: a line may not be absurdly long, nor the file hold absurdly many pairs. */
export const JSONL_LIMITS = { maxLineChars: 1_000_000, maxPairs: 1_000_000, maxIds: 100_000 } as const;

function fail(source: string, line: number, why: string): never {
  throw badInput(`${source}:${line}: ${why}`, { source, line });
}

function isIdList(x: unknown): x is number[] {
  return Array.isArray(x) && x.every((v) => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0);
}

function isId(x: unknown): x is number {
  return typeof x === 'number' && Number.isSafeInteger(x) && x >= 0;
}

/**
 * One line of pairs.jsonl as a pair, or undefined for a blank line. The line is either
 * {"clean","corrupt","answer","wrong"} (strings) or {"clean_ids","corrupt_ids","answer_id","wrong_id"} (token
 * ids); other keys are ignored. Every problem is a RelpError BAD_INPUT whose message and details name the line.
 */
export function parsePairLine(raw: string, lineNo: number, source = 'pairs.jsonl'): PairRecord | undefined {
  if (raw.trim() === '') return undefined;
  if (raw.length > JSONL_LIMITS.maxLineChars)
    fail(source, lineNo, `line longer than ${JSONL_LIMITS.maxLineChars} characters`);
  let value: unknown;
  try {
    value = JSON.parse(raw);
  } catch (e) {
    fail(source, lineNo, `not valid JSON (${e instanceof Error ? e.message : String(e)})`);
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    fail(source, lineNo, 'each line must be a JSON object');
  }
  const o = value as Record<string, unknown>;
  const has = (k: string): boolean => Object.hasOwn(o, k);
  const hasText = TEXT_KEYS.some(has);
  const hasIds = ID_KEYS.some(has);
  if (hasText && hasIds) fail(source, lineNo, 'mixes text keys (clean, …) and id keys (clean_ids, …)');
  if (!hasText && !hasIds) {
    fail(source, lineNo, `needs either ${TEXT_KEYS.join(', ')} (text) or ${ID_KEYS.join(', ')} (token ids)`);
  }
  if (hasText) {
    for (const k of TEXT_KEYS) {
      if (typeof o[k] !== 'string') fail(source, lineNo, `"${k}" must be a string`);
    }
    const pair: TextPair = {
      clean: o.clean as string,
      corrupt: o.corrupt as string,
      answer: o.answer as string,
      wrong: o.wrong as string,
    };
    if (pair.clean === '') fail(source, lineNo, '"clean" is empty');
    return { kind: 'text', line: lineNo, pair };
  }
  for (const k of ['clean_ids', 'corrupt_ids'] as const) {
    if (!isIdList(o[k])) fail(source, lineNo, `"${k}" must be an array of non-negative integers`);
    if ((o[k] as number[]).length === 0) fail(source, lineNo, `"${k}" is empty`);
    if ((o[k] as number[]).length > JSONL_LIMITS.maxIds) fail(source, lineNo, `"${k}" is too long`);
  }
  for (const k of ['answer_id', 'wrong_id'] as const) {
    if (!isId(o[k])) fail(source, lineNo, `"${k}" must be a non-negative integer`);
  }
  return {
    kind: 'ids',
    line: lineNo,
    pair: {
      clean: o.clean_ids as number[],
      corrupt: o.corrupt_ids as number[],
      answer: o.answer_id as number,
      wrong: o.wrong_id as number,
    },
  };
}

/**
 * Parses pairs.jsonl as in the CLI contract: each non-blank line one pair (parsePairLine). An empty file, or one
 * of more than JSONL_LIMITS.maxPairs pairs, is BAD_INPUT.
 */
export function parsePairsJsonl(text: string, source = 'pairs.jsonl'): PairRecord[] {
  const body = text.charCodeAt(0) === 0xfeff ? text.slice(1) : text;
  const lines = body.split(/\r?\n/);
  const out: PairRecord[] = [];
  for (let i = 0; i < lines.length; i++) {
    const record = parsePairLine(lines[i]!, i + 1, source);
    if (record === undefined) continue;
    out.push(record);
    if (out.length > JSONL_LIMITS.maxPairs) fail(source, i + 1, `more than ${JSONL_LIMITS.maxPairs} pairs`);
  }
  if (out.length === 0) throw badInput(`${source}: no pairs (the file is empty or blank)`, { source });
  return out;
}

/**
 * The lines of a UTF-8 byte stream, one at a time (without their \n or \r\n; a leading BOM removed), in memory
 * bounded by JSONL_LIMITS.maxLineChars: a longer line is BAD_INPUT as soon as it passes the limit, not after it
 * was buffered whole. Bytes that are not UTF-8 are BAD_INPUT.
 */
export async function* jsonlLines(
  chunks: AsyncIterable<Uint8Array>,
  source = 'pairs.jsonl',
): AsyncGenerator<{ readonly line: number; readonly text: string }, void, undefined> {
  const decoder = new TextDecoder('utf-8', { fatal: true });
  let pending = '';
  let lineNo = 0;
  let first = true;
  const decode = (bytes?: Uint8Array): string => {
    try {
      return bytes ? decoder.decode(bytes, { stream: true }) : decoder.decode();
    } catch {
      throw badInput(`${source} is not UTF-8 text (after line ${lineNo})`, { source, line: lineNo + 1 });
    }
  };
  const split = function* (text: string, end: boolean) {
    pending += text;
    if (first && pending.length > 0) {
      if (pending.charCodeAt(0) === 0xfeff) pending = pending.slice(1);
      first = false;
    }
    let nl = pending.indexOf('\n');
    let from = 0;
    while (nl >= 0) {
      lineNo++;
      const raw = pending.slice(from, nl);
      yield { line: lineNo, text: raw.endsWith('\r') ? raw.slice(0, -1) : raw };
      from = nl + 1;
      nl = pending.indexOf('\n', from);
    }
    pending = pending.slice(from);
    if (pending.length > JSONL_LIMITS.maxLineChars + 1) {
      fail(source, lineNo + 1, `line longer than ${JSONL_LIMITS.maxLineChars} characters`);
    }
    if (end && pending.length > 0) {
      lineNo++;
      yield { line: lineNo, text: pending.endsWith('\r') ? pending.slice(0, -1) : pending };
      pending = '';
    }
  };
  for await (const chunk of chunks) yield* split(decode(chunk), false);
  yield* split(decode(), true);
}

/**
 * pairs.jsonl as a stream of pairs (parsePairLine for each line of jsonlLines), for files of any length: at most
 * one line is held at a time. More than `maxPairs` pairs (default JSONL_LIMITS.maxPairs; a streaming reader that
 * holds one batch at a time may pass Infinity) is BAD_INPUT; an empty stream yields nothing (the caller says what
 * that means).
 */
export async function* readPairsJsonl(
  chunks: AsyncIterable<Uint8Array>,
  source = 'pairs.jsonl',
  maxPairs: number = JSONL_LIMITS.maxPairs,
): AsyncGenerator<PairRecord, void, undefined> {
  let count = 0;
  for await (const { line, text } of jsonlLines(chunks, source)) {
    const record = parsePairLine(text, line, source);
    if (record === undefined) continue;
    if (++count > maxPairs) fail(source, line, `more than ${maxPairs} pairs`);
    yield record;
  }
}

/** Writes pairs as JSONL (text form), one object a line. */
export function toJsonl(pairs: readonly TextPair[]): string {
  return pairs
    .map((p) => JSON.stringify({ clean: p.clean, corrupt: p.corrupt, answer: p.answer, wrong: p.wrong }))
    .join('\n')
    .concat('\n');
}
