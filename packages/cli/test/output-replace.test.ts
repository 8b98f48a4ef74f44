import { spawn } from 'node:child_process';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { checkWritable, writeFileAtomic, writeFolderAtomic } from '../src/output.js';

const repo = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const output = join(repo, 'packages', 'cli', 'src', 'output.ts');
const root = mkdtempSync(join(tmpdir(), 'relp-cli-replace-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

let n = 0;
/** A fresh parent folder holding `out/` written by "old" (a.txt and b.txt). */
async function withOld(): Promise<{ dir: string; out: string }> {
  const dir = join(root, `case${n++}`);
  mkdirSync(dir);
  const out = join(dir, 'out');
  await writeFolderAtomic(out, { 'a.txt': 'old a', 'b.txt': 'old b' }, false);
  return { dir, out };
}

const contents = (out: string) =>
  Object.fromEntries(readdirSync(out).map((f) => [f, readFileSync(join(out, f), 'utf8')]));
const hidden = (dir: string) => readdirSync(dir).filter((f) => f.startsWith('.'));

/** Runs a writer of `out` in a child process that stops at `hook` (prints STOPPED and waits), then kills it. */
async function killedAt(out: string, hook: 'afterTemp' | 'afterAside'): Promise<void> {
  const code = `
    import { writeFolderAtomic } from ${JSON.stringify(output)};
    await writeFolderAtomic(${JSON.stringify(out)}, { 'a.txt': 'new a', 'c.txt': 'new c' }, true, {
      ${hook}: () => { process.stdout.write('STOPPED\\n'); return new Promise(() => setInterval(() => {}, 1000)); },
    });`;
  const child = spawn(
    process.execPath,
    ['--conditions=source', '--import', 'tsx', '--input-type=module', '-e', code],
    {
      cwd: repo,
      stdio: ['ignore', 'pipe', 'inherit'],
    },
  );
  await new Promise<void>((resolve, reject) => {
    child.stdout.on('data', (d) => {
      if (String(d).includes('STOPPED')) resolve();
    });
    child.on('exit', () => reject(new Error('the writer ended before its hook')));
  });
  child.kill('SIGKILL');
  await new Promise((r) => child.on('close', r));
}

describe('replacing an output folder when a run is killed midway', () => {
  it('killed between the two renames: the next run (its output check) finishes the replacement', async () => {
    const { dir, out } = await withOld();
    await killedAt(out, 'afterAside');
    expect(existsSync(out)).toBe(false); // the moment the two renames leave open
    expect(hidden(dir)).toHaveLength(2); // the old folder aside, the new one complete
    checkWritable(out, true, 'output folder');
    expect(contents(out)).toEqual({ 'a.txt': 'new a', 'c.txt': 'new c' });
    expect(hidden(dir)).toEqual([]);
  }, 60_000);

  it('killed between the renames with the new folder gone: the old output is restored', async () => {
    const { dir, out } = await withOld();
    await killedAt(out, 'afterAside');
    for (const f of hidden(dir)) if (f.includes('.tmp-')) rmSync(join(dir, f), { recursive: true });
    checkWritable(out, true, 'output folder');
    expect(contents(out)).toEqual({ 'a.txt': 'old a', 'b.txt': 'old b' });
    expect(hidden(dir)).toEqual([]);
  }, 60_000);

  it('killed before the old folder was touched: the old output stays, the next write removes the leftover', async () => {
    const { dir, out } = await withOld();
    await killedAt(out, 'afterTemp');
    expect(contents(out)).toEqual({ 'a.txt': 'old a', 'b.txt': 'old b' });
    expect(hidden(dir)).toHaveLength(1);
    await writeFolderAtomic(out, { 'z.txt': 'z' }, true);
    expect(contents(out)).toEqual({ 'z.txt': 'z' });
    expect(hidden(dir)).toEqual([]);
  }, 60_000);
});

describe('two runs writing the same output folder', () => {
  it('with --force, a writer whose target reappears between its renames moves it aside again: both succeed, last wins', async () => {
    const { dir, out } = await withOld();
    let other: Promise<void> | undefined;
    await writeFolderAtomic(out, { 'first.txt': '1' }, true, {
      afterAside: async () => {
        other ??= writeFolderAtomic(out, { 'second.txt': '2' }, true);
        await other;
      },
    });
    await other;
    expect(contents(out)).toEqual({ 'first.txt': '1' });
    expect(hidden(dir)).toEqual([]);
  });

  it('without --force, an output another run created meanwhile is BAD_INPUT, and that output is kept', async () => {
    const dir = join(root, `case${n++}`);
    mkdirSync(dir);
    const out = join(dir, 'out');
    const err = await writeFolderAtomic(out, { 'mine.txt': 'm' }, false, {
      afterTemp: () => writeFolderAtomic(out, { 'theirs.txt': 't' }, false),
    }).catch((e) => e);
    expect(err).toMatchObject({ code: 'BAD_INPUT', message: /was created meanwhile; pass --force/ });
    expect(contents(out)).toEqual({ 'theirs.txt': 't' });
    expect(hidden(dir)).toEqual([]);
    const file = join(dir, 'result.json');
    writeFileSync(file, 'theirs');
    await expect(writeFileAtomic(file, 'mine', false)).rejects.toMatchObject({ code: 'BAD_INPUT' });
    expect(readFileSync(file, 'utf8')).toBe('theirs');
  });

  it('eight writers at once in one process, ten rounds: every write succeeds, the output ends complete', async () => {
    const dir = join(root, `case${n++}`);
    mkdirSync(dir);
    const out = join(dir, 'out');
    for (let round = 0; round < 10; round++) {
      const writers = Array.from({ length: 8 }, (_, w) =>
        writeFolderAtomic(
          out,
          Object.fromEntries(Array.from({ length: 5 }, (_, i) => [`f${i}.txt`, `w${w}`])),
          true,
        ),
      );
      const settled = await Promise.allSettled(writers);
      expect(settled.filter((r) => r.status === 'rejected')).toEqual([]);
      const final = contents(out);
      expect(Object.keys(final)).toHaveLength(5);
      expect(new Set(Object.values(final)).size).toBe(1);
      expect(hidden(dir)).toEqual([]);
    }
  });

  it('processes racing with --force: every write succeeds, and the output ends as one complete folder', async () => {
    const dir = join(root, `case${n++}`);
    mkdirSync(dir);
    const out = join(dir, 'out');
    const writer = (id: string) => {
      const files = Object.fromEntries(Array.from({ length: 20 }, (_, i) => [`f${i}.txt`, id]));
      const code = `
        import { writeFolderAtomic } from ${JSON.stringify(output)};
        for (let i = 0; i < 40; i++) await writeFolderAtomic(${JSON.stringify(out)}, ${JSON.stringify(files)}, true);`;
      const child = spawn(
        process.execPath,
        ['--conditions=source', '--import', 'tsx', '--input-type=module', '-e', code],
        {
          cwd: repo,
          stdio: ['ignore', 'ignore', 'pipe'],
        },
      );
      let err = '';
      child.stderr.on('data', (d) => (err += d));
      return new Promise<{ code: number | null; err: string }>((r) =>
        child.on('close', (c) => r({ code: c, err })),
      );
    };
    const results = await Promise.all([writer('A'), writer('B'), writer('C')]);
    for (const r of results) {
      expect(r.err).toBe('');
      expect(r.code).toBe(0);
    }
    const final = contents(out);
    expect(Object.keys(final)).toHaveLength(20);
    expect(new Set(Object.values(final)).size).toBe(1);
    expect(hidden(dir)).toEqual([]);
  }, 120_000);
});
