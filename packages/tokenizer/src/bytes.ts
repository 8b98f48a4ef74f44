/**
 * GPT-2's byte-level alphabet: every byte 0..255 is written as one printable character, so a BPE over
 * strings is a BPE over bytes. Printable Latin-1 bytes stand for themselves; the others (controls,
 * space, 0x7F..0xA0, 0xAD) are shifted to U+0100 and up, in byte order: space (0x20) is 'Ġ' (U+0120),
 * '\n' is 'Ċ' (U+010A).
 */
function buildByteToChar(): string[] {
  const printable: number[] = [];
  for (let b = 0x21; b <= 0x7e; b++) printable.push(b);
  for (let b = 0xa1; b <= 0xac; b++) printable.push(b);
  for (let b = 0xae; b <= 0xff; b++) printable.push(b);
  const isPrintable = new Set(printable);
  const out: string[] = new Array(256);
  let n = 0;
  for (let b = 0; b < 256; b++) {
    if (isPrintable.has(b)) out[b] = String.fromCharCode(b);
    else out[b] = String.fromCharCode(256 + n++);
  }
  return out;
}

/** byte → its character in the byte-level alphabet. */
export const BYTE_TO_CHAR: readonly string[] = buildByteToChar();

/** character of the byte-level alphabet → byte. */
export const CHAR_TO_BYTE: ReadonlyMap<string, number> = new Map(BYTE_TO_CHAR.map((c, b) => [c, b]));

const encoder = new TextEncoder();

export function utf8(text: string): Uint8Array {
  return encoder.encode(text);
}

/** The bytes a byte-level token stands for, or undefined when it uses a character outside the alphabet. */
export function byteLevelTokenBytes(token: string): Uint8Array | undefined {
  const out = new Uint8Array(token.length);
  for (let i = 0; i < token.length; i++) {
    const b = CHAR_TO_BYTE.get(token[i]!);
    if (b === undefined) return undefined;
    out[i] = b;
  }
  return out;
}

/** Spells text in the byte-level alphabet (its UTF-8 bytes, one character each). */
export function toByteLevel(text: string): string {
  let s = '';
  for (const b of utf8(text)) s += BYTE_TO_CHAR[b];
  return s;
}

/** True when every character of the string belongs to the byte-level alphabet. */
export function isByteLevelSpelled(token: string): boolean {
  for (const ch of token) if (!CHAR_TO_BYTE.has(ch)) return false;
  return true;
}

const BYTE_TOKEN = /^<0x([0-9A-Fa-f]{2})>$/;

/** The byte of a SentencePiece byte-fallback token like `<0x0A>`, or undefined. */
export function byteFallbackValue(token: string): number | undefined {
  const m = BYTE_TOKEN.exec(token);
  return m ? Number.parseInt(m[1]!, 16) : undefined;
}

export function concatBytes(parts: readonly Uint8Array[]): Uint8Array {
  let n = 0;
  for (const p of parts) n += p.length;
  const out = new Uint8Array(n);
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

export function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/**
 * For each byte of `text`'s UTF-8, the UTF-16 index where its character starts and ends, so byte spans
 * map back to string spans (a span that covers part of a character gets the whole character).
 */
export function byteToUtf16Spans(text: string): { start: Int32Array; end: Int32Array } {
  const bytes = utf8(text).length;
  const start = new Int32Array(bytes + 1);
  const end = new Int32Array(bytes + 1);
  let b = 0;
  let i = 0;
  for (const ch of text) {
    const cp = ch.codePointAt(0)!;
    const n = cp < 0x80 ? 1 : cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4;
    for (let k = 0; k < n; k++) {
      start[b + k] = i;
      end[b + k] = i + ch.length;
    }
    b += n;
    i += ch.length;
  }
  start[bytes] = i;
  end[bytes] = i;
  return { start, end };
}
