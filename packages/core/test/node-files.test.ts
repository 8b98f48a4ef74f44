import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, symlinkSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { isRelpError } from '../src/errors.js';
import {
  readRegularFile,
  readRegularFileSync,
  readRegularText,
  readRegularTextSync,
  regularFileChunks,
} from '../src/node-files.js';

const dir = mkdtempSync(join(tmpdir(), 'relp-node-files-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const fifo = join(dir, 'fifo');
execFileSync('mkfifo', [fifo]);
const zeroLink = join(dir, 'zero-link');
symlinkSync('/dev/zero', zeroLink);
const fifoLink = join(dir, 'fifo-link');
symlinkSync(fifo, fifoLink);
const plain = join(dir, 'plain.txt');
writeFileSync(plain, 'héllo');
const plainLink = join(dir, 'plain-link');
symlinkSync(plain, plainLink);

const badInput = (pattern: RegExp) => (e: unknown) => isRelpError(e, 'BAD_INPUT') && pattern.test(e.message);

describe('reading only regular files', () => {
  for (const [name, path, kind] of [
    ['/dev/zero', '/dev/zero', /character device/],
    ['a symlink to /dev/zero', zeroLink, /character device/],
    ['a FIFO', fifo, /FIFO/],
    ['a symlink to a FIFO', fifoLink, /FIFO/],
    ['a folder', dir, /folder/],
  ] as const) {
    it(`refuses ${name} at once (async and sync)`, async () => {
      const t0 = performance.now();
      const err = await readRegularFile(path, { what: 'weights' }).catch((e) => e);
      expect(err).toSatisfy(badInput(kind));
      expect(err.message).toContain(`weights ${path}`);
      let syncErr: unknown;
      try {
        readRegularFileSync(path);
      } catch (e) {
        syncErr = e;
      }
      expect(syncErr).toSatisfy(badInput(kind));
      expect(performance.now() - t0).toBeLessThan(2000);
    });
  }

  it('reads a regular file, also through a symlink', async () => {
    expect(await readRegularText(plainLink)).toBe('héllo');
    expect(readRegularTextSync(plain)).toBe('héllo');
    expect([...(await readRegularFile(plain))]).toEqual([...new TextEncoder().encode('héllo')]);
  });

  it('refuses a file over the cap before reading it, and text that is not UTF-8', async () => {
    await expect(readRegularFile(plain, { maxBytes: 3, what: '--data' })).rejects.toSatisfy(
      badInput(/--data .* more than the 3 bytes/),
    );
    const latin1 = join(dir, 'latin1.txt');
    writeFileSync(latin1, Buffer.from([0x68, 0xe9, 0x0a]));
    await expect(readRegularText(latin1)).rejects.toSatisfy(badInput(/not UTF-8/));
  });

  it('passes system errors through for the caller to word', async () => {
    await expect(readRegularFile(join(dir, 'missing'))).rejects.toMatchObject({ code: 'ENOENT' });
  });
});

describe('regularFileChunks (streaming)', () => {
  const chunks = async (path: string, options: Parameters<typeof regularFileChunks>[1] = {}) => {
    const out: Uint8Array[] = [];
    for await (const c of regularFileChunks(path, options)) out.push(c);
    return out;
  };

  it('refuses what is not a regular file at once, and a file over the cap before a byte is read', async () => {
    const t0 = performance.now();
    for (const [path, kind] of [
      [zeroLink, /character device/],
      [fifo, /FIFO/],
      [dir, /folder/],
    ] as const) {
      expect(await chunks(path, { what: '--data' }).catch((e) => e)).toSatisfy(badInput(kind));
    }
    expect(performance.now() - t0).toBeLessThan(2000);
    expect(await chunks(plain, { maxBytes: 3 }).catch((e) => e)).toSatisfy(badInput(/more than/));
  });

  it('streams a file in chunks of the size asked for', async () => {
    const path = join(dir, 'chunks.bin');
    const bytes = Uint8Array.from({ length: 1000 }, (_, i) => (i * 7) % 256);
    writeFileSync(path, bytes);
    const got = await chunks(path, { chunkBytes: 300 });
    expect(got.map((c) => c.length)).toEqual([300, 300, 300, 100]);
    expect(Buffer.concat(got).equals(Buffer.from(bytes))).toBe(true);
    expect(await chunks(plainLink)).toHaveLength(1);
  });

  it('a file that shrinks while it is read is BAD_INPUT, not a short read', async () => {
    const path = join(dir, 'shrinks.bin');
    writeFileSync(path, new Uint8Array(1000));
    const err = await (async () => {
      for await (const _ of regularFileChunks(path, { chunkBytes: 400 })) truncateSync(path, 500);
    })().catch((e) => e);
    expect(err).toSatisfy(badInput(/changed while it was read/));
  });
});
