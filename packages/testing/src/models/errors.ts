import { isRelpError } from '@relp/core';
import { expect } from 'vitest';

/** Expects `f` to throw a RelpError with `code` (and, given `pattern`, a message matching it). */
export function expectRelpError(f: () => unknown, code: string, pattern?: RegExp): void {
  let caught: unknown;
  try {
    f();
  } catch (e) {
    caught = e;
  }
  expect(isRelpError(caught), `expected a RelpError ${code}, got ${String(caught)}`).toBe(true);
  expect((caught as { code: string }).code, String(caught)).toBe(code);
  if (pattern) expect((caught as Error).message).toMatch(pattern);
}
