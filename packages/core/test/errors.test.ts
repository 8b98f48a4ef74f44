import { describe, expect, it } from 'vitest';
import { badInput, printable } from '../src/errors.js';

describe('printable', () => {
  it('writes C0, DEL, C1 and lone surrogates as visible escapes, and nothing else', () => {
    expect(printable('a\u001b[2Jb\u0000c\nd\te\u007f\u0085\u009b')).toBe(
      'a\\u001b[2Jb\\u0000c\\u000ad\\u0009e\\u007f\\u0085\\u009b',
    );
    expect(printable('x\ud800y\udc00z')).toBe('x\\ud800y\\udc00z');
    // Printable text, including non-ASCII and surrogate pairs, is unchanged.
    const plain = 'relp résumé — 日本語 😀 \u00a0 "quoted" \\ back';
    expect(printable(plain)).toBe(plain);
  });

  it('keeps the characters asked for', () => {
    expect(printable('line 1\n\tline 2\r\u001b', '\n\t')).toBe('line 1\n\tline 2\\u000d\\u001b');
  });

  it('keeps JSON valid and equal: the escapes are JSON escapes', () => {
    const value = { s: 'a\u007fb\u0085c\u001b', t: ['\u0000'] };
    const text = printable(JSON.stringify(value, null, 1), '\n');
    expect(text).not.toMatch(/[\u007f-\u009f]/);
    expect(JSON.parse(text)).toEqual(value);
  });

  it('is idempotent', () => {
    const once = printable('\u001b\u0000\ud800');
    expect(printable(once)).toBe(once);
  });

  it("every RelpError's message is printable; details keep the raw value", () => {
    const e = badInput('architecture "x\u001b[2J\n" is not supported', { architecture: 'x\u001b[2J\n' });
    expect(e.message).toBe('architecture "x\\u001b[2J\\u000a" is not supported');
    expect(e.details.architecture).toBe('x\u001b[2J\n');
  });
});
