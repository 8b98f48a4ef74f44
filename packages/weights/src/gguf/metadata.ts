/** Typed access to GGUF metadata values (errors are BAD_MODEL_FILE naming the key). */
import { badFile } from '../errors.js';
import type { GgufFile, GgufValue } from './reader.js';

function entry(file: GgufFile, key: string): GgufValue | undefined {
  return file.metadata.get(key)?.value;
}

function describe(v: GgufValue): string {
  if (Array.isArray(v) || ArrayBuffer.isView(v)) return `an array of ${(v as { length: number }).length}`;
  return `${typeof v} ${String(v)}`;
}

/** A numeric metadata value as a number (64-bit integers must be safe integers), or undefined when absent. */
export function metaNumber(file: GgufFile, key: string): number | undefined {
  const v = entry(file, key);
  if (v === undefined) return undefined;
  if (typeof v === 'number') return v;
  if (typeof v === 'bigint') {
    if (v > BigInt(Number.MAX_SAFE_INTEGER) || v < BigInt(Number.MIN_SAFE_INTEGER)) {
      throw badFile(`GGUF: metadata "${key}" = ${v} is not a safe integer`, { key });
    }
    return Number(v);
  }
  throw badFile(`GGUF: metadata "${key}" should be a number, got ${describe(v)}`, { key });
}

export function requireNumber(file: GgufFile, key: string): number {
  const v = metaNumber(file, key);
  if (v === undefined) throw badFile(`GGUF: metadata "${key}" is missing`, { key });
  return v;
}

/** A positive integer metadata value. */
export function requireCount(file: GgufFile, key: string): number {
  const v = requireNumber(file, key);
  if (!Number.isInteger(v) || v < 1)
    throw badFile(`GGUF: metadata "${key}" = ${v} is not a positive integer`, { key });
  return v;
}

export function metaString(file: GgufFile, key: string): string | undefined {
  const v = entry(file, key);
  if (v === undefined) return undefined;
  if (typeof v !== 'string')
    throw badFile(`GGUF: metadata "${key}" should be a string, got ${describe(v)}`, { key });
  return v;
}

export function metaBool(file: GgufFile, key: string): boolean | undefined {
  const v = entry(file, key);
  if (v === undefined) return undefined;
  if (typeof v === 'boolean') return v;
  if (typeof v === 'number' && (v === 0 || v === 1)) return v === 1;
  throw badFile(`GGUF: metadata "${key}" should be a boolean, got ${describe(v)}`, { key });
}

export function metaStringArray(file: GgufFile, key: string): readonly string[] | undefined {
  const v = entry(file, key);
  if (v === undefined) return undefined;
  if (Array.isArray(v) && v.every((x) => typeof x === 'string')) return v as readonly string[];
  throw badFile(`GGUF: metadata "${key}" should be an array of strings, got ${describe(v)}`, { key });
}

/** A numeric array as plain numbers (typed arrays of any numeric element type, 64-bit ones when safe). */
export function metaNumberArray(file: GgufFile, key: string): readonly number[] | undefined {
  const v = entry(file, key);
  if (v === undefined) return undefined;
  if (ArrayBuffer.isView(v)) {
    const out: number[] = [];
    for (const x of v as unknown as Iterable<number | bigint>) {
      const n = Number(x);
      if (typeof x === 'bigint' && !Number.isSafeInteger(n)) {
        throw badFile(`GGUF: metadata "${key}" holds ${x}, not a safe integer`, { key });
      }
      out.push(n);
    }
    return out;
  }
  if (Array.isArray(v) && v.every((x) => typeof x === 'boolean'))
    return (v as boolean[]).map((b) => (b ? 1 : 0));
  throw badFile(`GGUF: metadata "${key}" should be a numeric array, got ${describe(v)}`, { key });
}

/** The metadata as a plain object (for printing or JSON): bigints become strings when unsafe, numbers otherwise. */
export function metadataToJson(
  file: GgufFile,
  options: { maxArrayItems?: number } = {},
): Record<string, unknown> {
  const max = options.maxArrayItems ?? Number.POSITIVE_INFINITY;
  const conv = (v: GgufValue): unknown => {
    if (typeof v === 'bigint') return Number.isSafeInteger(Number(v)) ? Number(v) : v.toString();
    if (ArrayBuffer.isView(v) || Array.isArray(v)) {
      const arr = Array.from(v as ArrayLike<GgufValue>);
      const head = arr.slice(0, Math.min(arr.length, max)).map(conv);
      return arr.length > max ? [...head, `… ${arr.length - max} more`] : head;
    }
    return v;
  };
  const out: Record<string, unknown> = {};
  for (const [k, e] of file.metadata) out[k] = conv(e.value);
  return out;
}
