/**
 * Replacing an output (a file or a folder) so that a run killed at any point, or two runs writing the same
 * output at once, never lose it or fail with an internal error.
 *
 * A writer puts the new output in a hidden sibling `.<name>.tmp-<pid>-<token>`, complete, before it touches the
 * target. A file then replaces the target in one rename. A folder cannot (rename does not replace a non-empty
 * folder), so the old folder is first renamed aside to `.<name>.old-<pid>-<token>-<n>`, then the new one in. A
 * kill between those two renames leaves no target but two complete folders, so every writer (and the output check
 * at the start of a command) first recovers the target: when it is missing and a dead writer left a complete new
 * folder (its tmp beside its aside), that one is renamed in; otherwise the newest aside is renamed back. Whatever
 * dead writers left (by pid: `process.kill(pid, 0)`) is removed. Two live writers: when the target reappears
 * between the two renames (the other writer won), it is moved aside again and the rename retried: the last writer
 * wins and both succeed. Without --force, an output that another run created meanwhile is BAD_INPUT.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, readdirSync, renameSync, rmSync, statSync } from 'node:fs';
import { link, rename, rm, unlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { badInput } from '@relp/core/errors';

/** Test hooks: called between the steps of a replacement (a test kills the process or runs another writer). */
export interface ReplaceHooks {
  /** After the new output is complete in its temporary sibling. */
  readonly afterTemp?: () => void | Promise<void>;
  /** After the old folder was renamed aside, before the new one is renamed in. */
  readonly afterAside?: () => void | Promise<void>;
}

/** A writer's names for one replacement: the temporary sibling, and the asides of the old output. */
export interface ReplaceNames {
  readonly temp: string;
  aside(n: number): string;
}

export function replaceNames(target: string): ReplaceNames {
  const dir = dirname(target);
  const base = basename(target);
  const id = `${process.pid}-${randomBytes(6).toString('hex')}`;
  return {
    temp: join(dir, `.${base}.tmp-${id}`),
    aside: (n) => join(dir, `.${base}.old-${id}-${n}`),
  };
}

const escapeRe = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

function isAlive(pid: number): boolean {
  if (pid === process.pid) return true;
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM'; // someone else's live process
  }
}

interface Leftover {
  readonly path: string;
  readonly kind: 'tmp' | 'old';
  /** pid-token: a writer's tmp and asides share it. */
  readonly writer: string;
  readonly mtimeMs: number;
}

/** What dead writers left beside `target`. */
function deadLeftovers(target: string): Leftover[] {
  const dir = dirname(target);
  const re = new RegExp(`^\\.${escapeRe(basename(target))}\\.(tmp|old)-(\\d+)-([0-9a-f]+)(?:-\\d+)?$`);
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return [];
  }
  const out: Leftover[] = [];
  for (const name of names) {
    const m = re.exec(name);
    if (!m || isAlive(Number(m[2]))) continue;
    const path = join(dir, name);
    let mtimeMs = 0;
    try {
      mtimeMs = statSync(path).mtimeMs;
    } catch {
      continue; // removed meanwhile by another recovering run
    }
    out.push({ path, kind: m[1] as 'tmp' | 'old', writer: `${m[2]}-${m[3]}`, mtimeMs });
  }
  return out;
}

/**
 * Recovers `target` from writers that were killed while replacing it (see the module comment) and removes what
 * they left. Safe to run concurrently; never throws for what it finds.
 */
export function recoverOutput(target: string): void {
  const left = deadLeftovers(target);
  if (left.length === 0) return;
  if (!existsSync(target)) {
    // A dead writer's tmp is complete once it made an aside: finish that replacement, newest first.
    const asides = left.filter((l) => l.kind === 'old').sort((a, b) => b.mtimeMs - a.mtimeMs);
    const finished = asides
      .map((a) => left.find((l) => l.kind === 'tmp' && l.writer === a.writer))
      .filter((t): t is Leftover => t !== undefined);
    for (const candidate of [...finished, ...asides]) {
      try {
        renameSync(candidate.path, target);
        break;
      } catch {
        // taken by another recovering run, or the target is back: try the next, or leave it
        if (existsSync(target)) break;
      }
    }
  }
  for (const l of left) rmSync(l.path, { recursive: true, force: true });
}

const code = (e: unknown) => (e as NodeJS.ErrnoException).code;

/**
 * Puts the complete folder `temp` in place of `target` (see the module comment). Without `force`, a target that
 * exists (another run made it meanwhile) is BAD_INPUT and `temp` is left for the caller to remove.
 */
export async function replaceFolder(
  temp: string,
  target: string,
  names: ReplaceNames,
  force: boolean,
  what: string,
  hooks: ReplaceHooks = {},
): Promise<void> {
  const asides: string[] = [];
  try {
    for (let attempt = 0; attempt < 20; attempt++) {
      if (existsSync(target)) {
        if (!force) throw badInput(`${what} ${target} was created meanwhile; pass --force to replace it`);
        const aside = names.aside(attempt);
        try {
          await rename(target, aside);
          asides.push(aside);
        } catch (e) {
          if (code(e) !== 'ENOENT') throw e; // another writer moved it first
        }
        await hooks.afterAside?.();
      }
      try {
        await rename(temp, target);
        return;
      } catch (e) {
        // Another writer put its output in between: with --force, move that aside too (last writer wins).
        if (code(e) !== 'ENOTEMPTY' && code(e) !== 'EEXIST') throw e;
      }
    }
    throw badInput(`${what} ${target}: other runs kept replacing it; try again`);
  } finally {
    for (const a of asides) await rm(a, { recursive: true, force: true });
  }
}

/**
 * Puts the complete file `temp` in place of `target`: one rename with `force`; without it a hard link, which fails
 * when another run created the target meanwhile (BAD_INPUT) instead of silently replacing its file.
 */
export async function replaceFile(temp: string, target: string, force: boolean, what: string): Promise<void> {
  if (force) {
    await rename(temp, target);
    return;
  }
  try {
    await link(temp, target);
  } catch (e) {
    if (code(e) === 'EEXIST')
      throw badInput(`${what} ${target} was created meanwhile; pass --force to replace it`);
    if (code(e) !== 'EPERM' && code(e) !== 'ENOTSUP' && code(e) !== 'EXDEV') throw e;
    // A file system without hard links: a rename, after one more look.
    if (existsSync(target))
      throw badInput(`${what} ${target} was created meanwhile; pass --force to replace it`);
    await rename(temp, target);
    return;
  }
  await unlink(temp);
}
