/**
 * Labels for tokens in heatmaps and tables: the token's text, with spaces shown as '·', line breaks and
 * tabs escaped ('\n', '\r', '\t'), other control characters as \xNN / \u{…}, and bytes that are not
 * whole UTF-8 characters (a token holding part of an emoji, say) as <0xNN>.
 */

export interface LabelOptions {
  /** What a space is shown as (default '·'; pass ' ' to keep spaces). */
  space?: string;
}

function escapeChar(ch: string, space: string): string {
  switch (ch) {
    case ' ':
      return space;
    case '\n':
      return '\\n';
    case '\r':
      return '\\r';
    case '\t':
      return '\\t';
    default: {
      const cp = ch.codePointAt(0)!;
      if (cp < 0x20 || cp === 0x7f) return `\\x${cp.toString(16).padStart(2, '0')}`;
      // Invisible or confusable code points: format characters, no-break / zero-width spaces, soft hyphen.
      if (cp === 0xa0 || cp === 0xad || (cp >= 0x80 && cp < 0xa0) || (cp >= 0x2000 && cp <= 0x200f)) {
        return `\\u{${cp.toString(16)}}`;
      }
      if (cp === 0x2028 || cp === 0x2029 || cp === 0xfeff) return `\\u{${cp.toString(16)}}`;
      return ch;
    }
  }
}

function hexByte(b: number): string {
  return `<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`;
}

/** Length of the valid UTF-8 sequence starting at bytes[i], or 0 when it is not one. */
function utf8SequenceLength(bytes: Uint8Array, i: number): number {
  const b0 = bytes[i]!;
  let n: number;
  let min: number;
  if (b0 < 0x80) return 1;
  if (b0 >= 0xc2 && b0 <= 0xdf) {
    n = 2;
    min = 0x80;
  } else if (b0 >= 0xe0 && b0 <= 0xef) {
    n = 3;
    min = 0x800;
  } else if (b0 >= 0xf0 && b0 <= 0xf4) {
    n = 4;
    min = 0x10000;
  } else return 0;
  if (i + n > bytes.length) return 0;
  let cp = b0 & (0xff >> (n + 1));
  for (let k = 1; k < n; k++) {
    const b = bytes[i + k]!;
    if ((b & 0xc0) !== 0x80) return 0;
    cp = (cp << 6) | (b & 0x3f);
  }
  if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return 0;
  return n;
}

/** A label for a token given as the bytes it stands for. */
export function formatTokenBytes(bytes: Uint8Array, options: LabelOptions = {}): string {
  const space = options.space ?? '·';
  const decoder = new TextDecoder('utf-8');
  let out = '';
  let i = 0;
  while (i < bytes.length) {
    const n = utf8SequenceLength(bytes, i);
    if (n === 0) {
      out += hexByte(bytes[i]!);
      i += 1;
    } else {
      out += escapeChar(decoder.decode(bytes.subarray(i, i + n)), space);
      i += n;
    }
  }
  return out;
}

/** A label for a piece of text (escapes as formatTokenBytes, but the text is whole characters). */
export function formatTokenText(text: string, options: LabelOptions = {}): string {
  const space = options.space ?? '·';
  let out = '';
  for (const ch of text) out += escapeChar(ch, space);
  return out;
}
