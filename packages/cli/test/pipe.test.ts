import { spawn } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const repo = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');

describe('relp as the head of a pipe', () => {
  it('a reader that closes after the first line ends the command quietly (no EPIPE stack)', async () => {
    const child = spawn(
      process.execPath,
      ['--conditions=source', '--import', 'tsx', 'packages/cli/src/bin.ts', 'tasks', 'ioi', '--n', '20000'],
      { cwd: repo, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let err = '';
    child.stderr.on('data', (d) => (err += d));
    // Like `| head -1`: read one chunk, then close our end of the pipe.
    child.stdout.once('data', () => child.stdout.destroy());
    const code = await new Promise<number | null>((resolve) => child.on('close', (c) => resolve(c)));
    expect(err).not.toMatch(/EPIPE|Unhandled|at /);
    expect(code).toBe(0);
  }, 30_000);
});
