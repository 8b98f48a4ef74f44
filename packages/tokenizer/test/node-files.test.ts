import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { loadTokenizerFile } from '../src/node.js';

const dir = mkdtempSync(join(tmpdir(), 'relp-tokenizer-files-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('loadTokenizerFile on files that are not regular files', () => {
  it('a FIFO is BAD_INPUT at once (opening it would wait for a writer)', () => {
    const fifo = join(dir, 'tokenizer.json');
    execFileSync('mkfifo', [fifo]);
    expect(() => loadTokenizerFile(fifo)).toThrow(
      expect.objectContaining({ code: 'BAD_INPUT', message: expect.stringMatching(/FIFO/) }),
    );
  });

  it('a symlink to /dev/zero is BAD_INPUT at once (reading it would never end)', () => {
    const link = join(dir, 'zero.json');
    symlinkSync('/dev/zero', link);
    expect(() => loadTokenizerFile(link)).toThrow(
      expect.objectContaining({ code: 'BAD_INPUT', message: expect.stringMatching(/character device/) }),
    );
  });

  it('a missing file is still NOT_AVAILABLE', () => {
    expect(() => loadTokenizerFile(join(dir, 'missing.json'))).toThrow(
      expect.objectContaining({ code: 'NOT_AVAILABLE' }),
    );
  });
});
