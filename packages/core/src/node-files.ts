/**
 * Node only: reading a file that the user named, safely. Every Node reader of user files (model folders, GGUF
 * files, tokenizers, SAEs, pairs) reads through here, so that
 * - anything that is not a regular file once symlinks are resolved (/dev/zero, a FIFO, a socket, a folder) is
 *   refused with BAD_INPUT instead of read forever: the file is opened non-blocking (opening a FIFO would wait
 *   for a writer) and checked with fstat on the open descriptor (no race between a check and the open);
 * - no more bytes are read than fstat reported (a file that grows while it is read is read to its size then, and a
 *   file that shrinks is BAD_INPUT), and a caller's cap (`maxBytes`) is checked before a byte is read.
 * System errors (ENOENT, EACCES, …) are thrown as they are, for the caller to word.
 */
import { closeSync, constants, fstatSync, openSync, readSync, type Stats } from 'node:fs';
import { open } from 'node:fs/promises';
import { ErrorCodes, RelpError } from './errors.js';

export interface ReadFileOptions {
  /** Refuse files larger than this many bytes (BAD_INPUT), before reading them. */
  readonly maxBytes?: number;
  /** What the file is, for messages ("--data", "tokenizer.json"); default "file". */
  readonly what?: string;
}

/** Node cannot hold more in one buffer. */
const MAX_BUFFER = 2 ** 32 - 1;

function kindOf(st: Stats): string {
  if (st.isDirectory()) return 'a folder';
  if (st.isFIFO()) return 'a FIFO (named pipe)';
  if (st.isCharacterDevice()) return 'a character device';
  if (st.isBlockDevice()) return 'a block device';
  if (st.isSocket()) return 'a socket';
  return 'not a regular file';
}

function formatBytes(n: number): string {
  if (n >= 2 ** 30) return `${(n / 2 ** 30).toFixed(1)} GiB`;
  if (n >= 2 ** 20) return `${(n / 2 ** 20).toFixed(1)} MiB`;
  if (n >= 2 ** 10) return `${(n / 2 ** 10).toFixed(1)} KiB`;
  return `${n} bytes`;
}

function badFile(message: string, path: string, extra: Record<string, unknown> = {}): RelpError {
  return new RelpError(ErrorCodes.BadInput, message, { details: { path, ...extra } });
}

/** BAD_INPUT unless the open file is a regular one. */
function checkRegular(st: Stats, path: string, options: ReadFileOptions): void {
  if (!st.isFile()) {
    throw badFile(
      `${options.what ?? 'file'} ${path} is ${kindOf(st)}, not a regular file: relp reads only regular files (a symlink to one is fine)`,
      path,
    );
  }
}

/** The size to read after the fstat checks, or BAD_INPUT. */
function checkedSize(st: Stats, path: string, options: ReadFileOptions): number {
  const what = options.what ?? 'file';
  checkRegular(st, path, options);
  const cap = Math.min(options.maxBytes ?? MAX_BUFFER, MAX_BUFFER);
  if (st.size > cap) {
    throw badFile(
      `${what} ${path} is ${formatBytes(st.size)}, more than the ${formatBytes(cap)} relp reads for it`,
      path,
      { size: st.size, maxBytes: cap },
    );
  }
  return st.size;
}

function shrank(path: string, got: number, size: number, options: ReadFileOptions): RelpError {
  return badFile(
    `${options.what ?? 'file'} ${path} changed while it was read (${got} of ${size} bytes were there)`,
    path,
    { size, read: got },
  );
}

const OPEN_FLAGS = constants.O_RDONLY | (constants.O_NONBLOCK ?? 0);

/** Reads a regular file whole (see the module comment). */
export async function readRegularFile(path: string, options: ReadFileOptions = {}): Promise<Uint8Array> {
  const handle = await open(path, OPEN_FLAGS);
  try {
    const size = checkedSize(await handle.stat(), path, options);
    const out = new Uint8Array(size);
    let at = 0;
    while (at < size) {
      const { bytesRead } = await handle.read(out, at, size - at, at);
      if (bytesRead === 0) throw shrank(path, at, size, options);
      at += bytesRead;
    }
    return out;
  } finally {
    await handle.close();
  }
}

/** readRegularFile, synchronously. */
export function readRegularFileSync(path: string, options: ReadFileOptions = {}): Uint8Array {
  const fd = openSync(path, OPEN_FLAGS);
  try {
    const size = checkedSize(fstatSync(fd), path, options);
    const out = new Uint8Array(size);
    let at = 0;
    while (at < size) {
      const n = readSync(fd, out, at, size - at, at);
      if (n === 0) throw shrank(path, at, size, options);
      at += n;
    }
    return out;
  } finally {
    closeSync(fd);
  }
}

const utf8 = (bytes: Uint8Array, path: string, options: ReadFileOptions): string => {
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    throw badFile(`${options.what ?? 'file'} ${path} is not UTF-8 text`, path);
  }
};

/** A regular file as UTF-8 text (BAD_INPUT when it is not UTF-8). */
export async function readRegularText(path: string, options: ReadFileOptions = {}): Promise<string> {
  return utf8(await readRegularFile(path, options), path, options);
}

/** readRegularText, synchronously. */
export function readRegularTextSync(path: string, options: ReadFileOptions = {}): string {
  return utf8(readRegularFileSync(path, options), path, options);
}

/**
 * The first `length` bytes of a regular file (fewer when it is shorter) and its size, with readRegularFile's
 * checks: a header can be looked at before a large file is read whole.
 */
export async function readRegularFilePrefix(
  path: string,
  length: number,
  options: ReadFileOptions = {},
): Promise<{ bytes: Uint8Array; size: number }> {
  const handle = await open(path, OPEN_FLAGS);
  try {
    const st = await handle.stat();
    checkRegular(st, path, options);
    const want = Math.min(length, st.size);
    const out = new Uint8Array(want);
    let at = 0;
    while (at < want) {
      const { bytesRead } = await handle.read(out, at, want - at, at);
      if (bytesRead === 0) throw shrank(path, at, st.size, options);
      at += bytesRead;
    }
    return { bytes: out, size: st.size };
  } finally {
    await handle.close();
  }
}

/**
 * A regular file as a stream of chunks of at most `chunkBytes` (default 1 MiB), with readRegularFile's checks
 * (regular file, `maxBytes` before a byte is read, no more than fstat's size, BAD_INPUT when it shrinks): a
 * caller can read a file of any size in bounded memory. The file stays open until the stream ends or the
 * consumer stops early.
 */
export async function* regularFileChunks(
  path: string,
  options: ReadFileOptions & { readonly chunkBytes?: number } = {},
): AsyncGenerator<Uint8Array, void, undefined> {
  const handle = await open(path, OPEN_FLAGS);
  try {
    const st = await handle.stat();
    checkRegular(st, path, options);
    if (options.maxBytes !== undefined) checkedSize(st, path, { ...options, maxBytes: options.maxBytes });
    const chunk = Math.max(1, options.chunkBytes ?? 2 ** 20);
    let at = 0;
    while (at < st.size) {
      const want = Math.min(chunk, st.size - at);
      const out = new Uint8Array(want);
      let got = 0;
      while (got < want) {
        const { bytesRead } = await handle.read(out, got, want - got, at + got);
        if (bytesRead === 0) throw shrank(path, at + got, st.size, options);
        got += bytesRead;
      }
      at += want;
      yield out;
    }
  } finally {
    await handle.close();
  }
}
