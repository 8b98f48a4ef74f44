import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { isRelpError } from '../src/errors.js';
import {
  readRegularFile,
  readRegularFileSync,
  readRegularText,
  readRegularTextSync,
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
